"""Every asset in every state a deployment passes through: it does what it can, says what waits
and why, and the run succeeds."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from ml_assets_tests.conftest import SMALL_START, demo_instance_home

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def materialize_cli(*args: str, home) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ml_assets.materialize", *args],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_day_one_runs_the_whole_graph_and_says_what_waits(example_env, tmp_path):
    """A new deployment's first day: no matured labels, no class balance for the label model,
    no model. The command succeeds, stores what it can, and names what waits and why."""
    home = demo_instance_home(tmp_path)
    day = SMALL_START.isoformat()
    done = materialize_cli("--from", day, "--to", day, home=home)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "Stack Trace" not in out, out[-3000:]
    assert "training_set: waits: no day has fully matured labels yet" in out, out
    assert "predictions: waits: no model in use yet" in out, out
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    try:
        features = con.sql("SELECT count(*) FROM features.transactions").fetchall()[0][0]
        weak = con.sql(
            "SELECT count(*), count(probability), count(majority_vote) FROM labels.transactions_weak_votes"
        ).fetchall()[0]
        weak_labels = con.sql(
            "SELECT count(*) FROM labels.transactions WHERE label_source = 'weak'"
        ).fetchall()[0][0]
    finally:
        con.close()
    assert features > 200
    # the votes are kept, the label model waits for a class balance: no weak label yet
    assert weak[0] == features and weak[1] == 0 and weak[2] > 0, weak
    assert weak_labels == 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        observed = instance.fetch_observations(dg.AssetKey("weak_labels"), limit=1).records
        materialized = instance.get_latest_materialization_event(dg.AssetKey("weak_labels"))
        assert not observed  # weak_labels itself is built: it is the probability that waits
        waiting = materialized.asset_materialization.metadata["label_model"].value
        assert "waiting" in waiting and "class_balance" in waiting, waiting
        assert instance.get_latest_materialization_event(dg.AssetKey("model")) is None
        seen = instance.fetch_observations(dg.AssetKey("predictions"), limit=1).records
        assert "no model in use" in seen[0].asset_observation.metadata["waiting"].value


def test_a_step_that_fails_prints_its_reason_and_fix_not_a_stack_trace(example_env, tmp_path):
    home = demo_instance_home(tmp_path)
    day = SMALL_START.isoformat()
    (example_env / "landing/transactions" / f"transactions_{day}.csv").unlink()
    done = materialize_cli("--from", day, "--to", day, home=home)
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "Traceback" not in out and "Stack Trace" not in out, out
    assert f"raw_transactions: FAILED: no landing file for {day}" in out, out
    assert "Fix: drop the day's file there" in out
    # the later stages read what the failed one did not write: not run
    assert "training set and model" not in out
