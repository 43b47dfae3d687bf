"""What a run does with the store: the services between the settings and the stages.

history (an entity's eras over time), grid_update (a range of the grid with its margins),
feature_store (verified feature writes), scope (selection and the feature matrix), preflight
and bounds (the checks before any write), report and summary (what a run tells people),
load_source (files into a PostgreSQL table).
"""
