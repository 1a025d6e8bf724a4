"""Metadata and check results every asset attaches: row counts, schema, a preview, checks."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import dagster as dg
import polars as pl
from dagster._core.errors import DagsterInvalidPropertyError

from ml_assets.transforms.quality import CHECK_NAMES, CheckOutcome

# Checks that must stop bad data from flowing on, per stage; the rest warn.
BLOCKING = {"unique_id", "schema"}


def table_schema(frame: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=c, type=str(t)) for c, t in frame.schema.items()]
    )


HIDDEN = "·"


def markdown_table(frame: pl.DataFrame, max_rows: int = 10, hide: Iterable[str] = ()) -> str:
    """The first rows as a Markdown table; values of the `hide` columns shown as a dot."""
    head = frame.head(max_rows)
    masked = [c for c in hide if c in head.columns]
    if masked:
        head = head.with_columns(pl.lit(HIDDEN).alias(c) for c in masked)
    if not head.columns:
        return "(no columns)"

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.iter_rows()]
    return "\n".join(lines)


# Per-day tables in metadata show the newest days only: a range run's metadata is copied onto
# every day's materialization event, so a table of all its days would grow the event log with
# the square of the range. Every day is in the table named under it.
DAYS_IN_METADATA = 7
PREVIEW_ROWS = 5
MAX_ROWS_IN_METADATA = 100


def newest_days_markdown(per_day: pl.DataFrame, table: str, day_column: str = "day") -> str:
    """The newest DAYS_IN_METADATA days of `per_day` (newest first) as Markdown, and where the
    rest are."""
    days = per_day[day_column].unique().sort(descending=True).head(DAYS_IN_METADATA)
    shown = per_day.filter(pl.col(day_column).is_in(days.implode())).sort(
        day_column, descending=True, maintain_order=True
    )
    more = per_day[day_column].n_unique() - len(days)
    note = f"\n\n{more} earlier day(s) of this run: in `{table}`" if more > 0 else ""
    if len(shown) > MAX_ROWS_IN_METADATA:  # hundreds of files a day, say
        note += f"\n\n{len(shown) - MAX_ROWS_IN_METADATA} more row(s) of these days: in `{table}`"
    return markdown_table(shown, max_rows=MAX_ROWS_IN_METADATA) + note


def days_in_this_run() -> int:
    """How many daily partitions the running asset materializes (1 outside a run, e.g. when
    an asset function is called directly)."""
    try:
        context = dg.AssetExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return 1
    try:
        return len(context.partition_keys) if context.has_partition_key_range else 1
    except (dg.DagsterInvariantViolationError, DagsterInvalidPropertyError):
        return 1


# static per asset, or of little use on every day of a range, and kilobytes each (a wide
# table's schema 3-7 KB, the features' lineage 4 KB, a preview of the range's first rows 1 KB)
PER_DAY_COPY_DROPPED = ("dagster/column_schema", "dagster/column_lineage", "preview")


def table_metadata(frame: pl.DataFrame, hide: Iterable[str] = (), **extra) -> dict:
    """Row count, schema and a preview whose identifying columns (`hide`: ids, the entity,
    personal columns) are masked: the event log keeps every materialization's metadata, and an
    erased person must leave no trace there.

    A run over several days leaves the column schema, lineage and preview out: Dagster copies
    a run's metadata onto each of its days' events, and the next one-day run records them again."""
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": table_schema(frame),
        "preview": dg.MetadataValue.md(markdown_table(frame, max_rows=PREVIEW_ROWS, hide=hide)),
        **extra,
    }
    return copied_per_day(metadata)


def copied_per_day(metadata: dict) -> dict:
    """`metadata` without PER_DAY_COPY_DROPPED when the run covers several days."""
    if days_in_this_run() > 1:
        return {k: v for k, v in metadata.items() if k not in PER_DAY_COPY_DROPPED}
    return metadata


def check_specs(asset: str, blocking: Iterable[str] = BLOCKING) -> list[dg.AssetCheckSpec]:
    blocking = set(blocking)
    descriptions = {
        "schema": "Columns and types are those the spec implies.",
        "null_rates": "Null rate of each column is within its limit.",
        "unique_id": "The id column has no duplicates.",
        "value_ranges": "Numeric values within the spec's range; categories within the allowed ones.",
    }
    return [
        dg.AssetCheckSpec(name=n, asset=asset, description=descriptions[n], blocking=n in blocking)
        for n in CHECK_NAMES
    ]


def check_results(
    outcomes: list[CheckOutcome], warn_only: Iterable[str] = ()
) -> list[dg.AssetCheckResult]:
    warn_only = set(warn_only)
    return [
        dg.AssetCheckResult(
            check_name=o.name,
            passed=o.passed,
            severity=dg.AssetCheckSeverity.WARN
            if o.name in warn_only
            else dg.AssetCheckSeverity.ERROR,
            description=o.description,
            metadata={k: v for k, v in o.metadata.items()},
        )
        for o in outcomes
    ]


class BlockingCheckFailed(dg.Failure):
    pass


def checked_write(
    warehouse,
    asset: str,
    outcomes: list[CheckOutcome],
    writes: list[tuple],
    blocking: Iterable[str] = BLOCKING,
) -> None:
    """The one checked write of a daily asset: refuse when a blocking check failed (nothing is
    replaced), else replace every (table, frame, time column, start, end) window in one
    transaction. A second warehouse backend implements `replace_time_ranges`; nothing else."""
    refuse_if_blocking_failed(asset, outcomes, blocking)
    warehouse.replace_time_ranges(writes)


def refuse_if_blocking_failed(
    asset: str, outcomes: list[CheckOutcome], blocking: Iterable[str] = BLOCKING
) -> None:
    """Fail before writing when a blocking check fails.

    A blocking check only stops downstream steps; it does not undo a write that already
    happened. Checking first means bad rows never replace the good rows stored earlier.
    """
    failed = [o for o in outcomes if o.name in set(blocking) and not o.passed]
    if failed:
        raise BlockingCheckFailed(
            description=(
                f"{asset}: blocking check(s) failed, nothing was written and the stored rows are unchanged: "
                + "; ".join(f"{o.name}: {o.description}" for o in failed)
            ),
            metadata={o.name: o.description for o in failed},
        )


WAITING_METADATA = "waiting"


def waiting(context: dg.AssetExecutionContext, reason: str) -> list:
    """What an asset yields in a state it cannot build in yet (no matured labels, no model):
    an observation saying what it waits for and each of its checks passed as "not run", so the
    run succeeds and the assets after it in the run are skipped rather than failed. The asset
    is declared with `output_required=False`; `reason` names what it waits for."""
    context.log.info(f"{context.assets_def.key.to_user_string()} waits: {reason}")
    key = context.assets_def.key
    return [
        dg.AssetObservation(asset_key=key, metadata={WAITING_METADATA: reason}),
        *(
            dg.AssetCheckResult(
                asset_key=spec.asset_key,
                check_name=spec.name,
                passed=True,
                description=f"not run: the asset waits: {reason}",
                metadata={WAITING_METADATA: reason},
            )
            for spec in context.assets_def.check_specs
        ),
    ]


_EXCEPTION_PREFIX = re.compile(r"^[\w.]+(Failure|Error|Exception): ")


def run_notes(instance: dg.DagsterInstance, result: dg.ExecuteInJobResult) -> list[str]:
    """What a person needs from a finished run, one line each: the steps that failed with their
    message (no stack trace), what waits and why, and the steps' own warnings."""
    notes, not_run = [], 0
    for record in instance.all_logs(result.run_id):
        event = record.dagster_event
        if event is None:
            if record.level < logging.WARNING or not record.step_key:
                continue
            if record.user_message.startswith("Dependencies for step"):
                not_run += 1  # after a failure: counted, not listed
            else:
                notes.append(f"    {record.step_key}: warning: {record.user_message}")
        elif event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            message = error.message if error is not None else "failed"
            if error is not None and error.cls_name != "Failure" and error.cause is not None:
                message = error.cause.message  # the user code's exception, not Dagster's wrapper
            message = _EXCEPTION_PREFIX.sub("", message.strip().splitlines()[0])
            notes.append(f"    {event.step_key}: FAILED: {message}")
        elif event.event_type_value == "ASSET_OBSERVATION":
            metadata = event.asset_observation_data.asset_observation.metadata
            if WAITING_METADATA in metadata:
                notes.append(f"    {event.step_key}: waits: {metadata[WAITING_METADATA].value}")
    if not_run:
        notes.append(f"    {not_run} step(s) after the failure were not run")
    return notes
