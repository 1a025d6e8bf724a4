"""Ingest: one sensor per landing area requests the days that new or changed files belong to."""

import hashlib
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ml_assets.names import (
    QUARANTINE_CHECK,
    SOURCE_FILES_METADATA,
    LandingArea,
    asset_key,
    instigator,
    landing_areas,
)
from ml_assets.partitions import day_start, latest_materialization
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.storage.base import WarehouseBusy
from ml_assets.storage.interfaces import FileStore, Warehouse
from ml_assets.transforms.arrivals import ArrivalCursor, day_of_file, next_tick
from ml_assets.transforms.ingest import (
    TIMESTAMP_HINT,
    LandingFileError,
    LandingFileTooBig,
    checked_rows,
    crashed_check,
    days_in_file,
    irregular_entry_error,
    read_landing_file,
)

FILE_TAG = "ml_assets/landing_files"
# about 2-3 s of parsing per 150 MB on 2 cores; a tick takes at least one file whatever its size
TICK_BYTES = 512 << 20


def now_ns() -> int:
    """The sensor's clock for file ages (tests move it)."""
    return time.time_ns()


def ingested_files(
    instance: dg.DagsterInstance, asset: dg.AssetKey, day: str, partition: str | None = None
) -> dict[str, str] | None:
    """{file name: sha256} that the newest materialization of the day's partition (`partition`,
    when the day is a trailing one taken in by the last partition) was built from; None when
    it was a long range run, whose metadata leaves the files out (see `files_in_table`)."""
    record = latest_materialization(instance, asset, partition or day)
    if record is None:
        return {}
    entry = record.asset_materialization.metadata.get(SOURCE_FILES_METADATA)
    return dict((entry.data or {}).get(day, {})) if entry is not None else None


def files_in_table(warehouse, table: str, days: list[str]) -> dict[str, dict[str, str]]:
    """{day: {file name: sha256}} of `days` from the raw asset's files table, read only if the
    warehouse is free this instant; {} otherwise (the files are then ingested again, which
    replaces the same rows)."""
    if not days:
        return {}
    try:
        with warehouse.read_only_now() as tables:
            log = tables.read_if_exists(
                table,
                f"SELECT CAST(day AS DATE) AS day, file, sha256 FROM {table} "
                "WHERE day >= $first AND day < $last + INTERVAL 1 DAY",
                {"first": date.fromisoformat(min(days)), "last": date.fromisoformat(max(days))},
            )
    except WarehouseBusy:
        return {}
    out: dict[str, dict[str, str]] = {}
    for day, file, sha in log.iter_rows() if log is not None else []:
        out.setdefault(day.isoformat(), {})[file.rsplit("/", 1)[-1]] = sha
    return out


def past_raw_retention(day: date, today: date, raw_days: int | None) -> bool:
    """A day raw retention removes (or has removed): the file sensor never asks for it."""
    return raw_days is not None and day < today - timedelta(days=raw_days)


def day_has_ended(day: date, timezone: str, now: datetime) -> bool:
    """A daily partition exists once its day is over, in the partitions' time zone."""
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(timezone))
    return now >= end


def outside_partitions(
    spec: DatasetSpec, path, day: date, trailing_days: int = 0
) -> LandingFileError | None:
    """Why a file of `day` has no partition, or None; `trailing_days` after the last partition
    are taken in by it (label files reporting on the last days' events)."""
    p = spec.partitions
    if day < p.start or (p.end is not None and day >= p.end + timedelta(days=trailing_days)):
        last = f"{p.end - timedelta(days=1)}" if p.end else "open-ended"
        after = (
            f", or the {trailing_days} days after it that labels may still report on"
            if trailing_days
            else ""
        )
        return LandingFileError(
            path,
            f"its day {day} is outside the spec's partitions ({p.start} .. {last}{after})",
            "rename the file with the right day, or widen `partitions` in the spec",
        )
    return None


def consecutive(days: list[date]) -> list[list[date]]:
    """Split sorted days into runs of consecutive days."""
    groups: list[list[date]] = []
    for day in days:
        if groups and day == groups[-1][-1] + timedelta(days=1):
            groups[-1].append(day)
        else:
            groups.append([day])
    return groups


def range_request(asset: dg.AssetKey, files_by_day: dict[date, dict[str, str]]) -> dg.RunRequest:
    """One run for consecutive days; its key names every file version, so a repeat is skipped."""
    first, last = min(files_by_day).isoformat(), max(files_by_day).isoformat()
    identity = "|".join(
        f"{d}/{n}:{h}"
        for d, files in sorted(files_by_day.items())
        for n, h in sorted(files.items())
    )
    names = sorted(n for files in files_by_day.values() for n in files)
    tags = {FILE_TAG: ",".join(names)[:4000]}
    digest = hashlib.sha256(identity.encode()).hexdigest()[:20]
    run_key = f"{asset.to_user_string()}:{first}..{last}:{digest}"
    if first == last:
        return dg.RunRequest(
            run_key=run_key,
            partition_key=first,
            asset_selection=[asset],
            tags=tags,
        )
    return dg.RunRequest(
        run_key=run_key,
        asset_selection=[asset],
        tags={**tags, ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
    )


def landing_sensor(spec: DatasetSpec, area: LandingArea, settings: Settings) -> dg.SensorDefinition:
    asset_name, dataset, landing = area.asset_name, area.dataset, area.landing
    key = asset_key(spec, asset_name)
    columns, time_column = area.columns, area.time_column
    where_days = (
        "the day in each new or changed file's name"
        if landing.partition_by == "file_name"
        else f"every day each new or changed file has rows for (by its `{time_column}`)"
    )

    @dg.sensor(
        name=instigator(spec, f"{asset_name}_files"),
        description=(
            f"Watches `{landing.path}/{landing.pattern}` and requests `{asset_name}` for {where_days}. "
            f"A file is taken once its size and change time held still for "
            f"{landing.settle_seconds:g} s and its days have ended; each file version (name + SHA-256) is ingested "
            "once, also across daemon restarts. A file that cannot be read (empty, not UTF-8, wrong header, too "
            "many bad rows, a day outside the partitions) is moved to data/quarantine with a .reason.json and the others go on. "
            "Downstream assets follow by their automation conditions."
        ),
        target=[key],
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        files: dg.ResourceParam[FileStore],
        warehouse: dg.ResourceParam[Warehouse],
    ) -> dg.SensorResult:
        now = datetime.now(ZoneInfo(spec.partitions.timezone))

        known_days: dict[str, list[date]] = {}

        def file_days(name: str) -> list[date]:
            """The days of a file: from its name, or from its rows (read once per tick)."""
            if name not in known_days:
                if landing.partition_by == "file_name":
                    known_days[name] = [day_of_file(name, landing.pattern)]
                else:
                    path = files.landing_path(landing, name)
                    try:
                        known_days[name] = days_in_file(
                            path, area.time, landing.delimiter, area.timezone, landing.limits
                        )
                    finally:
                        files.release(path)
            return known_days[name]

        def is_due(name: str) -> bool:
            try:
                days = file_days(name)
            except Exception:  # noqa: BLE001 - any file that cannot be read is set aside below
                return True
            if not days or any(outside_partitions(spec, name, d, area.trailing_days) for d in days):
                return True  # quarantined below
            return all(day_has_ended(d, spec.partitions.timezone, now) for d in days)

        quarantined: list[dg.AssetCheckEvaluation] = []

        def quarantine(name: str, path, reason: str) -> None:
            moved_to = files.quarantine_file(path, reason, dataset, move=True)
            context.log.warning(f"quarantined {name}: {reason} (moved to {moved_to})")
            quarantined.append(
                dg.AssetCheckEvaluation(
                    asset_key=key,
                    check_name=QUARANTINE_CHECK,
                    passed=False,
                    severity=dg.AssetCheckSeverity.WARN,
                    description=f"{name} was quarantined by the file sensor: {reason}",
                    metadata={"file": name, "reason": reason, "moved_to": str(moved_to)},
                )
            )

        for name, kind in files.landing_irregular(landing).items():
            path = files.landing_path(landing, name)
            quarantine(name, path, irregular_entry_error(path, kind))

        tick = next_tick(
            ArrivalCursor.from_json(context.cursor),
            files.landing_listing(landing),
            now_ns(),
            landing.settle_seconds,
            is_due=is_due,
            # each ready file is parsed here; keep a tick well inside the daemon's 60 s limit
            max_bytes=TICK_BYTES,
            clock_margin_ns=int(files.clock_margin_seconds * 1_000_000_000),
        )
        new_by_day: dict[str, dict[str, str]] = {}
        for name in tick.ready:
            path = files.landing_path(landing, name)
            try:
                # the same reading the raw asset does, so a file the sensor passes is one the run can
                # ingest: a bad file stops here instead of failing the run of the good ones with it
                read = read_landing_file(
                    path,
                    columns,
                    landing.delimiter,
                    landing.max_rejected_fraction,
                    allow_extra_columns=landing.ignore_extra_columns,
                    timezone=area.timezone,
                    limits=landing.limits,
                )
                checksum = read.sha256
                days = file_days(name)
                if not days:
                    raise LandingFileError(
                        path,
                        f"no row has a readable {time_column}, so the file belongs to no day",
                        f"export readable times in {time_column}: {TIMESTAMP_HINT}",
                    )
                for day in days:
                    if problem := outside_partitions(spec, path, day, area.trailing_days):
                        raise problem
                if landing.partition_by == "file_name":
                    # rows for another day count as bad rows: a file named for the wrong day
                    checked_rows(
                        read,
                        columns,
                        time_column,
                        day_start(days[0]),
                        day_start(days[0]) + timedelta(days=1),
                        landing.max_rejected_fraction,
                        delimiter=landing.delimiter,
                    )
            except FileNotFoundError:
                context.log.info(f"{name} disappeared before it could be read; nothing to do")
                continue
            except LandingFileTooBig as err:
                # maybe valid, too big to check here: left in landing, not called bad
                context.log.warning(f"{name} deferred: {err}")
                continue
            except (LandingFileError, ValueError) as err:
                quarantine(name, path, str(err))
                continue
            except Exception as err:  # noqa: BLE001 - one file never stops the tick
                quarantine(name, path, crashed_check(path, err))
                continue
            finally:
                files.release(path)
            for day in days:
                new_by_day.setdefault(day.isoformat(), {})[name] = checksum

        todo_by_day: dict[date, dict[str, str]] = {}
        done_by_day = {
            day: ingested_files(
                context.instance, key, day, area.partition_day(date.fromisoformat(day)).isoformat()
            )
            for day in new_by_day
        }
        in_table = files_in_table(
            warehouse, area.files_table, [d for d, done in done_by_day.items() if done is None]
        )
        for day, new in sorted(new_by_day.items()):
            partition = area.partition_day(date.fromisoformat(day))
            # the UTC day, as retention counts its periods
            if past_raw_retention(partition, datetime.now(UTC).date(), spec.retention.raw_days):
                context.log.info(
                    f"{day}: {sorted(new)} not ingested: the day is past `retention.raw_days` "
                    f"({spec.retention.raw_days}), so making it again would bring back the rows "
                    "retention removed (an erasure makes the days it changed itself)"
                )
                continue
            done = done_by_day[day] if done_by_day[day] is not None else in_table.get(day, {})
            todo = {n: h for n, h in new.items() if done.get(n) != h}
            if todo:
                todo_by_day.setdefault(partition, {}).update(todo)
            else:
                context.log.info(f"{day}: {sorted(new)} already ingested with the same checksum")
        # one run per run of consecutive days: the raw asset reads a day range in one pass
        run_requests = [
            range_request(key, {d: todo_by_day[d] for d in days})
            for days in consecutive(sorted(todo_by_day))
        ]
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


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        sensors=[landing_sensor(spec, area, settings) for area in landing_areas(spec)]
    )
