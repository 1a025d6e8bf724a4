"""Every name that more than one stage uses, derived from the spec in this one place.

Asset keys, warehouse tables (one schema per lifecycle stage, every table qualified by the
dataset's name so two datasets share one warehouse), shared columns, and the names of the checks
and metadata entries that a sensor or another stage refers to. A `defs/<stage>` package imports
these instead of importing another stage (ml_assets_tests/integration/test_layout.py enforces it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
import polars as pl

from ml_assets.spec import Column, DatasetSpec, LandingFiles, polars_types
from ml_assets.transforms.ingest import SOURCE_FILE_COLUMN

# ---- asset names ------------------------------------------------------------------------------
# The spec names the raw and cleaned assets after its dataset (`spec.raw_asset`, ...); the rest
# are the same for every dataset.
RAW_ANNOTATIONS_ASSET = "raw_annotations"
GROUND_TRUTH_ASSET = "ground_truth_labels"
MANUAL_LABELS_ASSET = "manual_labels"
WEAK_LABELS_ASSET = "weak_labels"
LABELS_ASSET = "labels"
FEATURES_ASSET = "features"
PREDICTIONS_ASSET = "predictions"
ANNOTATION_QUEUE_ASSET = "annotation_queue"
TRAINING_SET_ASSET = "training_set"
MODEL_ASSET = "model"
DRIFT_REPORT_ASSET = "drift_report"
MODEL_PERFORMANCE_ASSET = "model_performance"
MONITORING_TREND_ASSET = "monitoring_trend"


def asset_key(spec: DatasetSpec, name: str) -> dg.AssetKey:
    """The key of the dataset's asset `name`: plain alone, `<key_prefix>/<name>` beside others."""
    return dg.AssetKey([spec.key_prefix, name]) if spec.key_prefix else dg.AssetKey(name)


def key_prefix(spec: DatasetSpec) -> list[str] | None:
    """What an asset decorator's `key_prefix` takes for this dataset."""
    return [spec.key_prefix] if spec.key_prefix else None


def instigator(spec: DatasetSpec, name: str) -> str:
    """A sensor, job or schedule name, unique in a code location of several datasets."""
    return f"{spec.key_prefix}_{name}" if spec.key_prefix else name


def dataset_folder(spec: DatasetSpec, folder: str) -> tuple[str, ...]:
    """A folder of the data folder that holds one dataset's files (`models`, `reports`): the
    folder itself alone, `<folder>/<dataset>` beside other datasets."""
    return (folder, spec.name) if spec.key_prefix else (folder,)


def side_by_side(spec: DatasetSpec) -> DatasetSpec:
    """The spec as one of several datasets in a code location: keys prefixed by its name, and
    its annotation folders (when left at their defaults) inside a folder of its name."""
    annotation = spec.annotation
    defaults = type(annotation)()
    updates = {}
    if annotation.batch_folder == defaults.batch_folder:
        updates["batch_folder"] = f"annotation/{spec.name}/batches"
    if annotation.landing.path == defaults.landing.path:
        updates["landing"] = annotation.landing.model_copy(
            update={"path": f"annotation/{spec.name}/completed"}
        )
    return spec.model_copy(
        update={
            "key_prefix": spec.key_prefix or spec.name,
            "annotation": annotation.model_copy(update=updates),
        }
    )


# ---- columns shared between stages ------------------------------------------------------------
# the model's score on a prediction row and in the drift reference
SCORE_COLUMN = "prediction_score"
# the columns a completed annotation batch must keep (the others of the batch are read past)
ANNOTATION_ID_COLUMN = "event_id"

# ---- check names and metadata entries shared between stages, tests and the UI -----------------
QUARANTINE_CHECK = "no_quarantined_files"
# each raw materialization lists the files it read with their checksums: the file sensor's
# exactly-once rule reads it back
SOURCE_FILES_METADATA = "source_files_sha256"
# events with a real label (ground truth or manual, not weak), whole table (shown in the UI; the
# retraining sensor counts them in the labels table and reads the training's count in the card)
LABELLED_TOTAL = "labelled_events_total"
# days after the current model's data that drifted (the sensor reads the drift_days table)
DRIFTED_SINCE_TRAINING = "drifted_days_since_training"
# the important inputs drifted on the newest day reported
IMPORTANT_DRIFTED = "important_inputs_drifted"
PERFORMANCE_ALERT = "performance_alert"
ALERT_REASON = "performance_alert_reason"
ALERT_VERSION = "performance_alert_model_version"


# the warehouse's schemas: every table is `<one of these>.<dataset>[_<what>]`
RAW_SCHEMA = "raw"  # rows as the files held them, in file order
SCHEMAS = (
    RAW_SCHEMA,
    "cleaned",
    "labels",
    "features",
    "models",
    "predictions",
    "monitor",
    "governance",
)


class Tables:
    """Where each asset's rows live: `<stage schema>.<dataset>[_<what>]`."""

    def __init__(self, spec: DatasetSpec):
        n, lab = spec.name, spec.labels.name
        self.raw = f"raw.{n}"
        self.raw_files = f"raw.{n}_files"
        self.raw_rejected = f"raw.{n}_rejected_rows"
        self.raw_labels = f"raw.{lab}"
        self.raw_labels_files = f"raw.{lab}_files"
        self.raw_labels_rejected = f"raw.{lab}_rejected_rows"
        self.cleaned = f"cleaned.{n}"
        # what each cleaning rule changed per day, and the raw values behind the unknown categories
        self.cleaning_days = f"cleaned.{n}_cleaning_days"
        self.unknown_values = f"cleaned.{n}_unknown_values"
        self.ground_truth = f"labels.{n}_ground_truth"
        self.labels = f"labels.{n}"
        self.weak_votes = f"labels.{n}_weak_votes"
        self.annotation_queue = f"labels.{n}_annotation_queue"
        self.raw_annotations = f"raw.{n}_annotations"
        self.raw_annotations_files = f"raw.{n}_annotations_files"
        self.raw_annotations_rejected = f"raw.{n}_annotations_rejected_rows"
        self.annotations = f"labels.{n}_annotations"
        self.annotations_rejected = f"labels.{n}_annotations_rejected"
        self.manual_labels = f"labels.{n}_manual"
        self.features = f"features.{n}"
        self.training_set = f"models.{n}_training_set"
        # one row: the training set's windows, data versions and label counts (the model's card)
        self.training_set_info = f"models.{n}_training_set_info"
        self.predictions = f"predictions.{n}"
        self.drift_columns = f"monitor.{n}_drift_columns"
        self.drift_days = f"monitor.{n}_drift_days"
        self.performance_days = f"monitor.{n}_performance_days"
        self.performance_slices = f"monitor.{n}_performance_slices"
        self.monitoring_trend = f"monitor.{n}_trend"


@dataclass(frozen=True)
class LandingArea:
    """One landing folder, the raw asset that ingests it, and where its rows go."""

    asset_name: str
    dataset: str
    landing: LandingFiles
    columns: list[Column]
    time_column: str
    id_column: str | None
    table: str
    files_table: str
    rejected_table: str
    # columns that are empty on many lines by design (a line nobody annotated): no null-rate limit
    mostly_empty: tuple[str, ...] = ()
    # a day with no file is normal here (nobody annotated that day)
    days_may_be_missing: bool = False
    # times without an offset are in it, times with one are converted to it
    timezone: str = "UTC"
    # files of this many days after the last partition are taken in with the last partition
    # (label files that report on the last days' events after the partitions end)
    trailing_days: int = 0
    # the partitions' exclusive end, if they have one
    partitions_end: date | None = None

    def partition_day(self, day: date) -> date:
        """The partition a file of `day` goes into: its own, or the last one for a trailing day."""
        if self.partitions_end is not None and day >= self.partitions_end:
            return self.partitions_end - timedelta(days=1)
        return day

    @property
    def time(self) -> Column:
        return next(c for c in self.columns if c.name == self.time_column)


def annotation_columns(spec: DatasetSpec) -> list[Column]:
    """event_id, the event's time (the day it belongs to), label and annotator."""
    time_col = spec.column(spec.event_time_column)
    return [
        Column(name=ANNOTATION_ID_COLUMN, type="string", role="attribute", nullable=False),
        Column(name=time_col.name, type=time_col.type, role="event_time", nullable=False),
        Column(name="label", type="string", role="attribute"),
        Column(name="annotator", type="string", role="attribute"),
    ]


def landing_areas(spec: DatasetSpec) -> list[LandingArea]:
    """The events' landing area, the label files' (partitioned by when a label was reported; none
    when the label is a column of the event file) and the completed annotation batches'
    (partitioned by the time of the events they label)."""
    t, lab, tz = Tables(spec), spec.labels, spec.partitions.timezone
    label_files = (
        []
        if lab.in_event_file
        else [
            LandingArea(
                spec.raw_labels_asset,
                lab.name,
                lab.landing,
                lab.columns,
                lab.reported_time_column,
                next((c.name for c in lab.columns if c.role == "id"), None),
                t.raw_labels,
                t.raw_labels_files,
                t.raw_labels_rejected,
                timezone=tz,
                trailing_days=lab.maturity_days if spec.partitions.end else 0,
                partitions_end=spec.partitions.end,
            ),
        ]
    )
    return [
        LandingArea(
            spec.raw_asset,
            spec.name,
            spec.landing,
            spec.columns,
            spec.event_time_column,
            spec.id_column,
            t.raw,
            t.raw_files,
            t.raw_rejected,
            timezone=tz,
        ),
        *label_files,
        LandingArea(
            RAW_ANNOTATIONS_ASSET,
            # its archive and quarantine folder: one of its own beside other datasets
            f"{spec.name}_annotations" if spec.key_prefix else "annotations",
            spec.annotation.landing,
            annotation_columns(spec),
            spec.event_time_column,
            # several annotators may label one event: no column is unique
            None,
            t.raw_annotations,
            t.raw_annotations_files,
            t.raw_annotations_rejected,
            mostly_empty=("label", "annotator"),
            days_may_be_missing=True,
            timezone=tz,
        ),
    ]


def raw_schema(columns: list[Column]) -> dict[str, pl.DataType]:
    """The column types of a raw table: the landing columns and the file each row came from."""
    types = polars_types()
    return {c.name: types[c.table_type] for c in columns} | {SOURCE_FILE_COLUMN: pl.String}


# a daily asset whose days may stay empty (a day nobody annotated): no per-day freshness check
DAYS_MAY_BE_MISSING_TAG = "ml_assets/days_may_be_missing"


def every_day_expected(assets) -> list[dg.AssetKey]:
    """Of a dataset's assets (AssetsDefinitions and AssetSpecs), the daily ones that must have
    every day materialized: partitioned, materializable, not tagged DAYS_MAY_BE_MISSING_TAG."""
    keys = set()
    for asset in assets:
        if not isinstance(asset, dg.AssetsDefinition) or not asset.is_materializable:
            continue
        keys.update(
            spec.key
            for spec in asset.specs
            if spec.partitions_def is not None and DAYS_MAY_BE_MISSING_TAG not in spec.tags
        )
    return sorted(keys)
