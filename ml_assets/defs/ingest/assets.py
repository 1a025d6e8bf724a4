"""Ingest: the landing files of a day, read as they are, typed, with their provenance."""

from collections.abc import Callable
from datetime import datetime, timedelta

import dagster as dg
import polars as pl
from dagster._core.errors import DagsterInvalidPropertyError

from ml_assets.governance.keys import KEY_ROTATION_TAG
from ml_assets.metadata import (
    DAYS_IN_METADATA,
    check_results,
    check_specs,
    checked_write,
    newest_days_markdown,
    table_metadata,
)
from ml_assets.names import (
    DAYS_MAY_BE_MISSING_TAG,
    SOURCE_FILES_METADATA,
    LandingArea,
    asset_key,
    instigator,
    key_prefix,
    landing_areas,
    raw_schema,
)
from ml_assets.partitions import day_start, days_in, time_window
from ml_assets.policies import daily_asset_args
from ml_assets.resources import Pseudonymizer
from ml_assets.settings import Settings
from ml_assets.spec import Column, DatasetSpec, LandingFiles
from ml_assets.storage.base import not_a_regular_file
from ml_assets.storage.interfaces import FileStore, Warehouse
from ml_assets.transforms.ingest import (
    REJECT_SCHEMA,
    LandingFileError,
    LandingFileRead,
    LandingFileTooBig,
    checked_rows,
    days_in_file,
    duplicate_files,
    files_sharing_ids,
    irregular_entry_error,
    read_landing_file,
)
from ml_assets.transforms.privacy import Pseudonymize
from ml_assets.transforms.quality import CheckOutcome, table_checks

FILES_SCHEMA = {
    "day": pl.Datetime("us"),
    "file": pl.String,
    "sha256": pl.String,
    "size_bytes": pl.Int64,
    "rows": pl.Int64,
    "rejected_rows": pl.Int64,
    "archived_as": pl.String,
    # a file whose rows all repeat another file of the day: not stored again (a desktop copy)
    "duplicate_of": pl.String,
}


# raw is stored as it came: only a wrong schema stops it; dirt is cleaning's job
RAW_BLOCKING = {"schema"}


def raw_null_limits(columns: list[Column], mostly_empty: tuple[str, ...] = ()) -> dict[str, float]:
    return {
        c.name: 0.0 if not c.nullable else 1.0 if c.name in mostly_empty else 0.2 for c in columns
    }


def read_and_archive(
    files: FileStore,
    dataset: str,
    landing: LandingFiles,
    columns: list[Column],
    path,
    day,
    rules: Callable[[LandingFileRead], tuple[pl.DataFrame, pl.DataFrame]],
    pseudonymize: Pseudonymize | None = None,
    timezone: str = "UTC",
) -> tuple[LandingFileRead, pl.DataFrame, pl.DataFrame, object]:
    """Read one landing file and apply the row rules, keep a copy of the version read; quarantine
    it and fail if it is unreadable or has too many bad rows. Returns (read, rows, rule rejects,
    archived copy). The file store's staged copy goes at the end (object storage: the local copy
    a landing object was read from holds clear values)."""
    try:
        return _read_and_archive(
            files, dataset, landing, columns, path, day, rules, pseudonymize, timezone
        )
    finally:
        files.release(path)


def _read_and_archive(files, dataset, landing, columns, path, day, rules, pseudonymize, timezone):
    try:
        read = read_landing_file(
            path,
            columns,
            landing.delimiter,
            landing.max_rejected_fraction,
            allow_extra_columns=landing.ignore_extra_columns,
            pseudonymize=pseudonymize,
            timezone=timezone,
            limits=landing.limits,
        )
        rows, rule_rejects = rules(read)
    except LandingFileTooBig as err:  # maybe valid: left in landing, not quarantined
        raise dg.Failure(description=str(err), metadata={"file": files.origin(path)}) from None
    except LandingFileError as err:
        quarantined = files.quarantine_file(path, str(err), dataset)
        raise dg.Failure(
            description=f"{err} (a copy and the reason are in {quarantined.parent})",
            metadata={"file": files.origin(path), "quarantined_copy": str(quarantined)},
        ) from None
    archived, archived_sha = files.archive_file(path, dataset, day)
    if archived_sha != read.sha256:
        raise dg.Failure(
            description=(
                f"{files.origin(path)} changed while it was being ingested (SHA-256 {read.sha256[:16]} when read, "
                f"{archived_sha[:16]} when archived). Fix: write landing files elsewhere and rename "
                "them into the folder when complete; the file sensor takes the new version on its next tick"
            ),
            metadata={"file": files.origin(path)},
        )
    return read, rows, rule_rejects, archived


def _log_row(day, path, read: LandingFileRead, rows: int, rejected: int, archived) -> dict:
    return {
        "day": day_start(day),
        "file": str(path),
        "sha256": read.sha256,
        "size_bytes": read.size_bytes,
        "rows": rows,
        "rejected_rows": rejected,
        "archived_as": str(archived),
        "duplicate_of": None,
    }


def _no_rows_for(day, landing: LandingFiles, where: str) -> dg.Failure:
    return dg.Failure(
        description=(
            f"no landing file for {day}: {where}. Fix: drop the day's file there, or check "
            "`landing.pattern` in the spec (set `landing.required: false` if days without data are normal)"
        ),
        metadata={"landing_folder": landing.path, "pattern": landing.pattern},
    )


def ingest_days(
    files: FileStore,
    dataset: str,
    landing: LandingFiles,
    columns: list[Column],
    time_column: str,
    start: datetime,
    end: datetime,
    file_days: dict[str, list] | None = None,
    pseudonymize: Pseudonymize | None = None,
    id_column: str | None = None,
    timezone: str = "UTC",
    required_until: datetime | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Read every landing file of [start, end): (typed rows, rejected rows, file log).

    With `partition_by: file_name` a day's files are those with the day in their name; with
    `event_time`, `file_days` (file name -> the days it has rows for) says which files to read, and
    only their rows inside [start, end) are kept (the others belong to other days' partitions).
    Nothing is written here: the asset writes once every file of the range was readable and
    the blocking checks passed, so a failed run leaves the rows stored earlier as they were.
    Days from `required_until` on may have no file even when the landing requires one (the
    trailing days after the last partition).
    """
    frames: list[pl.DataFrame] = []
    rejects: list[pl.DataFrame] = []
    logged: list[dict] = []
    window_days = days_in(start, end)
    if landing.partition_by == "event_time":
        file_days = file_days or {}
        covered = set()
        for name in sorted(file_days):
            in_window = [d for d in file_days[name] if d in window_days]
            if not in_window:
                continue
            path = files.landing_path(landing, name)
            read, rows, rule_rejects, archived = read_and_archive(
                files,
                dataset,
                landing,
                columns,
                path,
                min(file_days[name]),
                lambda read: checked_rows(
                    read,
                    columns,
                    time_column,
                    start,
                    end,
                    landing.max_rejected_fraction,
                    keep_window_only=True,
                    delimiter=landing.delimiter,
                ),
                pseudonymize,
                timezone,
            )
            when = pl.col(time_column).cast(pl.Datetime("us"))
            # lines that did not parse belong to no day: they are recorded with the file's first day
            parse_rejects = (
                read.rejects if min(file_days[name]) in window_days else read.rejects.head(0)
            )
            file_rejects = pl.concat([parse_rejects, rule_rejects]).with_columns(
                day=pl.lit(day_start(min(in_window)))
            )
            frames.append(rows)
            rejects.append(file_rejects)
            per_day = rows.group_by(when.dt.date().alias("d")).len()
            counts = dict(zip(per_day["d"].to_list(), per_day["len"].to_list(), strict=True))
            for day in in_window:
                logged.append(
                    _log_row(
                        day,
                        files.origin(path),
                        read,
                        counts.get(day, 0),
                        len(file_rejects) if day == min(in_window) else 0,
                        archived,
                    )
                )
                covered.add(day)
        missing = [
            d
            for d in window_days
            if d not in covered and (required_until is None or day_start(d) < required_until)
        ]
        if missing and landing.required:
            raise _no_rows_for(
                missing[0], landing, f"no file matching {landing.pattern} has rows of that day"
            )
    else:
        for day in window_days:
            paths = files.landing_files(landing, day)
            required = required_until is None or day_start(day) < required_until
            if not paths and landing.required and required:
                raise _no_rows_for(
                    day, landing, f"nothing matches {files.landing_glob(landing, day)}"
                )
            day_files = []
            for path in paths:
                if kind := not_a_regular_file(path):
                    reason = irregular_entry_error(path, kind)
                    moved_to = files.quarantine_file(path, reason, dataset)
                    raise dg.Failure(
                        description=f"{reason} (moved to {moved_to})",
                        metadata={"file": str(path), "quarantined_as": str(moved_to)},
                    )
                read, rows, rule_rejects, archived = read_and_archive(
                    files,
                    dataset,
                    landing,
                    columns,
                    path,
                    day,
                    lambda read, day=day: checked_rows(
                        read,
                        columns,
                        time_column,
                        day_start(day),
                        day_start(day) + timedelta(days=1),
                        landing.max_rejected_fraction,
                        delimiter=landing.delimiter,
                    ),
                    pseudonymize,
                    timezone,
                )
                file_rejects = pl.concat([read.rejects, rule_rejects]).with_columns(
                    day=pl.lit(day_start(day))
                )
                day_files.append((path, read, rows, file_rejects, archived))
            repeats = duplicate_files([(p.name, rows) for p, _, rows, _, _ in day_files], id_column)
            for path, read, rows, file_rejects, archived in day_files:
                if path.name in repeats:
                    # a copy of a file already read adds only duplicates: kept in the archive,
                    # logged, named by the unique_id check; its rows are not stored again
                    logged.append(
                        _log_row(day, files.origin(path), read, 0, 0, archived)
                        | {"duplicate_of": repeats[path.name]}
                    )
                    continue
                frames.append(rows)
                rejects.append(file_rejects)
                logged.append(
                    _log_row(day, files.origin(path), read, len(rows), len(file_rejects), archived)
                )
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=raw_schema(columns))
    rejected = (
        pl.concat(rejects)
        if rejects
        else pl.DataFrame(schema={**REJECT_SCHEMA, "day": pl.Datetime("us")})
    ).select("day", *REJECT_SCHEMA)
    log = pl.DataFrame(logged, schema=FILES_SCHEMA)

    return frame, rejected, log


FILE_DAYS_SCHEMA = {
    "file": pl.String,
    "size_bytes": pl.Int64,
    "changed_ns": pl.Int64,
    "day": pl.Date,
    # an object store's content tag (S3 ETag): a rewrite in the same second at the same size
    "tag": pl.String,
}


def file_days_index(
    files: FileStore,
    warehouse: Warehouse,
    landing: LandingFiles,
    time_column: Column,
    table: str,
    timezone: str = "UTC",
) -> dict[str, list]:
    """Which days each landing file has rows for (partition_by: event_time).

    Kept in `table` keyed by the file's size and change time, so a file is scanned once, and
    again only when it changes.
    """
    listing = files.landing_listing(landing)
    known = warehouse.read_if_exists(table, f"SELECT * FROM {table}")
    cached: dict[tuple, list] = {}
    if known is not None:
        if "tag" not in known.columns:  # written before the tag was kept
            known = known.with_columns(tag=pl.lit("", pl.String))
        keys = ["file", "size_bytes", "changed_ns", "tag"]
        for (name, size, changed, tag), group in known.group_by(keys):
            cached[(name, size, changed, tag)] = sorted(group["day"].to_list())
    out, rows = {}, []
    # how the times are read is part of the key: another timezone or format, other days
    reading = f"|{timezone}|{time_column.format or ''}"
    for name, stat in sorted(listing.items()):
        key = (name, stat.size, stat.changed_ns, stat.tag + reading)
        days = cached.get(key)
        if days is None:
            staged = files.landing_path(landing, name)
            try:
                days = days_in_file(
                    staged, time_column, landing.delimiter, timezone, landing.limits
                )
            finally:
                files.release(staged)
        out[name] = days
        rows += [
            {
                "file": name,
                "size_bytes": stat.size,
                "changed_ns": stat.changed_ns,
                "day": d,
                "tag": stat.tag + reading,
            }
            for d in days
        ]
    if rows != (known.sort(["file", "day"]).to_dicts() if known is not None else None):
        warehouse.replace_table(table, pl.DataFrame(rows, schema=FILE_DAYS_SCHEMA))
    return out


def source_files_by_day(log: pl.DataFrame) -> dict[str, dict[str, str]]:
    """{day: {file name: sha256}}: what each day was built from (the file sensor reads it back)."""
    out: dict[str, dict[str, str]] = {}
    for r in log.iter_rows(named=True):
        out.setdefault(f"{r['day']:%Y-%m-%d}", {})[r["file"].rsplit("/", 1)[-1]] = r["sha256"]
    return out


def files_metadata(log: pl.DataFrame, table: str, days: int) -> dict:
    """The files a run read: the newest days' as a table, their count, and for the file
    sensor each day's {file: sha256}, unless the run is longer than DAYS_IN_METADATA days (its
    copy on each of its days would grow the event log with the square of its length; the sensor
    then reads `table`)."""
    metadata = {
        "source_files": dg.MetadataValue.md(files_markdown(log, table)),
        "files": dg.MetadataValue.int(len(log)),
    }
    if days <= DAYS_IN_METADATA:
        metadata[SOURCE_FILES_METADATA] = dg.MetadataValue.json(source_files_by_day(log))
    return metadata


def files_markdown(log: pl.DataFrame, table: str) -> str:
    """The files of the run's newest days: day, name, checksum prefix, rows, rejected rows."""
    if log.is_empty():
        return "(no file)"
    shown = log.select(
        pl.col("day").dt.date(),
        pl.col("file").str.split("/").list.last(),
        pl.format("`{}`", pl.col("sha256").str.slice(0, 16)).alias("sha256"),
        "rows",
        pl.col("rejected_rows").alias("rejected"),
    )
    return newest_days_markdown(shown, table)


def with_colliding_files(
    outcome: CheckOutcome, frame: pl.DataFrame, id_column: str | None, log: pl.DataFrame
) -> CheckOutcome:
    """The unique_id outcome naming the files whose ids collide, and the copies not stored."""
    shared = files_sharing_ids(frame, id_column)
    skipped = [
        f"{r['file'].rsplit('/', 1)[-1]} repeats {r['duplicate_of']} (its rows were not stored again)"
        for r in log.filter(pl.col("duplicate_of").is_not_null()).to_dicts()
    ]
    if not shared and not skipped:
        return outcome
    return CheckOutcome(
        outcome.name,
        False,
        "; ".join([outcome.description, *shared, *skipped]),
        {**outcome.metadata, "colliding_files": str(shared), "skipped_copies": str(skipped)},
    )


KEY_SCHEMA = {"fingerprint": pl.String, "since": pl.Datetime("us")}


def run_tag(context: dg.AssetExecutionContext, key: str) -> str | None:
    """A tag of the run, or None when the asset is invoked directly (benchmarks, tests)."""
    try:
        return context.run.tags.get(key)
    except DagsterInvalidPropertyError:
        return None


def record_key(warehouse: Warehouse, key_table: str, fingerprint: str) -> None:
    warehouse.replace_table(
        key_table,
        pl.DataFrame({"fingerprint": [fingerprint], "since": [datetime.now()]}, schema=KEY_SCHEMA),
    )


def key_unchanged(
    warehouse: Warehouse,
    key_table: str,
    pseudonymizer: Pseudonymizer,
    rotating_from: str | None = None,
) -> tuple[str, bool]:
    """(the key's fingerprint, whether this run rotates to it). The fingerprint is recorded on
    first use; a different key than the stored days were pseudonymized with is refused (one
    person would get two pseudonyms), except in the rotation run that names the stored one."""
    try:
        fingerprint = pseudonymizer.fingerprint()
    except ValueError as err:
        raise dg.Failure(description=str(err)) from None
    known = warehouse.read_if_exists(key_table, f"SELECT fingerprint FROM {key_table}")
    if known is None or known.is_empty():
        record_key(warehouse, key_table, fingerprint)
    elif known["fingerprint"][0] != fingerprint and rotating_from == known["fingerprint"][0]:
        return fingerprint, True
    elif known["fingerprint"][0] != fingerprint:
        raise dg.Failure(
            description=(
                f"the pseudonym key is not the one the stored days were pseudonymized with (key "
                f"fingerprint {fingerprint}, stored days {known['fingerprint'][0]}): with it the same "
                "person would get a second pseudonym. Fix: set ML_ASSETS_PSEUDONYM_KEY back to the key "
                "in use, or change keys for every stored day at once with "
                "`python -m ml_assets.governance rotate-key` (see README, Personal data and governance)"
            ),
            metadata={
                "key_fingerprint": fingerprint,
                "stored_fingerprint": known["fingerprint"][0],
            },
        )
    return fingerprint, False


def raw_outcomes(frame: pl.DataFrame, area: LandingArea, log: pl.DataFrame) -> list[CheckOutcome]:
    """A raw table's checks; a repeated id names the files that share it."""
    outcomes = table_checks(
        frame,
        raw_schema(area.columns),
        raw_null_limits(area.columns, area.mostly_empty),
        area.id_column,
        {c.name: (c.range.min, c.range.max) for c in area.columns if c.range},
        day_column=area.time_column,
    )
    return [
        with_colliding_files(o, frame, area.id_column, log) if o.name == "unique_id" else o
        for o in outcomes
    ]


def reading_end(area: LandingArea, end: datetime) -> datetime:
    """Where a run's reading of landing files stops: its window's end, or, for the last
    partition, the end of the trailing days after it (late label files it takes in)."""
    if area.trailing_days and area.partitions_end and end >= day_start(area.partitions_end):
        return end + timedelta(days=area.trailing_days)
    return end


def raw_writes(area: LandingArea, frame, rejected, log, start, end) -> list[tuple]:
    """The rows, the rows set aside and the files read: one transaction, all or nothing."""
    return [
        (area.table, frame, area.time_column, start, end),
        (area.rejected_table, rejected, "day", start, end),
        (area.files_table, log, "day", start, end),
    ]


def rejected_warning(rejected: pl.DataFrame, table: str) -> str:
    first = rejected.row(0, named=True)
    return (
        f"{len(rejected)} bad rows set aside in {table} (first: line {first['line']} of "
        f"{first['source_file']}: {first['reason']})"
    )


def raw_asset(
    spec: DatasetSpec, settings, area: LandingArea, description: str
) -> dg.AssetsDefinition:
    asset_name, dataset, landing, columns = (
        area.asset_name,
        area.dataset,
        area.landing,
        area.columns,
    )
    time_column, id_column = area.time_column, area.id_column
    table, files_table, rejected_table = area.table, area.files_table, area.rejected_table
    personal = [c.name for c in columns if c.role == "personal"]
    key_table = f"governance.{dataset}_pseudonym_key"

    @dg.asset(
        name=asset_name,
        key_prefix=key_prefix(spec),
        description=description,
        group_name="ingest",
        kinds={"duckdb", "polars", "csv"},
        **daily_asset_args(spec, settings),
        check_specs=check_specs(asset_key(spec, asset_name), blocking=RAW_BLOCKING),
        tags={DAYS_MAY_BE_MISSING_TAG: "true"} if area.days_may_be_missing else None,
        metadata={
            "table": table,
            "landing_folder": landing.path,
            "landing_pattern": landing.pattern,
        },
    )
    def _raw(
        context: dg.AssetExecutionContext,
        files: dg.ResourceParam[FileStore],
        warehouse: dg.ResourceParam[Warehouse],
        pseudonymizer: Pseudonymizer,
    ) -> dg.MaterializeResult:
        start, end = time_window(context)
        read_end = reading_end(area, end)
        key_metadata, pseudonymize, rotating = {}, None, False
        if personal:  # the key is checked against the one the stored days were written with
            fingerprint, rotating = key_unchanged(
                warehouse, key_table, pseudonymizer, run_tag(context, KEY_ROTATION_TAG)
            )
            key_metadata = {"pseudonym_key_fingerprint": fingerprint}
            pseudonymize = pseudonymizer.function()
        file_days = None  # which days each file holds, when files are not one day each
        if landing.partition_by == "event_time":
            days_table = f"{files_table}_days"
            file_days = file_days_index(
                files, warehouse, landing, area.time, days_table, area.timezone
            )
        frame, rejected, log = ingest_days(
            files,
            dataset,
            landing,
            columns,
            time_column,
            start,
            read_end,
            file_days,
            pseudonymize,
            id_column,
            area.timezone,
            required_until=end,
        )
        outcomes = raw_outcomes(frame, area, log)
        writes = raw_writes(area, frame, rejected, log, start, read_end)
        checked_write(warehouse, asset_name, outcomes, writes, RAW_BLOCKING)
        if rotating:  # every stored day is written with the new key: it is the key from now on
            record_key(warehouse, key_table, fingerprint)
        if len(rejected):
            context.log.warning(rejected_warning(rejected, rejected_table))
        return dg.MaterializeResult(
            metadata=table_metadata(
                frame,
                hide=spec.identifying_columns,
                **files_metadata(log, area.files_table, len(days_in(start, end))),
                rejected_rows=dg.MetadataValue.int(len(rejected)),
                rejected_rows_table=rejected_table,
                **key_metadata,
            ),
            # warnings only, see RAW_BLOCKING
            check_results=check_results(
                outcomes, warn_only={"null_rates", "unique_id", "value_ranges"}
            ),
        )

    return _raw


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    areas = landing_areas(spec)
    events, annotations = areas[0], areas[-1]
    labels = next((a for a in areas if a.asset_name == spec.raw_labels_asset), None)
    raw_events = raw_asset(
        spec,
        settings,
        events,
        f"The {spec.name} landing files of each day, stored unchanged but typed, one row per valid line. "
        f"Read from `{spec.landing.path}/{spec.landing.pattern}`; file names and SHA-256 checksums are "
        f"recorded and each version ingested is kept under data/archive, bad rows are set aside with their reason, a "
        f"bad file fails the run and is quarantined. New files are picked up by the `{instigator(spec, spec.raw_asset + '_files')}` sensor.",
    )
    raw_labels = labels and raw_asset(
        spec,
        settings,
        labels,
        f"The {labels.dataset} label files of each day (partitioned by when a label was reported, not by "
        f"the event it refers to), stored unchanged but typed, with file names and checksums. New files are "
        f"picked up by the `{instigator(spec, labels.asset_name + '_files')}` sensor.",
    )
    raw_annotations = raw_asset(
        spec,
        settings,
        annotations,
        f"Completed annotation batches dropped into `{annotations.landing.path}/{annotations.landing.pattern}` "
        f"(the batch files of `annotation_queue` with `label` and `annotator` filled in), one row per line, stored "
        f"unchanged but typed. Partitioned by the day of each annotated event (its `{annotations.time_column}`), so "
        f"an annotation re-opens the day it labels; a day without annotations is empty, not missing. Picked up by "
        f"the `{instigator(spec, annotations.asset_name + '_files')}` sensor; `manual_labels` validates them.",
    )
    return dg.Definitions(assets=[a for a in (raw_events, raw_labels, raw_annotations) if a])
