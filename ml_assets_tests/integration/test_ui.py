"""`make dev`: the real `dagster dev` serves the code location; the UI's GraphQL API shows every asset."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from ml_assets.example_data import generate
from ml_assets_tests.browser import browser_page, expect, screenshot
from ml_assets_tests.browser import dialog as browser_dialog
from ml_assets_tests.conftest import (
    ALL_ASSETS,
    EXTERNAL_ASSETS,
    SMALL_DAYS,
    TEST_KEY,
    demo_instance_home,
    small_example_spec,
)

UNPARTITIONED = {"training_set", "model", "monitoring_trend", "audit_log"}

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUERY = """{ assetNodes { assetKey { path } groupName description isPartitioned
  internalFreshnessPolicy { __typename } dependencyKeys { path } } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@contextmanager
def dagster_dev(home: Path, log_path: Path, timeout: float = 120):
    """`dagster dev` on the project's workspace and the instance at `home`; yields its port once
    the GraphQL API answers."""
    port = free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline, nodes = time.monotonic() + timeout, None
        while time.monotonic() < deadline and nodes is None:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                nodes = graphql(port, QUERY)["data"]["assetNodes"] or None
            except OSError:
                time.sleep(1)
        assert nodes, (
            f"dagster dev did not serve the assets within {timeout:g} s:\n{log_path.read_text()[-3000:]}"
        )
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def dagster_home(tmp_path: Path) -> Path:
    home = demo_instance_home(tmp_path)
    return home


SENSORS = """{ sensorsOrError(repositorySelector: {repositoryLocationName: "ml_assets",
  repositoryName: "__repository__"}) { ... on Sensors { results { name jobOriginId
  sensorState { selectorId status } } } } }"""
STOP_SENSOR = """mutation { stopSensor(jobOriginId: "%s", jobSelectorId: "%s") { __typename } }"""


def stop_sensors(port: int) -> None:
    """Nothing starts runs by itself (file sensors, automation): the UI test's run is the only one."""
    sensors = graphql(port, SENSORS)["data"]["sensorsOrError"]["results"]
    assert {s["name"] for s in sensors} >= {"raw_transactions_files", "lifecycle_automation"}
    for sensor in sensors:
        if sensor["sensorState"]["status"] == "RUNNING":
            stopped = graphql(
                port, STOP_SENSOR % (sensor["jobOriginId"], sensor["sensorState"]["selectorId"])
            )
            assert stopped["data"]["stopSensor"]["__typename"] == "StopSensorMutationResult", (
                stopped
            )


def recent_start() -> date:
    """The first day of a small example whose days ended a few days ago: the UI's launch dialog
    lists only the last 90 days' partitions by default, so fixed dates age out of it."""
    return date.today() - timedelta(days=SMALL_DAYS + 3)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One `dagster dev` (webserver and daemon) on the small example, its days derived from
    today, nothing materialized yet, for every test of this module; yields (port, data folder,
    first day)."""
    tmp = tmp_path_factory.mktemp("ui")
    data = tmp / "data"
    start = recent_start()
    generate(data / "landing", start=start, days=SMALL_DAYS, rows_per_day=300, maturity_days=5)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ML_ASSETS_SPEC", str(small_example_spec(tmp, start=start)))
        env.setenv("ML_ASSETS_DATA_DIR", str(data))
        env.setenv("ML_ASSETS_PSEUDONYM_KEY", TEST_KEY)
        env.delenv("DAGSTER_HOME", raising=False)
        with dagster_dev(dagster_home(tmp), tmp / "dagster_dev.log") as port:
            stop_sensors(port)
            yield port, data, start


def test_dagster_dev_shows_every_asset_with_group_description_partitions_and_freshness(served):
    port, _, _ = served
    nodes = graphql(port, QUERY)["data"]["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert set(by_key) == ALL_ASSETS
    for key, node in by_key.items():
        assert node["description"] and node["groupName"], key
        if key not in EXTERNAL_ASSETS:
            assert node["internalFreshnessPolicy"] is not None, key
        assert node["isPartitioned"] == (key not in UNPARTITIONED), key
    # each label source is its own node upstream of labels in the graph the UI draws
    upstream = {"/".join(d["path"]) for d in by_key["labels"]["dependencyKeys"]}
    assert upstream == {"ground_truth_labels", "manual_labels", "weak_labels"}
    assert by_key["manual_labels"]["groupName"] == by_key["labels"]["groupName"] == "labels"


MATERIALIZED = """{ assetOrError(assetKey: {path: ["%s"]}) { ... on Asset {
  assetMaterializations(partitions: ["%s"]) { runId } } } }"""


def test_one_day_materialized_from_the_ui_runs_and_turns_green(served):
    """What the UI is for: Materialize, pick the day, launch; the run succeeds and the day's
    partition shows materialized."""
    port, data, start = served
    asset, day = "raw_transactions", (start + timedelta(days=2)).isoformat()
    with browser_page(f"http://127.0.0.1:{port}") as page:
        page.goto(f"/assets/{asset}?view=partitions")
        expect(page.get_by_text("Materialized (0)")).to_be_visible()
        page.get_by_role("button", name="Materialize…").first.click()
        dialog = browser_dialog(page, f"Launch runs to materialize {asset}")
        picker = dialog.get_by_placeholder("No matching partitions")
        picker.fill(day)
        picker.press("Enter")
        expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
        screenshot(page, "materialize_dialog")
        dialog.get_by_role("button", name="Launch 1 run").click()
        expect(page.get_by_text("Launched run")).to_be_visible()
        # the run, from the Runs page: its partition tag and, once the daemon ran it, Success
        page.goto(f"/runs?q%5B%5D=tag%3Adagster%2Fpartition%3D{day}")
        page.locator("a[href^='/runs/']").first.click()
        expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=180_000)
        expect(page.get_by_text(f"partition: {day}")).to_be_visible()
        screenshot(page, "materialize_run")
        page.goto(f"/assets/{asset}?view=partitions")
        expect(page.get_by_text("Materialized (1)")).to_be_visible()
        expect(page.get_by_text(f"Missing ({SMALL_DAYS - 1})")).to_be_visible()
        page.get_by_text(day, exact=True).first.click()
        expect(page.get_by_role("button", name="View all historical events (1)")).to_be_visible()
        screenshot(page, "materialize_partitions")
    # the same as the UI shows it, from the instance: that day alone, stored in the warehouse
    runs = graphql(port, MATERIALIZED % (asset, day))["data"]["assetOrError"]
    assert len(runs["assetMaterializations"]) == 1
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    days = con.sql("SELECT DISTINCT CAST(event_time AS DATE) FROM raw.transactions").fetchall()
    con.close()
    assert [str(d) for (d,) in days] == [day]
