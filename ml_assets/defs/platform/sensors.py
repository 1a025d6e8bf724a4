"""The platform looks after itself: a run whose process is gone is failed, so nothing waits on it.

A run started outside the queue (`dagster asset materialize`, the demo, a test) and killed with
SIGKILL stays STARTED for ever: no code server watches its process. It then counts as in
progress in the `warehouse` pool and holds every queued run back. This sensor fails such runs
(their retry, when one applies, follows); a run launched by the daemon is watched by its code
server already, and this sensor changes nothing for it.
"""

import os
import time

import dagster as dg

from ml_assets.settings import Settings

# a run's newest event must be at least this old before its process is looked for
GRACE_SECONDS = 60


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int | None, float | None]:
    """(pid, time) of the newest event of a run that names its process."""
    records = instance.get_records_for_run(run_id, limit=50, ascending=False).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.pid is not None:
            return event.pid, record.event_log_entry.timestamp
    return None, None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sees_run_processes(settings: Settings) -> bool:
    """Whether this host runs the runs' processes, so a PID it cannot find is a dead run: the
    embedded profile with steps in the run's own process. In the cluster profile runs and
    steps live on other hosts (Celery workers, Kubernetes pods), where `os.kill` on this host
    would call a working step dead; Dagster's run monitoring (deploy/cluster/dagster.yaml)
    looks after those runs instead."""
    return settings.profile == "embedded" and settings.executor in ("in_process", "multiprocess")


def build(settings: Settings) -> dg.Definitions:
    if not sees_run_processes(settings):
        return dg.Definitions()
    return dg.Definitions(sensors=[dead_runs_sensor(settings)])


def dead_runs_sensor(settings: Settings) -> dg.SensorDefinition:
    return dg.SensorDefinition(
        name="dead_runs",
        evaluation_fn=dead_runs,
        description=DEAD_RUNS_DESCRIPTION,
        minimum_interval_seconds=max(30, settings.sensor_interval_seconds),
        default_status=dg.DefaultSensorStatus.RUNNING,
    )


DEAD_RUNS_DESCRIPTION = (
    "Fails a run left STARTED by a process that no longer exists (a `dagster asset materialize` "
    "killed with SIGKILL): it would count as in progress for ever and hold the warehouse queue."
)


def dead_runs(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    failed = []
    now = time.time()
    for record in context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    ):
        run = record.dagster_run
        pid, at = worker_pid(context.instance, run.run_id)
        if pid is None or now - at < GRACE_SECONDS or alive(pid):
            continue
        context.instance.report_run_failed(
            run,
            f"the run's process (pid {pid}) is gone without ending the run (killed?): failed by "
            "the dead_runs sensor so that queued runs go on",
        )
        failed.append(run.run_id)
    return dg.SkipReason(
        f"failed {len(failed)} run(s) whose process was gone: {', '.join(failed)}"
        if failed
        else "every started run has a live process"
    )
