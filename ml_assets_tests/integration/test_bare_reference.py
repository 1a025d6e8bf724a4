"""The bench's bare reference does the assets' work: same rows and values on a small day.

`bench/bench_pipeline.py` reports our raw, cleaned and features stages as a ratio to
`bench/bare_reference.py`; this test keeps that reference honest. If a rule changes in the
assets and not in the reference (or the other way round), the ratio would compare different work.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml_assets.definitions import build_definitions
from ml_assets.names import Tables
from ml_assets.settings import Settings
from ml_assets.storage.assembly import build_warehouse
from ml_assets_tests.conftest import PROJECT_ROOT, SMALL_START, TEST_KEY, materialize

pytestmark = pytest.mark.integration


def bare_reference():
    path = PROJECT_ROOT / "bench" / "bare_reference.py"
    module_spec = importlib.util.spec_from_file_location("bare_reference", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_the_bare_reference_gives_the_assets_rows_and_values(example_env, tmp_path, monkeypatch):
    bare = bare_reference()
    settings = Settings.from_env()
    spec = settings.dataset()
    t = Tables(spec)
    day = datetime.combine(SMALL_START + timedelta(days=8), datetime.min.time())
    first, before = SMALL_START.isoformat(), (day - timedelta(days=1)).date().isoformat()
    defs = build_definitions()
    with dg.instance_for_test() as instance:
        materialize(
            defs, "key:raw_transactions or key:cleaned_transactions", instance, first, before
        )
        materialize(
            defs,
            "key:raw_transactions or key:cleaned_transactions or key:features",
            instance,
            f"{day:%Y-%m-%d}",
        )
    warehouse = build_warehouse(settings)
    tc = spec.event_time_column
    ours = {
        name: warehouse.read(
            f"SELECT * FROM {table} WHERE {tc} >= $s AND {tc} < $e",
            {"s": day, "e": day + timedelta(days=1)},
        )
        for name, table, tc in [
            ("raw", t.raw, tc),
            ("cleaned", t.cleaned, tc),
            ("features", t.features, "event_time"),
        ]
    }

    csv = example_env / "landing" / "transactions" / f"transactions_{day:%Y-%m-%d}.csv"
    raw = bare.raw_day(spec, csv, day, TEST_KEY)
    cleaned = bare.cleaned_day(spec, raw)
    windowed = [spec.id_column, tc, spec.entity_column, *spec.features.rolling.sum_columns]
    history = warehouse.read(
        f"SELECT {', '.join(windowed)} FROM {t.cleaned} WHERE {tc} >= $s AND {tc} < $e",
        {"s": day - timedelta(days=spec.feature_history_days), "e": day},
    )
    features = bare.features_day(spec, pl.concat([history, cleaned], how="diagonal_relaxed"), day)
    theirs = {"raw": raw, "cleaned": cleaned, "features": features}

    # the day has the generator's dirt, so every rule had something to do
    assert len(raw) > 250 and raw[spec.id_column].is_duplicated().any()
    assert any(
        cleaned[c.name].is_in([c.unknown_category, c.impute.value]).any()
        for c in spec.columns
        if c.categories is not None
    )
    assert (
        raw["amount"].is_null().any() or (raw["amount"] > 20_000).any() or (raw["amount"] < 0).any()
    )
    assert features["customer_id_events_7d"].max() > 0
    for stage in ("raw", "cleaned", "features"):
        a = ours[stage].sort(spec.id_column, *([tc] if stage == "raw" else []))
        b = theirs[stage].select(a.columns).sort(spec.id_column, *([tc] if stage == "raw" else []))
        assert_frame_equal(a, b, check_dtypes=True, abs_tol=1e-6), stage

    # a big day's features go by buckets of entities: the same rows and values
    from ml_assets.defs.features import assets as features_assets

    monkeypatch.setattr(features_assets, "BUCKET_ROWS", 500)
    bucketed, read = features_assets.read_and_build(
        warehouse, spec, t.cleaned, day, day + timedelta(days=1)
    )
    assert read > len(bucketed) > 250
    assert_frame_equal(bucketed.sort(spec.id_column), ours["features"].sort(spec.id_column))
