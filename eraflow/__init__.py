"""eraflow: greenhouse climate sensor data to features (Prefect-free library)."""
