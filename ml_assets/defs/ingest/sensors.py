"""Ingest: one sensor per landing area requests the days that new or changed files belong to."""

import hashlib
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from ml_assets.defs.ingest.assets import SOURCE_FILES_METADATA
from ml_assets.policies import sensor_interval_seconds
from ml_assets.resources import LocalFiles
from ml_assets.spec import Column, DatasetSpec, LandingFiles, load_spec
from ml_assets.transforms.arrivals import ArrivalCursor, day_of_file, next_tick
from ml_assets.transforms.ingest import LandingFileError, check_file_structure

QUARANTINE_CHECK = "no_quarantined_files"
FILE_TAG = "ml_assets/landing_files"


def ingested_files(instance: dg.DagsterInstance, asset: str, day: str) -> dict[str, str]:
    """{file name: sha256} that the newest materialization of the day was built from."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1
    ).records
    if not records:
        return {}
    entry = records[0].asset_materialization.metadata.get(SOURCE_FILES_METADATA)
    return dict((entry.data or {}).get(day, {})) if entry is not None else {}


def day_has_ended(day: date, timezone: str, now: datetime) -> bool:
    """A daily partition exists once its day is over, in the partitions' time zone."""
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(timezone))
    return now >= end


def outside_partitions(spec: DatasetSpec, path, day: date) -> LandingFileError | None:
    p = spec.partitions
    if day < p.start or (p.end is not None and day >= p.end):
        last = f"{p.end - timedelta(days=1)}" if p.end else "open-ended"
        return LandingFileError(
            path,
            f"its day {day} is outside the spec's partitions ({p.start} .. {last})",
            "rename the file with the right day, or widen `partitions` in the spec",
        )
    return None


def landing_sensor(
    spec: DatasetSpec,
    *,
    asset_name: str,
    dataset: str,
    landing: LandingFiles,
    columns: list[Column],
) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{asset_name}_files",
        description=(
            f"Watches `{landing.path}/{landing.pattern}` and requests `{asset_name}` for the day in each new or "
            f"changed file's name. A file is taken once its size and change time held still for "
            f"{landing.settle_seconds:g} s and its day has ended; each file version (name + SHA-256) is ingested "
            "once, also across daemon restarts. A file that cannot be read (empty, not UTF-8, wrong header, a day "
            "outside the partitions) is moved to data/quarantine with a .reason.json and the others go on. "
            "Downstream assets follow by their automation conditions."
        ),
        target=[asset_name],
        minimum_interval_seconds=sensor_interval_seconds(),
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _sensor(context: dg.SensorEvaluationContext, files: LocalFiles) -> dg.SensorResult:
        now = datetime.now(ZoneInfo(spec.partitions.timezone))

        def is_due(name: str) -> bool:
            try:
                day = day_of_file(name, landing.pattern)
            except ValueError:
                return True  # a bad name is quarantined below
            outside = outside_partitions(spec, name, day) is not None  # quarantined below
            return outside or day_has_ended(day, spec.partitions.timezone, now)

        tick = next_tick(
            ArrivalCursor.from_json(context.cursor),
            files.landing_listing(landing),
            time.time_ns(),
            landing.settle_seconds,
            is_due=is_due,
        )
        new_by_day: dict[str, dict[str, str]] = {}
        quarantined: list[dg.AssetCheckEvaluation] = []
        for name in tick.ready:
            path = files.landing_path(landing, name)
            try:
                day = day_of_file(name, landing.pattern)
                if problem := outside_partitions(spec, path, day):
                    raise problem
                scan, _ = check_file_structure(path, columns, landing.delimiter)
            except FileNotFoundError:
                context.log.info(f"{name} disappeared before it could be read; nothing to do")
                continue
            except (LandingFileError, ValueError) as err:
                moved_to = files.quarantine_file(path, str(err), dataset, move=True)
                context.log.warning(f"quarantined {name}: {err} (moved to {moved_to})")
                quarantined.append(
                    dg.AssetCheckEvaluation(
                        asset_key=dg.AssetKey(asset_name),
                        check_name=QUARANTINE_CHECK,
                        passed=False,
                        severity=dg.AssetCheckSeverity.WARN,
                        description=f"{name} was quarantined by the file sensor: {err}",
                        metadata={"file": name, "reason": str(err), "moved_to": str(moved_to)},
                    )
                )
                continue
            new_by_day.setdefault(day.isoformat(), {})[name] = scan.sha256

        run_requests = []
        for day, new in sorted(new_by_day.items()):
            done = ingested_files(context.instance, asset_name, day)
            todo = {n: h for n, h in new.items() if done.get(n) != h}
            if not todo:
                context.log.info(f"{day}: {sorted(new)} already ingested with the same checksum")
                continue
            identity = "|".join(f"{n}:{h}" for n, h in sorted(todo.items()))
            run_requests.append(
                dg.RunRequest(
                    run_key=f"{asset_name}:{day}:{hashlib.sha256(identity.encode()).hexdigest()[:20]}",
                    partition_key=day,
                    asset_selection=[dg.AssetKey(asset_name)],
                    tags={FILE_TAG: ",".join(sorted(todo))[:4000]},
                )
            )
        if tick.waiting or tick.deferred:
            context.log.info(
                f"waiting for {len(tick.waiting)} file(s) to settle or their day to end"
                + (f", {len(tick.deferred)} deferred to the next tick" if tick.deferred else "")
            )
        skip = None
        if not run_requests:
            skip = (
                f"no new files to ingest ({len(tick.waiting)} settling, {len(tick.deferred)} deferred, "
                f"{len(quarantined)} quarantined)"
            )
        return dg.SensorResult(
            run_requests=run_requests,
            skip_reason=skip,
            cursor=tick.cursor.to_json(),
            asset_events=quarantined,
        )

    return _sensor


def build(spec: DatasetSpec) -> dg.Definitions:
    lab = spec.labels
    return dg.Definitions(
        sensors=[
            landing_sensor(
                spec,
                asset_name=spec.raw_asset,
                dataset=spec.name,
                landing=spec.landing,
                columns=spec.columns,
            ),
            landing_sensor(
                spec,
                asset_name=spec.raw_labels_asset,
                dataset=lab.name,
                landing=lab.landing,
                columns=lab.columns,
            ),
        ]
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build(load_spec())
