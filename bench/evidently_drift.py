"""Evidently's data-drift preset on the bench's parquet files; run by bench_drift.py with the
separate virtualenv's Python (Evidently 0.7.23 needs pandas < 3 and stays out of the project).

    python evidently_drift.py REFERENCE.parquet CURRENT.parquet   -> JSON on stdout
"""

import json
import sys
import time

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

reference, current = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
started = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
result = snapshot.dict()
seconds = time.perf_counter() - started
columns, share = {}, None
for metric in result["metrics"]:
    config = metric["config"]
    if config["type"].endswith("ValueDrift"):
        method, value, threshold = config["method"], metric["value"], config["threshold"]
        # p-value tests drift below their threshold, distances at or above it
        drifted = value < threshold if "p_value" in method else value >= threshold
        columns[config["column"]] = {"method": method, "value": value, "drifted": bool(drifted)}
    elif config["type"].endswith("DriftedColumnsCount"):
        share = metric["value"]["share"]
print(json.dumps({"seconds": seconds, "columns": columns, "drifted_share": share}))
