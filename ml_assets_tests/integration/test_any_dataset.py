"""A dataset of another shape, brought with a spec alone: the third test dataset (loans) runs
end to end through `python -m ml_assets.materialize` with no code of its own, and its drift
verdicts find the planted drift and nothing else."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import polars as pl
import pytest

from ml_assets import materialize as materialize_cli
from ml_assets.definitions import build_definitions
from ml_assets.storage.registry import current_version, load_card
from ml_assets_tests import loans
from ml_assets_tests.conftest import TEST_KEY, demo_instance_home

# on the fault tests' worker, after them: beside them, its two minutes of full CPU delayed a
# run's recovery past their timeout (`make test`, 2 cores)
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("faults")]


@pytest.fixture(scope="module")
def loans_run(tmp_path_factory):
    """The whole graph over the loans' 400 days, once for the module's tests."""
    root = tmp_path_factory.mktemp("loans")
    data = root / "data"
    loans.write_loans(data)
    spec = loans.loans_spec(root / "loans.yaml")
    env = {
        "ML_ASSETS_SPEC": str(spec),
        "ML_ASSETS_DATA_DIR": str(data),
        "ML_ASSETS_PSEUDONYM_KEY": TEST_KEY,
        "DAGSTER_HOME": str(demo_instance_home(root)),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert materialize_cli.main([]) == 0
        yield root, data, env


def read(data, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(sql).pl()


def test_every_line_is_read_as_written_times_booleans_and_the_label_column(loans_run):
    root, data, _ = loans_run
    lines = sum(
        len(p.read_text().splitlines()) - 1
        for p in (data / "archive").rglob("*_applications_*.csv")
    )
    assert lines > 400 * 150
    assert read(data, "SELECT count(*) AS n FROM raw.loans").item() == lines
    assert read(data, "SELECT count(*) AS n FROM raw.loans_rejected_rows").item() == 0
    # Z, +02:00 and local times all land on Berlin time: a summer day's rows are inside it
    day = read(
        data,
        "SELECT min(submitted_at) AS lo, max(submitted_at) AS hi FROM cleaned.loans "
        "WHERE _source_file = 'applications_2025-07-15.csv'",
    ).row(0)
    assert datetime(2025, 7, 15) <= day[0] and day[1] < datetime(2025, 7, 16)
    (archived,) = (data / "archive").rglob("*_applications_2025-07-15.csv")
    written = archived.read_text()
    first_z = next(
        ln for ln in written.splitlines()[1:] if ",".join(ln.split(",")[1:2]).endswith("Z")
    )
    app_id, when = first_z.split(",")[:2]
    stored = read(
        data, f"SELECT submitted_at FROM cleaned.loans WHERE application_id = '{app_id}'"
    ).item()
    utc = datetime.fromisoformat(when.replace("Z", "+00:00"))
    assert stored == utc.astimezone(ZoneInfo("Europe/Berlin")).replace(tzinfo=None)
    assert set(read(data, "SELECT DISTINCT has_guarantor FROM cleaned.loans")["has_guarantor"]) == {
        "true",
        "false",
    }
    # the label column: known 30 days after the event, so the last 30 days are unlabelled
    status = read(
        data,
        "SELECT label_status, max(event_time) AS newest, min(event_time) AS oldest FROM labels.loans GROUP BY 1",
    )
    by = {r["label_status"]: r for r in status.to_dicts()}
    last_day = loans.START + timedelta(days=loans.DAYS - 1)
    assert by["unlabelled"]["oldest"] >= datetime.combine(
        last_day - timedelta(days=30), datetime.min.time()
    )
    assert by["positive"]["newest"] < datetime.combine(
        last_day - timedelta(days=29), datetime.min.time()
    )
    # no label landing area, and the queue is off: no annotation batch files at all
    keys = {
        k.to_user_string() for k in build_definitions().resolve_asset_graph().get_all_asset_keys()
    }
    assert "annotation_queue" not in keys and not any(k.startswith("raw_repayments") for k in keys)
    assert not (data / "annotation").exists()


def test_the_model_is_trained_on_the_fixed_window_and_its_card_speaks_of_this_dataset(loans_run):
    root, data, env = loans_run
    version = current_version(data / "models")
    card = load_card(data / "models", version)
    assert card["training_window"] == "fixed 2025-01-01 .. 2025-04-30"
    assert card["time_split"]["train"].startswith("2025-01-01")
    assert card["time_split"]["test"].endswith("2025-04-30")
    markdown = (data / "models" / version / "model_card.md").read_text()
    assert "Labels come from `repayments` (the `defaulted` column of the events" in markdown
    assert "known up to 30 days after the event" in markdown
    assert "Training window: fixed 2025-01-01 .. 2025-04-30" in markdown
    assert "training.gap_days: 0" in markdown
    for leftover in ("chargeback", "Fraud", "none days"):
        assert leftover not in markdown
    # the retraining sensor keeps it: the model is months old and the data drifted
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        defs = build_definitions()
        with dg.DagsterInstance.get() as instance:
            with dg.build_sensor_context(
                instance=instance, resources=defs.resources, sensor_name="retraining"
            ) as context:
                result = defs.resolve_sensor_def("retraining")(context)
    assert not result.run_requests
    assert "training.window is fixed 2025-01-01 .. 2025-04-30" in result.skip_reason.skip_message


def weekly_verdicts(columns: pl.DataFrame) -> pl.DataFrame:
    """(column, week) after the drift day: drifted when the column drifted on most of its days."""
    return (
        columns.filter(pl.col("day") >= datetime.combine(loans.DRIFT_DAY, datetime.min.time()))
        .with_columns(
            week=(
                (
                    pl.col("day") - datetime.combine(loans.DRIFT_DAY, datetime.min.time())
                ).dt.total_days()
                // 7
            )
        )
        .group_by("column", "week")
        .agg(flagged=pl.col("drifted").mean() > 0.5, days=pl.len())
        .filter(pl.col("days") >= 4)
    )


def test_the_drift_verdicts_find_the_planted_drift_and_raise_no_false_alarm(loans_run):
    _, data, _ = loans_run
    columns = read(data, 'SELECT day, "column", drifted FROM monitor.loans_drift_columns')
    weeks = weekly_verdicts(columns.filter(pl.col("column") != "prediction_score"))
    truth = pl.col("column").is_in(sorted(loans.DRIFTED))
    tp = len(weeks.filter(truth & pl.col("flagged")))
    fp = len(weeks.filter(~truth & pl.col("flagged")))
    fn = len(weeks.filter(truth & ~pl.col("flagged")))
    assert (
        tp + fn == 2 * weeks["week"].n_unique()
        and tp / (tp + fp) >= 0.95
        and tp / (tp + fn) >= 0.95
    )
    # the day verdicts on the stable days after the training window: false alarms at most 1 %
    days = read(data, "SELECT day, dataset_drifted FROM monitor.loans_drift_days")
    stable = days.filter(
        (pl.col("day") >= datetime.combine(loans.TRAIN_END, datetime.min.time()))
        & (pl.col("day") < datetime.combine(loans.DRIFT_DAY, datetime.min.time()))
    )
    assert len(stable) > 150
    assert stable["dataset_drifted"].mean() <= 0.01, stable.filter(pl.col("dataset_drifted"))


def test_the_range_command_names_the_range_it_accepts(loans_run, capsys):
    _, _, env = loans_run
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert materialize_cli.main(["--from", "2024-12-31"]) == 2
        assert materialize_cli.main(["--from", "2026-01-02", "--to", "2026-01-01"]) == 2
        # what Dagster's own range command refuses in a selection, named
        assert materialize_cli.unpartitioned_in(build_definitions(), "*") == [
            "model",
            "monitoring_trend",
            "training_set",
        ]
    err = capsys.readouterr().err
    assert "2024-12-31 is not a day of the partitions of loans (2025-01-01 .. 2026-02-04" in err
    assert "--from 2026-01-02 is after --to 2026-01-01" in err


def test_performance_is_estimated_before_the_labels_and_the_estimate_checked_after(loans_run):
    """CBPE on the loans: the last 30 days wait for their labels and still get an estimate; the
    judged days record the estimate's error, which stays within the realised figure's own noise
    (docs/drift.md: about 120 positives a week)."""
    _, data, _ = loans_run
    days = read(
        data,
        "SELECT day, state, judged, est_roc_auc, est_roc_auc_low, est_roc_auc_high, roc_auc, "
        "est_window_roc_auc, window_roc_auc, window_days, roc_auc_estimation_error "
        "FROM monitor.loans_performance_days",
    )
    pending = days.filter(pl.col("state") == "pending")
    assert len(pending) == 30 and pending["est_roc_auc"].is_not_null().all()
    assert (pending["est_roc_auc_low"] < pending["est_roc_auc_high"]).all()
    judged = days.filter(pl.col("judged"))
    assert len(judged) > 200 and judged["roc_auc_estimation_error"].is_not_null().all()
    # every 7th judged day: the 7-day pooled estimate against the pooled realised figure
    weekly = judged.filter(pl.col("window_days") == 7).sort("day").gather_every(7)
    assert len(weekly) > 30
    error = (weekly["est_window_roc_auc"] - weekly["window_roc_auc"]).abs()
    assert error.mean() < 0.03 and error.max() < 0.08
