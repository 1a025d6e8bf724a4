"""Governance never races a run: a command that changes stored data refuses while a run is in
progress on the instance (it could read a day before an erasure and write it back after)."""

from __future__ import annotations

import os


class RunInProgress(RuntimeError):
    """A run is in progress; the message names it and the fix."""


def refuse_while_runs(action: str) -> None:
    """Raise RunInProgress when the instance at $DAGSTER_HOME has a run queued, starting or
    started. Without DAGSTER_HOME there is no instance to ask (nothing runs)."""
    if not os.environ.get("DAGSTER_HOME"):
        return
    import dagster as dg
    from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES

    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(
            filters=dg.RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)), limit=5
        )
    if records:
        names = ", ".join(
            f"{r.dagster_run.run_id[:8]} ({r.dagster_run.status.value})" for r in records
        )
        raise RunInProgress(
            f"{action} refused: {len(records)} run(s) in progress ({names}) would read or write "
            "the data it changes. Fix: wait until they end (the UI's Runs page), or stop the "
            "daemon (`make dev`'s Ctrl-C) so no new run starts, then run the command again"
        )
