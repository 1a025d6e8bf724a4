"""Governance never races a run: a command that changes stored data holds the governance lock
for its whole length, and every run holds it shared for its own.

The lock is a file in the state folder (`governance/runs.lock`, flock). A run takes it shared
when its warehouse resource is set up and keeps it to the end, so runs go on side by side. A
governance command (erase, retention, rotate-key, backup create/restore) takes it exclusive
without waiting: while a run holds it, or the instance has a run queued or in progress, the
command is refused, naming them and the fix. Once it holds the lock, a run that starts waits at
its setup until the command ends (it could read a day before an erasure and write it back
after), then reads what the command left. The command's own runs (an erasure making days
again) are let through by a token in their environment.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ml_assets.settings import actor

HOLDER_ENV_VAR = "ML_ASSETS_GOVERNANCE_HOLDER"
# on a job whose op takes the lock itself (the retention schedule's): its run holds no share
GOVERNANCE_RUN_TAG = "ml_assets/governance"
LOCK_NAME = "runs.lock"
# how long a run waits for a governance command before it fails saying which one
RUN_WAIT_SECONDS = 3600.0


class RunInProgress(RuntimeError):
    """A run is in progress; the message names it and the fix."""


class GovernanceInProgress(RuntimeError):
    """A run waited too long for a governance command; the message names it."""


def lock_path(data_dir: Path | None = None) -> Path:
    from ml_assets.settings import data_dir_from_env, governance_dir

    return governance_dir(Path(data_dir) if data_dir else data_dir_from_env()) / LOCK_NAME


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}


@contextmanager
def governance_lock(
    action: str, data_dir: Path | None = None, wait_seconds: float = 0, own_run: str | None = None
) -> Iterator[None]:
    """Hold the lock exclusive while `action` changes stored data. RunInProgress when a run
    holds it or the instance has one queued or in progress (other than `own_run`, the run a
    scheduled command runs in), after trying again for `wait_seconds`."""
    path = lock_path(data_dir)
    deadline = time.monotonic() + wait_seconds
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            refuse_while_runs(action, own_run)
            break
        except BaseException as err:
            os.close(fd)  # whatever failed, the lock is not kept
            if not isinstance(err, BlockingIOError | RunInProgress):
                raise
            if time.monotonic() < deadline:
                time.sleep(min(5.0, wait_seconds))
                continue
            if isinstance(err, RunInProgress):
                raise
            raise RunInProgress(
                f"{action} refused: a run is reading or writing the data it changes (it holds "
                f"{path}). Fix: wait until the runs end (the UI's Runs page), or stop the daemon "
                "so no new run starts, then run the command again"
            ) from None
    try:
        token = secrets.token_hex(8)
        os.ftruncate(fd, 0)
        holder = {
            "action": action,
            "actor": actor(),
            "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "token": token,
        }
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        previous = os.environ.get(HOLDER_ENV_VAR)
        os.environ[HOLDER_ENV_VAR] = token
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            if previous is None:
                os.environ.pop(HOLDER_ENV_VAR, None)
            else:
                os.environ[HOLDER_ENV_VAR] = previous
    finally:
        os.close(fd)  # releases the lock


def hold_for_run(log=None, wait_seconds: float = RUN_WAIT_SECONDS) -> int | None:
    """Take the lock shared for a run (the caller closes the returned descriptor at its end);
    waits while a governance command holds it, and lets its own runs through (None)."""
    path = lock_path()
    fd = _open(path)
    deadline = time.monotonic() + wait_seconds
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            holder = _holder(fd)
            if holder.get("token") and holder["token"] == os.environ.get(HOLDER_ENV_VAR):
                os.close(fd)
                return None  # a run the command itself started
            what = f"{holder.get('action', 'a governance command')} (by {holder.get('actor', '?')} since {holder.get('since', '?')})"
            if time.monotonic() > deadline:
                os.close(fd)
                raise GovernanceInProgress(
                    f"waited {wait_seconds:.0f} s for {what} to end; the run did not start its "
                    f"work. Fix: launch it again once the command is done (`python -m "
                    "ml_assets.governance audit` shows when it ended)"
                ) from None
            if not said and log is not None:
                log.info(f"waiting for {what} to end before reading or writing any data")
                said = True
            time.sleep(0.5)


def refuse_while_runs(action: str, own_run: str | None = None) -> None:
    """Raise RunInProgress when the instance at $DAGSTER_HOME has a run queued, starting or
    started (but `own_run`). Without DAGSTER_HOME there is no instance to ask (nothing runs)."""
    if not os.environ.get("DAGSTER_HOME"):
        return
    import dagster as dg
    from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES

    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(
            filters=dg.RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)), limit=20
        )
    # a scheduled governance run (the retention job) waits for the lock itself: not a writer
    records = [
        r
        for r in records
        if r.dagster_run.run_id != own_run and GOVERNANCE_RUN_TAG not in r.dagster_run.tags
    ][:5]
    if records:
        names = ", ".join(
            f"{r.dagster_run.run_id[:8]} ({r.dagster_run.status.value})" for r in records
        )
        raise RunInProgress(
            f"{action} refused: {len(records)} run(s) in progress ({names}) would read or write "
            "the data it changes. Fix: wait until they end (the UI's Runs page), or stop the "
            "daemon (`make dev`'s Ctrl-C) so no new run starts, then run the command again"
        )
