"""Prefect Block classes for eraflow's stores and connections."""
