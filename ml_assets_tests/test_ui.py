"""`make dev`: the real `dagster dev` serves the code location; the UI's GraphQL API shows every asset."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from ml_assets_tests.conftest import ALL_ASSETS, EXTERNAL_ASSETS

UNPARTITIONED = {"training_set", "model", "monitoring_trend", "audit_log"}

ROOT = Path(__file__).resolve().parent.parent
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
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "data/dagster_home/dagster.yaml", home)
    return home


def test_dagster_dev_shows_every_asset_with_group_description_partitions_and_freshness(
    example_env, tmp_path
):
    with dagster_dev(dagster_home(tmp_path), tmp_path / "dagster_dev.log") as port:
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
