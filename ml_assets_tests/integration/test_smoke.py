"""Smoke test: every asset on empty, schema-shaped inputs (landing files with a header and no
rows). The daily path stores empty days; what needs data it has not got waits and says why:
no step fails, none crashes inside the code."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ml_assets.definitions import build_definitions
from ml_assets.example_data import generate
from ml_assets.materialize import STAGES
from ml_assets_tests.conftest import SMALL_START, TEST_KEY, small_example_spec
from ml_assets_tests.integration.test_pipeline import query

pytestmark = pytest.mark.integration

DAYS = 3
RANGE = {
    ASSET_PARTITION_RANGE_START_TAG: "2026-09-01",
    ASSET_PARTITION_RANGE_END_TAG: "2026-09-03",
}


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    data = tmp_path / "data"
    generate(data / "landing", start=SMALL_START, days=DAYS, rows_per_day=20, maturity_days=5)
    for path in (data / "landing").rglob("*.csv"):
        header = path.read_text().splitlines()[0]
        path.write_text(header + "\n")
    monkeypatch.setenv("ML_ASSETS_SPEC", str(small_example_spec(tmp_path, DAYS)))
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(data))
    monkeypatch.setenv("ML_ASSETS_PSEUDONYM_KEY", TEST_KEY)
    return data


def failures(result: dg.ExecuteInJobResult) -> dict[str, tuple[str, str]]:
    """{step: (error class, message)} of the run's failed steps (the user code's error, not
    Dagster's wrapper around it)."""
    out = {}
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        error = event.event_specific_data.error
        while error.cls_name == "DagsterExecutionStepExecutionError" and error.cause:
            error = error.cause
        out[event.step_key] = (error.cls_name, error.message)
    return out


def test_every_asset_on_empty_schema_shaped_inputs(empty_env):
    defs = build_definitions()
    assets = [*defs.assets, *(defs.asset_checks or [])]
    failed: dict[str, tuple[str, str]] = {}
    waits: dict[str, str] = {}
    with dg.DagsterInstance.ephemeral() as instance:
        # the stages `python -m ml_assets.materialize` and `make demo` run, in their order
        for _, selection in STAGES:
            result = dg.materialize(
                assets,
                selection=selection,
                instance=instance,
                resources=defs.resources,
                tags={} if selection == "group:models" else RANGE,
                raise_on_error=False,
            )
            failed |= failures(result)
            waits |= {
                e.step_key: e.event_specific_data.asset_observation.metadata["waiting"].value
                for e in result.all_events
                if e.event_type_value == "ASSET_OBSERVATION"
            }
    # the daily path stores the empty days
    for table in ("raw.transactions", "cleaned.transactions", "features.transactions"):
        assert query(empty_env, f"SELECT count(*) AS n FROM {table}").item() == 0, table
    # what needs data it has not got waits and says so: no training set without matured
    # labels, no model without a training set, no predictions without a model
    assert failed == {}, failed
    assert "no day has fully matured labels" in waits.pop("training_set"), waits
    assert "no model in use" in waits.pop("predictions"), waits
    assert waits == {}, waits
