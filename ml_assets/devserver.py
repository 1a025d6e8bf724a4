"""A local `dagster dev` (webserver + daemon) to drive from Python: start, query over GraphQL, stop.

Used by the integration test and the drop-to-drift benchmark; both need the real daemon (file
sensors, automation, run queue), not in-process execution.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDevError(RuntimeError):
    pass


# `dagster dev` asked to stop gets this long before what is left of it is killed
STOP_GRACE_SECONDS = 10.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(proc: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> float:
    """Stop a process started with `start_new_session=True` and everything it started, by the
    process group it leads: SIGTERM to the group, then SIGKILL to what is left after `grace`
    seconds. Returns the seconds it took.

    SIGTERM to `dagster dev` alone leaves its code servers and run workers running until their
    heartbeats time out (11 processes were alive 18 s later); the group gets the signal at once.
    A run worker stopped this way marks its run failed (UNEXPECTED_TERMINATION), which the
    instance's run_retries launches again after the next start.
    """
    started = time.monotonic()
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = started + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap our own child, or it stays in the group as a zombie
        if not _group_alive(pgid):
            return time.monotonic() - started
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    while _group_alive(pgid) and time.monotonic() < deadline + 5:
        time.sleep(0.1)
    return time.monotonic() - started


class DagsterDev:
    """`dagster dev -w workspace.yaml` on a free local port, in its own process group.

    Use as a context manager: everything it started is stopped on exit, also on failure.
    """

    def __init__(
        self,
        dagster_home: Path,
        env: Mapping[str, str],
        log_path: Path,
        as_make_dev: bool = False,
    ):
        """`as_make_dev`: start it as `make dev` does, through `python -m ml_assets.devserver`."""
        self.home, self.env, self.log_path = Path(dagster_home), dict(env), Path(log_path)
        self.as_make_dev = as_make_dev
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._location: str | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 180) -> DagsterDev:
        self._log = open(self.log_path, "a")
        self._log.write(f"\n===== dagster dev start {time.strftime('%H:%M:%S')} =====\n")
        self._log.flush()
        command = [str(BIN / "dagster"), "dev", "-w", "workspace.yaml"]
        if self.as_make_dev:
            command = [sys.executable, "-m", "ml_assets.devserver"]
        self.proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=PROJECT_ROOT,
            env={**os.environ, **self.env, "DAGSTER_HOME": str(self.home)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_for(
            lambda: self.query("{ version }").get("version"),
            timeout,
            "the webserver to answer",
        )
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process_group(self.proc)
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> DagsterDev:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    # ---- GraphQL ---------------------------------------------------------------------------
    def query(self, query: str, variables: Mapping[str, Any] | None = None) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise DagsterDevError(f"GraphQL HTTP {err.code}: {err.read()[:2000]!r}") from None
        if body.get("errors"):
            raise DagsterDevError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str, every=0.5):
        """Poll until `predicate()` is truthy; fail with the dagster dev log if it never is."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise DagsterDevError(
                    f"dagster dev exited (code {self.proc.returncode}) while waiting for {what}:\n"
                    + self.log_tail()
                )
            try:
                value = predicate()
                if value:
                    return value
            except (OSError, urllib.error.URLError, DagsterDevError) as err:
                last_error = err
            time.sleep(every)
        raise DagsterDevError(
            f"gave up after {timeout:.0f} s waiting for {what} (last error: {last_error}).\n"
            f"Runs: {self.run_summary()}\nLog tail:\n{self.log_tail()}"
        )

    # ---- what tests and benchmarks ask --------------------------------------------------------
    def materialized_partitions(self, asset: str) -> dict[str, int]:
        """{partition: number of materializations} of a partitioned asset."""
        data = self.query(
            """query($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
                 ... on Asset { assetMaterializations(limit: 10000) { partition } } } }""",
            {"path": [asset]},
        )["assetOrError"]
        counts: dict[str, int] = {}
        for m in data.get("assetMaterializations") or []:
            counts[m["partition"]] = counts.get(m["partition"], 0) + 1
        return counts

    def materialization_count(self, asset: str) -> int:
        return sum(self.materialized_partitions(asset).values())

    def newest_materialization_ms(self, asset: str) -> int:
        """When the asset (any partition) was last materialized, in epoch ms; 0 when never."""
        data = self.query(
            """query($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
                 ... on Asset { assetMaterializations(limit: 1) { timestamp } } } }""",
            {"path": [asset]},
        )["assetOrError"]
        found = data.get("assetMaterializations") or []
        return int(float(found[0]["timestamp"])) if found else 0

    def runs(self, statuses: list[str] | None = None) -> list[dict]:
        data = self.query(
            """query($filter: RunsFilter) { runsOrError(filter: $filter, limit: 1000) {
                 ... on Runs { results { runId status tags { key value } } } } }""",
            {"filter": {"statuses": statuses} if statuses else {}},
        )["runsOrError"]
        return data.get("results", [])

    def run_summary(self) -> str:
        try:
            runs = self.runs()
        except Exception as err:  # the server may be the thing that is down
            return f"(runs unavailable: {err})"
        by_status: dict[str, int] = {}
        for r in runs:
            by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        return json.dumps(by_status)

    def in_flight(self) -> int:
        return len(self.runs(["QUEUED", "NOT_STARTED", "STARTING", "STARTED"]))

    def backfills_in_progress(self) -> int:
        data = self.query(
            """{ partitionBackfillsOrError(status: REQUESTED) {
                 ... on PartitionBackfills { results { id } } } }"""
        )["partitionBackfillsOrError"]
        return len(data.get("results", []))

    def quiet(self) -> bool:
        """No run queued or running and no backfill still to launch one."""
        return self.in_flight() == 0 and self.backfills_in_progress() == 0

    def check_executions(self, asset: str, check: str, limit: int = 20) -> list[dict]:
        return self.query(
            """query($path: [String!]!, $check: String!, $limit: Int!) {
                 assetCheckExecutions(assetKey: {path: $path}, checkName: $check, limit: $limit) {
                   status evaluation { success description } } }""",
            {"path": [asset], "check": check, "limit": limit},
        )["assetCheckExecutions"]

    def asset_nodes(self) -> dict[str, dict]:
        nodes = self.query(
            """{ assetNodes { assetKey { path } groupName description isPartitioned
                 internalFreshnessPolicy { __typename }
                 freshnessStatusInfo { freshnessStatus }
                 partitionStats { numMaterialized numPartitions numFailed } } }"""
        )["assetNodes"]
        return {"/".join(n["assetKey"]["path"]): n for n in nodes}

    def stop_running_sensors(self, timeout: float = 180) -> list[str]:
        """Stop every running sensor (once the code location lists them), so that runs start
        only when the caller says so; returns their names."""
        selector = {
            "repositoryLocationName": self.location_name(),
            "repositoryName": "__repository__",
        }
        sensors = self.wait_for(
            lambda: self.query(
                """query($selector: RepositorySelector!) {
                         sensorsOrError(repositorySelector: $selector) { ... on Sensors {
                           results { name jobOriginId sensorState { selectorId status } } } } }""",
                {"selector": selector},
            )["sensorsOrError"].get("results"),
            timeout,
            "the code location's sensors",
        )
        stopped = []
        for sensor in sensors:
            if sensor["sensorState"]["status"] == "RUNNING":
                self.query(
                    """mutation($origin: String!, $selector: String!) {
                         stopSensor(jobOriginId: $origin, jobSelectorId: $selector) { __typename } }""",
                    {
                        "origin": sensor["jobOriginId"],
                        "selector": sensor["sensorState"]["selectorId"],
                    },
                )
                stopped.append(sensor["name"])
        return stopped

    def launch_backfill(self, assets: list[str], partitions: list[str]) -> str:
        """A backfill of `assets` over `partitions`, as the UI launches it; returns its id."""
        launched = self.query(
            """mutation($params: LaunchBackfillParams!) {
                 launchPartitionBackfill(backfillParams: $params) { __typename
                   ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            {
                "params": {
                    "assetSelection": [{"path": [a]} for a in assets],
                    "partitionNames": partitions,
                }
            },
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise DagsterDevError(f"the backfill was not launched: {launched}")
        return launched["backfillId"]

    def backfill_status(self, backfill_id: str) -> str:
        return self.query(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 ... on PartitionBackfill { status } } }""",
            {"id": backfill_id},
        )["partitionBackfillOrError"]["status"]

    def location_name(self) -> str:
        """The code location's name (asked once per server start; tests poll sensors often)."""
        if self._location is None:
            entries = self.query(
                "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
            )["workspaceOrError"]["locationEntries"]
            self._location = entries[0]["name"]
        return self._location

    def sensor_cursor(self, sensor: str) -> str | None:
        data = self.query(
            """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
                 ... on Sensor { sensorState { typeSpecificData { ... on SensorData { lastCursor } } } } } }""",
            {
                "selector": {
                    "repositoryLocationName": self.location_name(),
                    "repositoryName": "__repository__",
                    "sensorName": sensor,
                }
            },
        )["sensorOrError"]
        return ((data.get("sensorState") or {}).get("typeSpecificData") or {}).get("lastCursor")


def serve(host: str = "127.0.0.1", port: int = 3000) -> int:
    """`make dev`: `dagster dev` on the workspace, stopped as a whole on SIGTERM, SIGINT or SIGHUP
    (within STOP_GRACE_SECONDS, every process it started included)."""
    proc = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", host, "-p", str(port)],
        cwd=PROJECT_ROOT,
        start_new_session=True,
    )
    asked: list[int] = []

    def on_signal(signum, _frame):
        asked.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    while proc.poll() is None and not asked:
        time.sleep(0.2)
    if asked:
        print(
            f"stopping dagster dev ({signal.Signals(asked[0]).name})", file=sys.stderr, flush=True
        )
    took = stop_process_group(proc)
    if asked:
        print(f"dagster dev and its processes stopped in {took:.1f} s", file=sys.stderr)
    return 0 if asked else (proc.returncode or 0)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ml_assets.devserver",
        description="dagster dev on workspace.yaml; SIGTERM or Ctrl-C stops it and every process it started",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    return serve(args.host, args.port)


if __name__ == "__main__":
    raise SystemExit(main())
