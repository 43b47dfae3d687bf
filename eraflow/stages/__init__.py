"""The stages: pure computation over frames and arrays, one module or package each.

ingest (sources to canonical rows), aggregate (the regular grid), gapfill, spikes, eras
(changepoint levels A ⊃ B ⊃ C), features (the NumPy/CuPy engine), tsfresh_stage, selection,
planner (era batches to GPU/CPU workers), simulate (the built-in greenhouse). A stage imports
neither the store nor the run settings: it takes its inputs and settings as arguments.
"""
