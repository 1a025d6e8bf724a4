"""Active learning does what it claims: labels picked by the queue improve the model on a held-out
slice more than the same number of labels picked at random (fixed seeds throughout)."""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg
import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score

from ml_assets.definitions import build_definitions
from ml_assets.example_data import generate
from ml_assets.spec import load_spec
from ml_assets.transforms import train as training
from ml_assets.transforms.annotation import select_for_annotation
from ml_assets.transforms.features import feature_columns
from ml_assets_tests.conftest import TEST_KEY, materialize, small_example_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED_DAYS = (datetime(2026, 9, 1), datetime(2026, 9, 9))  # labelled by chargebacks
POOL_DAYS = (datetime(2026, 9, 9), datetime(2026, 9, 19))  # unlabelled: the queue picks here
HELD_OUT = (datetime(2026, 9, 19), datetime(2026, 10, 1))  # never trained on
DAILY_BUDGET = 50
RANDOM_DRAWS = 5


@pytest.fixture(scope="module")
def example_features(tmp_path_factory):
    """Features and ground truth of 30 example days (1,000 events a day), through the pipeline."""
    root = tmp_path_factory.mktemp("active")
    generate(
        root / "data/landing", start=date(2026, 9, 1), days=30, rows_per_day=1000, maturity_days=5
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ML_ASSETS_SPEC", str(small_example_spec(root, days=30)))
        mp.setenv("ML_ASSETS_DATA_DIR", str(root / "data"))
        mp.setenv("ML_ASSETS_PSEUDONYM_KEY", TEST_KEY)
        defs = build_definitions()
        materialize(
            defs,
            "group:ingest or group:clean or group:labels or group:features",
            dg.DagsterInstance.ephemeral(),
            "2026-09-01",
            "2026-09-30",
        )
        spec = load_spec()
    import duckdb

    con = duckdb.connect(str(root / "data/warehouse.duckdb"), read_only=True)
    try:
        frame = con.sql(
            """SELECT f.*, c.customer_id, l.label AS chargeback_label
               FROM features.transactions f
               JOIN cleaned.transactions c USING (transaction_id)
               JOIN labels.transactions_ground_truth l ON l.event_id = f.transaction_id
               ORDER BY f.event_time, f.transaction_id"""
        ).pl()
    finally:
        con.close()
    fraud = pl.read_csv(root / "data/example_truth/frauds.csv")["transaction_id"]
    # what a person reviewing the event finds out: the truth, reported or not
    frame = frame.with_columns(truth=pl.col("transaction_id").is_in(fraud.implode()).cast(pl.Int8))
    return spec, frame


def between(frame: pl.DataFrame, window) -> pl.DataFrame:
    return frame.filter(pl.col("event_time").is_between(*window, closed="left"))


def pr_auc_after(model_input: pl.DataFrame, held_out: pl.DataFrame, spec) -> float:
    numeric, categorical = feature_columns(spec)
    model = training.fit(model_input, numeric, categorical, seed=spec.training.seed)
    return float(average_precision_score(held_out["truth"], model.score(held_out)))


def test_labels_from_the_queue_beat_as_many_random_labels_on_a_held_out_slice(example_features):
    spec, frame = example_features
    numeric, categorical = feature_columns(spec)
    seed_set = between(frame, SEED_DAYS).with_columns(label=pl.col("chargeback_label"))
    seed_set = seed_set.filter(pl.col("label").is_not_null())
    pool, held_out = between(frame, POOL_DAYS), between(frame, HELD_OUT)
    first = training.fit(seed_set, numeric, categorical, seed=spec.training.seed)

    # the queue's pick: each pool day, the most uncertain events, one per customer, within budget
    scored = pool.select(
        event_id="transaction_id",
        score=pl.Series(first.score(pool)),
        customer_id="customer_id",
        day=pl.col("event_time").dt.date(),
    )
    picked = pl.concat(
        select_for_annotation(
            scored.filter(pl.col("day") == day), first.threshold, DAILY_BUDGET, "customer_id", 1
        )
        for day in scored["day"].unique().sort()
    )["event_id"]
    budget = len(picked)
    assert budget == DAILY_BUDGET * 10

    def with_annotations(ids: pl.Series) -> pl.DataFrame:
        annotated = pool.filter(pl.col("transaction_id").is_in(ids.implode()))
        return pl.concat(
            [seed_set, annotated.with_columns(label=pl.col("truth"))], how="diagonal_relaxed"
        )

    baseline = float(average_precision_score(held_out["truth"], first.score(held_out)))
    active = pr_auc_after(with_annotations(picked), held_out, spec)
    random_scores = []
    for draw in range(RANDOM_DRAWS):
        ids = pool["transaction_id"].sample(budget, seed=100 + draw)
        random_scores.append(pr_auc_after(with_annotations(ids), held_out, spec))
    positives_picked = int(
        pool.filter(pl.col("transaction_id").is_in(picked.implode()))["truth"].sum()
    )
    report = (
        f"PR AUC on the held-out days: seed set only {baseline:.3f}, + {budget} queue labels "
        f"{active:.3f} ({positives_picked} positives), + {budget} random labels "
        f"{np.mean(random_scores):.3f} (draws {[round(s, 3) for s in random_scores]})"
    )
    assert active > baseline, report
    # better than the random labels on average and than most single draws
    assert active - baseline > np.mean(random_scores) - baseline, report
    assert sum(active > s for s in random_scores) >= RANDOM_DRAWS - 1, report
