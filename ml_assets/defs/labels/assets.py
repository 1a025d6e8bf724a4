"""Labels: ground truth joined to the events it refers to as it arrives, and one label per event
resolved from all the label sources by a documented precedence."""

from datetime import date, timedelta

import dagster as dg
import polars as pl

from ml_assets.metadata import (
    DAYS_IN_METADATA,
    check_results,
    check_specs,
    checked_write,
    markdown_table,
    table_metadata,
)
from ml_assets.names import (
    GROUND_TRUTH_ASSET,
    LABELLED_TOTAL,
    LABELS_ASSET,
    MANUAL_LABELS_ASSET,
    WEAK_LABELS_ASSET,
    Tables,
    asset_key,
    key_prefix,
)
from ml_assets.partitions import (
    day_start,
    days_in,
    following_days,
    latest_materialization,
    time_window,
)
from ml_assets.policies import daily_asset_args, follow_parents
from ml_assets.queries import labelled_events, window_events
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.storage.interfaces import Warehouse
from ml_assets.transforms.labels import (
    LABEL_CHECKS,
    LABEL_SCHEMA,
    PRECEDENCE,
    RESOLVED_SCHEMA,
    label_checks,
    resolve_labels,
    resolve_sources,
)
from ml_assets.transforms.quality import table_checks


def observed_until(warehouse: Warehouse, files_table: str, start, end) -> object:
    """The end of the unbroken run of label days ingested from `start`: label data is complete until then."""
    log = warehouse.read_if_exists(
        files_table,
        f"SELECT DISTINCT day FROM {files_table} WHERE day >= ? AND day < ? ORDER BY day",
        [start, end],
    )
    seen = set(log["day"].to_list()) if log is not None else set()
    for day in days_in(start, end):
        if day_start(day) not in seen:
            return day_start(day) if day_start(day) > start else None
    return end


def label_sources(
    warehouse: Warehouse, t: Tables, start, end, with_weak: bool
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None]:
    """The window's ground truth, manual labels (None before any) and weak votes (when used)."""
    window = [start, end]
    truth = warehouse.read(
        f"SELECT * FROM {t.ground_truth} WHERE event_time >= ? AND event_time < ?", window
    )
    manual = warehouse.read_if_exists(
        t.manual_labels,
        f"SELECT event_id, label, agreement FROM {t.manual_labels} "
        "WHERE event_time >= ? AND event_time < ?",
        window,
    )
    weak = None
    if with_weak:
        weak = warehouse.read(
            f"SELECT event_id, votes, probability FROM {t.weak_votes} "
            "WHERE event_time >= ? AND event_time < ?",
            window,
        )
    return truth, manual, weak


LABEL_ROWS_SCHEMA = {"event_id": pl.String, "reported_at": pl.Datetime("us"), "label": pl.Int8}


def labels_in_files(warehouse: Warehouse, spec: DatasetSpec, t: Tables, start, label_end):
    """(label rows reported in [start, label_end), how far label files were read) from the label files."""
    lab = spec.labels
    reported = f"CAST({lab.reported_time_column} AS TIMESTAMP)"
    if lab.reported_time.type == "date":
        # a report dated D is known by the end of D, not at its midnight (before the day's events)
        reported = f"({reported} + INTERVAL 1 DAY - INTERVAL 1 MICROSECOND)"
    label_expr = (
        f"CAST({lab.label_column} AS TINYINT)" if lab.label_column else "CAST(1 AS TINYINT)"
    )
    rows = warehouse.read_if_exists(
        t.raw_labels,
        f"SELECT CAST({lab.event_id_column} AS VARCHAR) AS event_id, {reported} AS reported_at, {label_expr} AS label FROM {t.raw_labels} "
        f"WHERE {lab.reported_time_column} >= ? AND {lab.reported_time_column} < ?",
        [start, label_end],
    )
    if rows is None:
        rows = pl.DataFrame(schema=LABEL_ROWS_SCHEMA)
    return rows, observed_until(warehouse, t.raw_labels_files, start, label_end)


def labels_in_events(warehouse: Warehouse, spec: DatasetSpec, t: Tables, start, end, label_end):
    """(label rows, how far the events were read) from the event file's label column: a label is
    reported `maturity_days` after its event and known once the events of that time have landed."""
    delay = timedelta(days=spec.labels.maturity_days)
    until = observed_until(warehouse, t.raw_files, start, label_end)
    time_col, label = spec.event_time_column, spec.label_column
    rows = warehouse.read(
        f"SELECT CAST({spec.id_column} AS VARCHAR) AS event_id, "
        f"CAST({time_col} AS TIMESTAMP) + ? AS reported_at, CAST({label} AS TINYINT) AS label "
        f"FROM {t.cleaned} WHERE {time_col} >= ? AND {time_col} < ? AND {label} IS NOT NULL",
        [delay, start, end],
    ).cast(LABEL_ROWS_SCHEMA)
    known = rows.filter(pl.col("reported_at") <= until) if until is not None else rows.head(0)
    return known, until


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    t = Tables(spec)
    lab = spec.labels
    maturity = lab.maturity_days

    if lab.in_event_file:
        # the label is a column of the events, known once the events of `maturity` days later landed
        source_text = (
            f"the `{spec.label_column}` column of {spec.raw_asset}, treated as unknown until the events of "
            f"{maturity} days after it have landed (labels.available_after_days), as a late label would arrive; "
            f"day D reads the events of days D..D+{maturity}"
        )
        label_area = asset_key(spec, spec.raw_asset)
    else:
        source_text = (
            f"{spec.raw_labels_asset} (positive when reported, negative once {maturity} days passed without a "
            f"report, unlabelled before), when it was reported and the delay. Day D reads the label files of days "
            f"D..D+{maturity}, so a late label re-opens the day it refers to; a day without a label file means the "
            "labels are incomplete from that day on"
        )
        label_area = asset_key(spec, spec.raw_labels_asset)

    @dg.asset(
        name=GROUND_TRUTH_ASSET,
        description=f"Ground truth: one row per event of {spec.cleaned_asset} with its label from {source_text}.",
        group_name="labels",
        key_prefix=key_prefix(spec),
        kinds={"duckdb", "polars"},
        **daily_asset_args(spec, settings),
        deps=[
            dg.AssetDep(asset_key(spec, spec.cleaned_asset)),
            dg.AssetDep(label_area, partition_mapping=following_days(maturity)),
        ],
        # label data of days still to come is missing by nature: it must not hold the day back
        automation_condition=follow_parents(ignore_missing_of=(label_area,)),
        check_specs=check_specs(asset_key(spec, GROUND_TRUTH_ASSET)),
        metadata={"table": t.ground_truth},
    )
    def ground_truth_labels(
        context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]
    ) -> dg.MaterializeResult:
        start, end = time_window(context)
        label_end = end + timedelta(days=maturity)
        events = window_events(warehouse, spec, start, end)
        if lab.in_event_file:
            rows, until = labels_in_events(warehouse, spec, t, start, end, label_end)
        else:
            rows, until = labels_in_files(warehouse, spec, t, start, label_end)
        frame, stats = resolve_labels(events, rows, maturity, until)
        delays = frame["label_delay_days"].drop_nulls()
        outcomes = table_checks(
            frame,
            LABEL_SCHEMA,
            {"event_id": 0.0, "event_time": 0.0, "label_status": 0.0},
            "event_id",
            {"label": (0, 1)},
            {"label_status": ["positive", "negative", "unlabelled"]},
        )
        checked_write(
            warehouse,
            GROUND_TRUTH_ASSET,
            outcomes,
            [(t.ground_truth, frame, "event_time", start, end)],
        )
        return dg.MaterializeResult(
            metadata=table_metadata(
                frame,
                hide=spec.identifying_columns,
                **{k: dg.MetadataValue.int(v) for k, v in stats.items()},
                label_data_complete_until=str(until) if until else "no label files yet",
                label_delay_days_median=float(delays.median()) if len(delays) else None,
                label_delay_days_p90=float(delays.quantile(0.9)) if len(delays) else None,
                label_delay_distribution=dg.MetadataValue.md(
                    markdown_table(delay_histogram(delays), max_rows=maturity + 2)
                ),
            ),
            check_results=check_results(outcomes),
        )

    # each label source is its own asset; `labels` reads them all (precedence: PRECEDENCE)
    sources = {"ground_truth": GROUND_TRUTH_ASSET, "manual": MANUAL_LABELS_ASSET}
    if spec.weak_labels.functions:
        sources["weak"] = WEAK_LABELS_ASSET
    quality = spec.label_quality

    @dg.asset(
        name=LABELS_ASSET,
        description=(
            f"One label per event, from the label sources by precedence ({' > '.join(PRECEDENCE)}): ground truth "
            "where it has matured (confidence 1), else the annotators' majority (confidence = their agreement), else "
            "the weak label where a labelling function voted (label = label-model probability >= 0.5, confidence "
            "max(p, 1-p)), else none. Each event keeps its source, confidence, the ground truth's status, the manual "
            "label and weak probability beside the winner, and `source_version`: the run that materialized the "
            "winning source's day. Training reads this asset. Checks: coverage and class balance per day, weak "
            "labels and annotations against ground truth (thresholds: `label_quality` in the spec)."
        ),
        group_name="labels",
        key_prefix=key_prefix(spec),
        kinds={"duckdb", "polars"},
        **daily_asset_args(spec, settings),
        deps=[asset_key(spec, source) for source in sources.values()],
        automation_condition=follow_parents(),
        check_specs=[
            *check_specs(asset_key(spec, LABELS_ASSET)),
            *(
                dg.AssetCheckSpec(name=name, asset=asset_key(spec, LABELS_ASSET), description=text)
                for name, text in LABEL_CHECKS.items()
            ),
        ],
        metadata={"table": t.labels, "precedence": " > ".join(PRECEDENCE)},
    )
    def labels(
        context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]
    ) -> dg.MaterializeResult:
        start, end = time_window(context)
        truth, manual, weak = label_sources(warehouse, t, start, end, "weak" in sources)
        runs = {
            source: source_runs(context.instance, asset_key(spec, asset), days_in(start, end))
            for source, asset in sources.items()
        }
        frame = resolve_sources(truth, manual, weak, versions_frame(runs))
        outcomes = table_checks(
            frame,
            RESOLVED_SCHEMA,
            {"event_id": 0.0, "event_time": 0.0, "label_status": 0.0},
            "event_id",
            {"label": (0, 1), "confidence": (0.0, 1.0)},
            {"label_source": list(PRECEDENCE)},
        )
        checked_write(
            warehouse, LABELS_ASSET, outcomes, [(t.labels, frame, "event_time", start, end)]
        )
        mix = frame.group_by("label_source").len().sort("label_source", nulls_last=True)
        # weak and manual labels are judged against the ground truth beyond the window too (a run
        # over recent days has none matured yet): weak ones on the matured days of the last
        # maturity + weak_labels.fit_days days, manual ones on every event that has both
        quality_outcomes = label_checks(
            frame,
            warehouse.read(
                WEAK_PAIRS_SQL.format(labels=t.labels),
                {"since": end - timedelta(days=maturity + spec.weak_labels.fit_days)},
            ),
            warehouse.read(MANUAL_PAIRS_SQL.format(labels=t.labels)),
            quality,
            t.labels,
        )
        return dg.MaterializeResult(
            metadata=table_metadata(
                frame,
                hide=spec.identifying_columns,
                **{LABELLED_TOTAL: dg.MetadataValue.int(labelled_events(warehouse, t.labels))},
                sources=dg.MetadataValue.md(markdown_table(mix)),
                resolved_from=dg.MetadataValue.json(
                    # the newest days only: this metadata is copied onto each day of a range run
                    {
                        sources[s]: dict(sorted(by_day.items())[-DAYS_IN_METADATA:])
                        for s, by_day in runs.items()
                    }
                ),
            ),
            check_results=[
                *check_results(outcomes),
                *check_results(quality_outcomes, warn_only=LABEL_CHECKS),
            ],
        )

    return dg.Definitions(assets=[ground_truth_labels, labels])


# (ground truth, weak label) pairs on the days whose every event's ground truth has matured (on
# a younger day only the early positives are known, which would bias the comparison), among the
# days from $since on: the functions' recent record, at a cost that does not grow with history
WEAK_PAIRS_SQL = """
    WITH recent AS (SELECT * FROM {labels} WHERE event_time >= $since),
    matured AS (
        SELECT CAST(event_time AS DATE) AS day FROM recent GROUP BY 1
        HAVING count(*) FILTER (WHERE label_status = 'unlabelled') = 0
    )
    SELECT CAST(label AS TINYINT) AS truth, CAST(weak_probability >= 0.5 AS TINYINT) AS weak,
           count(*) AS n
    FROM recent
    WHERE label_source = 'ground_truth' AND weak_probability IS NOT NULL
      AND CAST(event_time AS DATE) IN (SELECT day FROM matured)
    GROUP BY 1, 2
"""
# every manually labelled event whose ground truth is known (a negative only once matured)
MANUAL_PAIRS_SQL = """
    SELECT event_id, label, manual_label FROM {labels}
    WHERE label_source = 'ground_truth' AND manual_label IS NOT NULL
    ORDER BY event_time, event_id
"""


def delay_histogram(delays: pl.Series) -> pl.DataFrame:
    """Reported labels per whole day of delay after their event, with the cumulative share."""
    counts = (
        delays.floor()
        .cast(pl.Int32)
        .alias("delay_days")
        .value_counts(name="labels")
        .sort("delay_days")
    )
    return counts.with_columns(
        cumulative_share=(pl.col("labels").cum_sum() / pl.col("labels").sum()).round(3)
    )


def versions_frame(runs: dict[str, dict[str, str | None]]) -> pl.DataFrame:
    """{source: {day: run id}} as rows of label_source, day, source_version."""
    return pl.DataFrame(
        [
            {"label_source": source, "day": date.fromisoformat(day), "source_version": run}
            for source, by_day in runs.items()
            for day, run in by_day.items()
        ],
        schema={"label_source": pl.String, "day": pl.Date, "source_version": pl.String},
    )


def source_runs(instance: dg.DagsterInstance, asset: dg.AssetKey, days) -> dict[str, str | None]:
    """{day: run id} of the materialization of `asset` each day was resolved from."""
    out = {}
    for day in days:
        record = latest_materialization(instance, asset, day.isoformat())
        out[day.isoformat()] = record.run_id if record else None
    return out
