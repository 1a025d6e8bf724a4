"""The cluster profile with its real services on one machine: the instance in PostgreSQL, steps
on two Celery workers (Redis broker), Delta tables and files on an S3 emulator, `dagster dev`
(webserver + daemon) launching the runs. Every service is started here on 127.0.0.1 and
stopped by the PID started (ml_assets.localcluster), whatever happens.

Run by `make test-cluster` (`.ci/run` after `make test`, once it installed the services as
root); skips, saying what is missing, on a machine without them.
"""

from __future__ import annotations

import time
from datetime import date, timedelta

import dagster as dg
import pytest

from ml_assets.devserver import DagsterDev
from ml_assets.localcluster import LocalCluster, missing_programs
from ml_assets_tests.conftest import TEST_KEY, small_example_spec

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow]

LOCATION = {"repositoryLocationName": "ml_assets", "repositoryName": "__repository__"}
# training needs 6 matured days; with 5 days' label maturity, 12 days of data
DAYS = [date(2026, 9, 1) + timedelta(days=i) for i in range(12)]
SENSOR_DAY = date(2026, 9, 13)
RAW = ["raw_transactions", "raw_chargebacks"]
BEFORE_MODEL = [
    "cleaned_transactions",
    "ground_truth_labels",
    "weak_labels",
    "labels",
    "features",
]
MODELS = ["training_set", "model"]
AFTER_MODEL = ["predictions", "drift_report"]


LAUNCH_RUN = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
START_SENSOR = """mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
  __typename } }"""


def launch_range(dev: DagsterDev, assets: list[str], first: date, last: date) -> str:
    params = {
        "selector": {
            **LOCATION,
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [{"path": [a]} for a in assets],
        },
        "executionMetadata": {"tags": []},
    }
    if first:
        params["executionMetadata"]["tags"] = [
            {"key": "dagster/asset_partition_range_start", "value": first.isoformat()},
            {"key": "dagster/asset_partition_range_end", "value": last.isoformat()},
        ]
    launched = dev.query(LAUNCH_RUN, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def wait_for_runs(instance: dg.DagsterInstance, run_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [instance.get_run_by_id(r) for r in run_ids]
        if all(r.is_finished for r in runs):
            failed = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
            assert not failed, f"runs failed: {failed}: {failure_messages(instance, failed)}"
            return
        time.sleep(2)
    raise AssertionError(f"runs still going after {timeout:g} s: {run_ids}")


def failure_messages(instance: dg.DagsterInstance, run_ids: list[str]) -> list[str]:
    out = []
    for run_id in run_ids:
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event and event.is_step_failure:
                error = event.step_failure_data.error
                out.append(
                    f"{run_id[:8]} {event.step_key}: {error.message if error else event.message}"[
                        :2000
                    ]
                )
    return out


def celery_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """{step: the Celery worker that ran it}, from the engine events the workers log."""
    out = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = record.dagster_event.event_specific_data
        metadata = getattr(data, "metadata", None) or {}
        if "Celery worker" in metadata:
            for step in metadata.get("step_keys", dg.MetadataValue.text("")).value.split(","):
                out[step.strip() or record.step_key] = metadata["Celery worker"].value
            out.setdefault(record.step_key or "?", metadata["Celery worker"].value)
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, small_landing):
    missing = missing_programs(workers=2)
    if missing:
        pytest.skip("CLUSTER TEST SKIPPED: missing " + "; ".join(missing), allow_module_level=True)
    tmp = tmp_path_factory.mktemp("cluster")
    spec = small_example_spec(tmp)
    settings = {
        "ML_ASSETS_SPEC": str(spec),
        "ML_ASSETS_DATA_DIR": str(tmp / "local"),
        "ML_ASSETS_PSEUDONYM_KEY": TEST_KEY,
        "ML_ASSETS_PROFILE": "cluster",
        "ML_ASSETS_LAKE_ROOT": "s3://ml-assets/lake",
        "ML_ASSETS_FILES_ROOT": "s3://ml-assets/ml",
        "ML_ASSETS_BACKFILL_DAYS_PER_RUN": "2",
        "ML_ASSETS_SENSOR_INTERVAL_SECONDS": "5",
    }
    services = LocalCluster(tmp / "services", workers=2, worker_env=settings)
    services.start()
    dev = None
    try:
        env = {**settings, **services.env()}
        services.upload(
            small_landing, "ml/landing", keep=lambda p: p.stem[-10:] <= DAYS[-1].isoformat()
        )
        # the instance is the services' (Postgres); runs start only when this test says so
        dev = DagsterDev(services.state / "dagster_home", env, tmp / "dagster_dev.log").start()
        dev.stop_running_sensors()
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            instance = dg.DagsterInstance.get()  # the Postgres instance the runs write to
            try:
                yield dev, instance, services.s3(), small_landing, tmp
            finally:
                instance.dispose()
    finally:
        if dev is not None:
            dev.stop()
        services.stop()
        print(f"cluster services stopped (logs in {tmp})")


def test_the_whole_graph_on_postgres_celery_and_s3(cluster):
    dev, instance, s3, landing, tmp = cluster
    from ml_assets.storage.delta_lake import DeltaWarehouse

    # 1. raw days as a backfill: runs of at most 2 days each (multi_run), shared by the workers
    backfill = dev.launch_backfill(RAW, [d.isoformat() for d in DAYS])
    dev.wait_for(
        lambda: dev.backfill_status(backfill) not in ("REQUESTED",),
        180,
        "the raw backfill to launch its runs",
        every=2,
    )
    backfill_runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill}))
    spans = [
        date.fromisoformat(r.tags["dagster/asset_partition_range_end"])
        - date.fromisoformat(r.tags["dagster/asset_partition_range_start"])
        for r in backfill_runs
        if "dagster/asset_partition_range_start" in r.tags
    ]
    single = [r for r in backfill_runs if "dagster/partition" in r.tags]
    assert len(spans) + len(single) == len(backfill_runs) >= 6, "12 days in several runs"
    assert spans and max(spans) == timedelta(days=1), "runs of at most 2 days (multi_run(2))"
    wait_for_runs(instance, [r.run_id for r in backfill_runs], 60)

    # 2. two partition ranges launched at once, then the model, then the days after it
    first = launch_range(dev, BEFORE_MODEL, DAYS[0], DAYS[5])
    second = launch_range(dev, BEFORE_MODEL, DAYS[6], DAYS[11])
    wait_for_runs(instance, [first, second], 240)
    starts = {r: instance.get_run_record_by_id(r).start_time for r in (first, second)}
    ends = {r: instance.get_run_record_by_id(r).end_time for r in (first, second)}
    assert starts[second] < ends[first] and starts[first] < ends[second], "ran side by side"
    models = launch_range(dev, MODELS, None, None)
    wait_for_runs(instance, [models], 180)
    after = launch_range(dev, AFTER_MODEL, DAYS[0], DAYS[11])
    wait_for_runs(instance, [after], 180)

    # every step ran on one of the two workers, and both took steps
    run_ids = [r.run_id for r in backfill_runs] + [first, second, models, after]
    by_step = {}
    for run_id in run_ids:
        workers = celery_workers(instance, run_id)
        assert workers, f"run {run_id} logged no Celery worker"
        by_step.update({f"{run_id[:8]}:{s}": w for s, w in workers.items()})
    assert {w.split("@")[0] for w in by_step.values()} == {"worker1", "worker2"}, by_step

    # no lost or duplicated rows: every file's rows are in raw once, and each later table
    # holds every cleaned event once
    lake = DeltaWarehouse(root="s3://ml-assets/lake")
    logged = lake.read("SELECT sum(rows) AS n FROM raw.transactions_files").item()
    assert lake.read("SELECT count(*) AS n FROM raw.transactions").item() == logged
    cleaned = lake.read(
        "SELECT count(*) AS n, count(DISTINCT transaction_id) AS u FROM cleaned.transactions"
    )
    assert cleaned["n"].item() == cleaned["u"].item() > 2000
    for table, id_column in (
        ("labels.transactions", "event_id"),
        ("features.transactions", "transaction_id"),
        ("predictions.transactions", "event_id"),
    ):
        counts = lake.read(f"SELECT count(*) AS n, count(DISTINCT {id_column}) AS u FROM {table}")
        assert counts.row(0) == cleaned.row(0), table
    days = lake.read("SELECT DISTINCT CAST(event_time AS DATE) AS d FROM cleaned.transactions")
    assert sorted(days["d"].to_list()) == DAYS

    # models and reports are objects on S3
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="ml-assets", Prefix="ml/")["Contents"]}
    assert "ml/models/current.json" in keys
    assert {f"ml/reports/drift_{d.isoformat()}.html" for d in DAYS} <= keys

    # 3. the file sensor takes a new object from the S3 prefix and its run ingests it
    sensor = dev.query(
        START_SENSOR, {"selector": {**LOCATION, "sensorName": "raw_transactions_files"}}
    )
    assert sensor["startSensor"]["__typename"] == "Sensor", sensor
    name = f"transactions/transactions_{SENSOR_DAY.isoformat()}.csv"
    s3.upload_file(str(landing / name), "ml-assets", f"ml/landing/{name}")
    deadline = time.monotonic() + 150
    while True:
        have = lake.read(
            "SELECT count(*) AS n FROM raw.transactions WHERE CAST(event_time AS DATE) = $day",
            {"day": SENSOR_DAY},
        ).item()
        if have:
            break
        assert time.monotonic() < deadline, "the sensor's run did not ingest the new object"
        time.sleep(3)
    sensed = [
        r
        for r in instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/sensor_name": "raw_transactions_files"})
        )
    ]
    assert sensed, "the new day was ingested by a run the file sensor requested"
