"""The dataset spec: what the tabular data looks like and how every stage treats it.

A user brings their own data by writing one YAML file of this shape and pointing
``ML_ASSETS_SPEC`` at it; no code changes. The example dataset's spec is the default.
"""

from __future__ import annotations

import math
import os
import re
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SPEC_ENV_VAR = "ML_ASSETS_SPEC"
DEFAULT_SPEC_PATH = Path(__file__).parent / "specs" / "transactions.yaml"

ColumnType = Literal["string", "int", "float", "bool", "timestamp", "date"]
Role = Literal[
    "id",  # unique per row; used for dedup and to join labels
    "event_time",  # when the event happened; partitions by this
    "entity",  # who the event is about; rolling features group by it
    "numeric",  # model input
    "categorical",  # model input
    "personal",  # personal data: pseudonymized at ingestion, never a feature
    "sensitive",  # protected attribute: kept for fairness slices, never a feature
    "attribute",  # carried through cleaning, not a model input
]

DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
}


def polars_types():
    """Spec column types as polars dtypes (imported lazily: the spec itself needs no polars)."""
    import polars as pl

    return {
        "string": pl.String,
        "int": pl.Int64,
        "float": pl.Float64,
        "bool": pl.Boolean,
        "timestamp": pl.Datetime("us"),
        "date": pl.Date,
    }


class SpecError(ValueError):
    """A dataset spec that cannot be used; the message names the file, the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueRange(_Strict):
    min: float | None = None
    max: float | None = None
    # what cleaning does with a value outside [min, max]
    action: Literal["clip", "null"] = "null"

    @model_validator(mode="after")
    def _ordered(self) -> ValueRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range.min ({self.min}) is greater than range.max ({self.max})")
        return self


class Imputation(_Strict):
    # median/mean/mode are computed over the rows of the partition being cleaned
    strategy: Literal["none", "constant", "median", "mean", "mode", "drop_row"] = "none"
    value: str | float | int | bool | None = None

    @model_validator(mode="after")
    def _constant_has_value(self) -> Imputation:
        if self.strategy == "constant" and self.value is None:
            raise ValueError("impute.strategy 'constant' needs impute.value")
        return self


class Column(_Strict):
    name: str
    type: ColumnType
    role: Role
    description: str = ""
    nullable: bool = True
    range: ValueRange | None = None
    # allowed categories; a value outside them becomes `unknown_category` (or null when unset)
    categories: list[str] | None = None
    unknown_category: str | None = None
    impute: Imputation = Imputation()

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(
                f"column name {name!r} must be letters, digits and underscores, not starting with a digit"
            )
        return name

    @model_validator(mode="after")
    def _range_only_numeric(self) -> Column:
        if self.range is not None and self.type not in ("int", "float"):
            raise ValueError(f"column {self.name!r}: range is only allowed on int/float columns")
        if self.categories is not None and self.type != "string":
            raise ValueError(f"column {self.name!r}: categories are only allowed on string columns")
        return self

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.type]


class LandingFiles(_Strict):
    """Where the daily files of a table land, relative to the data folder."""

    path: str
    # which files land here; with `partition_by: file_name`, `{date}` is the day as YYYY-MM-DD
    pattern: str
    # how a file's day is known: `file_name` (the `{date}` in its name; one day per file) or
    # `event_time` (the days of its rows' time column; a file may span several days)
    partition_by: Literal["file_name", "event_time"] = "file_name"
    format: Literal["csv"] = "csv"
    delimiter: str = ","
    encoding: Literal["utf-8"] = "utf-8"
    # a file with more bad rows than this share fails instead of quarantining the rows
    max_rejected_fraction: float = Field(0.05, ge=0, le=1)
    # a day without any file is an error (a silent gap otherwise)
    required: bool = True
    # columns in the file that the spec does not name: an error (default), or read past
    ignore_extra_columns: bool = False
    # the file sensor takes a file once its size and change time held still this long
    # (a writer still copying changes both); writers that rename a finished file into the
    # folder can lower it
    settle_seconds: float = Field(30.0, ge=0, le=86_400)

    @model_validator(mode="after")
    def _date_in_pattern(self) -> LandingFiles:
        dates = self.pattern.count("{date}")
        if self.partition_by == "file_name" and dates != 1:
            raise ValueError(
                f"pattern {self.pattern!r} must contain '{{date}}' once (the day, YYYY-MM-DD), "
                "or set partition_by: event_time to take the days from the rows"
            )
        if self.partition_by == "event_time" and dates:
            raise ValueError(
                f"pattern {self.pattern!r}: with partition_by: event_time the days come from the rows; "
                "use '*' where the date was"
            )
        return self


class LabelSource(_Strict):
    """Ground truth that arrives in its own files after the events (e.g. chargebacks)."""

    name: str
    landing: LandingFiles
    columns: list[Column]
    # the column of the label file that holds the event id it refers to
    event_id_column: str
    # the column of the label file that says when the label was reported (partitions the files)
    reported_time_column: str
    # the 0/1 column; when unset, every row of the label file is a positive
    label_column: str | None = None
    # an event with no label after this many days is a negative; before, it is unlabelled
    maturity_days: int = Field(14, ge=0, le=365)

    @model_validator(mode="after")
    def _columns_exist(self) -> LabelSource:
        names = {c.name for c in self.columns}
        for field in ("event_id_column", "reported_time_column", "label_column"):
            value = getattr(self, field)
            if value is not None and value not in names:
                raise ValueError(
                    f"labels.{field} {value!r} is not one of labels.columns {sorted(names)}"
                )
        return self

    @property
    def reported_time(self) -> Column:
        return next(c for c in self.columns if c.name == self.reported_time_column)


class Partitions(_Strict):
    start: date
    # exclusive; leave unset for data that keeps arriving
    end: date | None = None
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _ordered(self) -> Partitions:
        if self.end is not None and self.end <= self.start:
            raise ValueError(
                f"partitions.end ({self.end}) must be after partitions.start ({self.start})"
            )
        return self


_WINDOW_RE = re.compile(r"^(\d+)(m|h|d)$")


class RollingFeatures(_Strict):
    # windows such as 1h, 24h, 7d; counts per entity over each, plus sums of `sum_columns`
    windows: list[str] = ["1h", "24h", "7d"]
    sum_columns: list[str] = []

    @field_validator("windows")
    @classmethod
    def _windows(cls, windows: list[str]) -> list[str]:
        for w in windows:
            if not _WINDOW_RE.match(w):
                raise ValueError(f"rolling window {w!r} must look like 30m, 1h or 7d")
        return windows


def window_timedelta(window: str) -> timedelta:
    amount, unit = _WINDOW_RE.match(window).groups()
    return {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}[unit] * int(
        amount
    )


class Features(_Strict):
    rolling: RollingFeatures = RollingFeatures()
    # hour of day and day of week of the event time
    time_parts: bool = True


class ThresholdRule(_Strict):
    """How the alert threshold is chosen, on the validation slice."""

    # alert_rate: alert on the `alert_rate` share of events with the highest scores;
    # cost: the threshold with the lowest false_positive_cost * FP + false_negative_cost * FN
    rule: Literal["alert_rate", "cost"] = "alert_rate"
    alert_rate: float = Field(0.02, gt=0, lt=1)
    false_positive_cost: float = Field(1.0, gt=0)
    false_negative_cost: float = Field(10.0, gt=0)


class Promotion(_Strict):
    """The champion/challenger gate: what a new version must show to replace the one in use."""

    # on the same test slice, the challenger may be at most this much below the champion
    pr_auc_tolerance: float = Field(0.01, ge=0, le=1)
    roc_auc_tolerance: float = Field(0.01, ge=0, le=1)
    # expected calibration error (event-weighted gap between score and observed rate per bin)
    max_calibration_error: float = Field(0.02, gt=0, le=1)


class Fairness(_Strict):
    """Model metrics per group of each `sensitive` column and per segment, and the gaps allowed."""

    # the largest gap in alert (selection) rate between two groups of a sensitive column
    max_demographic_parity_difference: float = Field(0.1, ge=0, le=1)
    # the largest gap in true-positive or false-positive rate between two groups
    max_equalized_odds_difference: float = Field(0.2, ge=0, le=1)
    # groups with fewer test events are shown but left out of the gaps (their rates are noise)
    min_group_events: int = Field(200, ge=1)
    # other columns of `features` to report the metrics by (e.g. channel)
    segments: list[str] = []


class Training(_Strict):
    # Time-ordered slices, newest last, all on days whose labels have matured:
    #   train_days | gap_days (unused) | validation_days | test_days
    # The gap stands for the labels a live model never had: its newest training day is that
    # old when it starts scoring. Validation tunes the hyperparameters and the threshold; the
    # test slice is touched once, for the reported metrics.
    train_days: int = Field(28, ge=1)
    gap_days: int = Field(7, ge=0)
    validation_days: int = Field(7, ge=1)
    test_days: int = Field(7, ge=1)
    # rows sampled from the training window at most (keeps memory flat on big days)
    max_train_rows: int = Field(2_000_000, ge=1000)
    seed: int = 7
    # hyperparameter search on the validation slice: at most this many candidates, and no new
    # candidate once this many seconds have passed (the defaults are always tried first)
    tuning_candidates: int = Field(8, ge=1)
    tuning_seconds: float = Field(120, gt=0)
    threshold: ThresholdRule = ThresholdRule()
    # resamples of the test slice for the metrics' 95% confidence intervals
    bootstrap_samples: int = Field(200, ge=20)


class Drift(_Strict):
    """How drift_report compares a day with the model's training reference (docs/drift.md).

    Each column gets the test suited to its type and the day's size: with at most
    `small_sample_rows` values a two-sample test (Kolmogorov-Smirnov for numeric columns,
    chi-square for categorical ones) that drifts below its p-value; with more, a distance (the
    Wasserstein distance divided by the reference's standard deviation, the Jensen-Shannon
    distance) that drifts at or above its threshold. PSI is reported beside every column on its
    own scale. A missing rate that moves by `missing_rate_change` drifts the column too. Defaults
    follow Evidently's data-drift preset; PSI's 0.2 is the credit-scoring rule of thumb.
    """

    small_sample_rows: int = Field(1000, ge=1)
    ks_p_value: float = Field(0.05, gt=0, lt=1)
    chi_square_p_value: float = Field(0.05, gt=0, lt=1)
    wasserstein_threshold: float = Field(0.1, gt=0)
    js_threshold: float = Field(0.1, gt=0, le=1)
    psi_threshold: float = Field(0.2, gt=0)
    missing_rate_change: float = Field(0.1, gt=0, le=1)
    # the day drifted when the drifted columns' share reaches this; with `weight_by_importance`
    # each model input counts by its permutation importance in the model card (the prediction
    # score is reported on its own), otherwise every column counts once, as Evidently counts
    drifted_share_threshold: float = Field(0.5, gt=0, le=1)
    weight_by_importance: bool = True
    # the most important inputs named first in the report and in the retraining reason
    important_features: int = Field(5, ge=1)
    # compare a weekday with the training weekdays and a weekend day with the training weekend
    # days (a weekly rhythm is not drift); false: every day with the whole training slice
    weekly_reference: bool = True


class Performance(_Strict):
    """model_performance: the model's realised metrics once a day's labels have matured."""

    # the alert compares the newest `window_days` matured days (pooled) with the test slice
    window_days: int = Field(7, ge=1)
    # alert when the pooled PR AUC / ROC AUC is this far below the model card's test value
    max_pr_auc_drop: float = Field(0.1, gt=0, le=1)
    max_roc_auc_drop: float = Field(0.05, gt=0, le=1)


class LabelingFunction(_Strict):
    """A rule that votes on an event: `when` is a SQL condition over the columns of `features`
    (the model inputs, time parts and rolling counts); where it holds the function votes `vote`,
    elsewhere it abstains."""

    name: str
    vote: Literal["positive", "negative"]
    when: str
    description: str = ""

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"labelling function name {name!r} must be lower_snake_case")
        return name

    @field_validator("when")
    @classmethod
    def _one_expression(cls, when: str) -> str:
        if ";" in when or "--" in when:
            raise ValueError(f"`when` must be one SQL condition, without ';' or comments: {when!r}")
        return when


class WeakLabels(_Strict):
    """Weak supervision: labelling functions and the label model that combines their votes."""

    functions: list[LabelingFunction] = []
    # P(positive) for the label model; unset: the positive rate of the matured ground truth
    class_balance: float | None = Field(None, gt=0, lt=1)
    # the label model is fitted on the votes of the run's days and this many days before
    fit_days: int = Field(28, ge=0)

    @model_validator(mode="after")
    def _unique(self) -> WeakLabels:
        names = [f.name for f in self.functions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"weak_labels.functions: {dupes} declared more than once")
        return self


class AnnotationLanding(LandingFiles):
    """Where completed annotation batches are dropped back: a landing area whose rows belong to
    the days of the events they label, with the batch's other columns read past, and days
    without any annotation a normal thing."""

    path: str = "annotation/completed"
    pattern: str = "batch_*.csv"
    partition_by: Literal["event_time"] = "event_time"
    ignore_extra_columns: bool = True
    required: bool = False


class Annotation(_Strict):
    """Manual labels: the active-learning queue's budget and batch files."""

    # events offered to annotators per day
    daily_budget: int = Field(50, ge=0)
    # at most this many events of one entity per batch (a diversity guard)
    per_entity: int = Field(1, ge=1)
    # where the batch files go, relative to the data folder
    batch_folder: str = "annotation/batches"
    # where completed batches are dropped back: the `raw_annotations` file sensor watches it. A
    # completed batch keeps the batch's columns (extra ones are read past); its rows belong to the
    # days of their events, so an annotation re-opens the day of the event it labels
    landing: AnnotationLanding = AnnotationLanding()


class LabelQuality(_Strict):
    """Thresholds of the label checks on `labels` (each check warns, none blocks)."""

    # share of a day's events with a label from any source
    min_coverage: float = Field(0.5, ge=0, le=1)
    # share of positives among a day's labelled events
    min_positive_rate: float = Field(0.001, ge=0, le=1)
    max_positive_rate: float = Field(0.2, ge=0, le=1)
    # Cohen's kappa of weak labels against matured ground truth on the events that have both
    min_weak_kappa: float = Field(0.1, ge=-1, le=1)
    # share of manually labelled events whose matured ground truth says otherwise
    max_manual_contradiction_rate: float = Field(0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> LabelQuality:
        if self.min_positive_rate > self.max_positive_rate:
            raise ValueError("min_positive_rate must not be above max_positive_rate")
        return self


class Retraining(_Strict):
    """When the retraining sensor retrains the model (any one condition is enough)."""

    # the model is older than this many days
    every_days: float = Field(7, gt=0)
    # this many days scored by the current model drifted (drift_report's day verdict)
    drifted_days: int = Field(3, ge=1)
    # this many events gained a label (positive or negative) since the model's training set
    new_labels: int = Field(1000, ge=1)
    # at least this long between two retrainings, whatever triggers them
    cooldown_hours: float = Field(12, ge=0)
    # this many rows of its training .. test windows belonged to people erased since it was trained
    erased_since_training: int = Field(1, ge=1)


class Retention(_Strict):
    """How long each layer is kept, in days (None: for ever); applied by the daily `retention`
    schedule or `python -m ml_assets.governance retention`."""

    landing_days: int | None = Field(None, ge=1)
    archive_days: int | None = Field(None, ge=1)
    quarantine_days: int | None = Field(None, ge=1)
    raw_days: int | None = Field(None, ge=1)
    cleaned_days: int | None = Field(None, ge=1)
    features_days: int | None = Field(None, ge=1)
    predictions_days: int | None = Field(None, ge=1)
    reports_days: int | None = Field(None, ge=1)
    event_log_days: int | None = Field(None, ge=1)
    # the newest K versions stay, and always the one in use and the one a rollback goes back to
    model_versions: int | None = Field(None, ge=1)
    # what the model in use was trained, validated and tested on stays unless this is false
    keep_model_data: bool = True
    cron: str = "0 3 * * *"


class Backup(_Strict):
    """The nightly snapshot (`python -m ml_assets.backup create` as a schedule)."""

    # snapshots kept in the folder; older ones are removed after a new one is written
    keep: int = Field(7, ge=1)
    # under the data folder, or an absolute path (better: another disk)
    folder: str = "backups"
    cron: str = "30 2 * * *"


class PartitionFreshness(_Strict):
    """When a daily partition is late: its day ended more than warn/fail hours ago and it is not
    materialized. Gaps are looked for over the last `lookback_days` partitions."""

    warn_after_hours: float = Field(2, ge=0)
    fail_after_hours: float = Field(6, ge=0)
    lookback_days: int = Field(7, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> PartitionFreshness:
        if self.fail_after_hours < self.warn_after_hours:
            raise ValueError("freshness.fail_after_hours must be at least warn_after_hours")
        return self


class DatasetSpec(_Strict):
    name: str
    description: str = ""
    partitions: Partitions
    landing: LandingFiles
    columns: list[Column]
    labels: LabelSource
    features: Features = Features()
    training: Training = Training()
    fairness: Fairness = Fairness()
    promotion: Promotion = Promotion()
    drift: Drift = Drift()
    performance: Performance = Performance()
    weak_labels: WeakLabels = WeakLabels()
    annotation: Annotation = Annotation()
    label_quality: LabelQuality = LabelQuality()
    retraining: Retraining = Retraining()
    freshness: PartitionFreshness = PartitionFreshness()
    backup: Backup = Backup()
    retention: Retention = Retention()
    # Several datasets in one code location: each dataset's asset keys start with this (e.g.
    # `readings/features`), its sensors, jobs and schedules with `<key_prefix>_`, and its models,
    # reports and annotation folders sit in a folder of its name. Set for every dataset when the
    # code location loads more than one spec; one dataset alone keeps plain keys.
    key_prefix: str | None = None
    # duplicates: rows with the same id (or identical rows when the table has no id column)
    source_path: str | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"name {name!r} must be lower_snake_case (it names assets and tables)")
        return name

    @model_validator(mode="after")
    def _retention_covers_freshness(self) -> DatasetSpec:
        lookback = self.freshness.lookback_days
        short = {
            name: days
            for name, days in self.retention.model_dump().items()
            if name.endswith("_days") and days is not None and days <= lookback
        }
        if short:
            raise ValueError(
                f"retention {short} keeps no more than freshness.lookback_days ({lookback}): the "
                "freshness checks would report the removed days as gaps. Keep each layer longer than "
                "the lookback, or shorten freshness.lookback_days"
            )
        return self

    @model_validator(mode="after")
    def _roles(self) -> DatasetSpec:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"columns {dupes} are declared more than once")
        for role in ("id", "event_time", "entity"):
            found = [c.name for c in self.columns if c.role == role]
            if len(found) > 1:
                raise ValueError(f"only one column may have role {role!r}, found {found}")
        if not any(c.role == "id" for c in self.columns):
            raise ValueError("one column needs role 'id' (labels are joined on it)")
        event_time = [c for c in self.columns if c.role == "event_time"]
        if not event_time:
            raise ValueError("one column needs role 'event_time' (partitions are days of it)")
        if event_time[0].type not in ("timestamp", "date"):
            raise ValueError(
                f"event_time column {event_time[0].name!r} must have type timestamp or date"
            )
        if not self.model_inputs:
            raise ValueError(
                "at least one column needs role 'numeric' or 'categorical' (model inputs)"
            )
        for col in self.features.rolling.sum_columns:
            if col not in names or self.column(col).type not in ("int", "float"):
                raise ValueError(f"features.rolling.sum_columns: {col!r} is not a numeric column")
        for col in self.fairness.segments:
            if col not in names:
                raise ValueError(f"fairness.segments: {col!r} is not one of the columns")
        if self.labels.reported_time.type not in ("timestamp", "date"):
            raise ValueError("labels.reported_time_column must have type timestamp or date")
        return self

    # ---- the roles, as stages ask for them -------------------------------------------------
    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def _role(self, role: str) -> Column | None:
        return next((c for c in self.columns if c.role == role), None)

    @property
    def id_column(self) -> str:
        return self._role("id").name

    @property
    def event_time_column(self) -> str:
        return self._role("event_time").name

    @property
    def entity_column(self) -> str | None:
        col = self._role("entity")
        return col.name if col else None

    @property
    def numeric_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "numeric"]

    @property
    def categorical_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "categorical"]

    @property
    def personal_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "personal"]

    @property
    def sensitive_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "sensitive"]

    @property
    def model_inputs(self) -> list[str]:
        return [c.name for c in self.columns if c.role in ("numeric", "categorical")]

    @property
    def feature_history_days(self) -> int:
        """Whole days before a partition that its rolling features read."""
        if self.entity_column is None or not self.features.rolling.windows:
            return 0
        longest = max(window_timedelta(w) for w in self.features.rolling.windows)
        return math.ceil(longest / timedelta(days=1))

    @property
    def identifying_columns(self) -> list[str]:
        """Columns that single out a person or their events: never shown in a preview."""
        names = [self.id_column, self.labels.event_id_column, "event_id", *self.personal_columns]
        if self.entity_column:
            names.append(self.entity_column)
        return sorted(set(names))

    # ---- asset and table names ---------------------------------------------------------------
    @property
    def raw_asset(self) -> str:
        return f"raw_{self.name}"

    @property
    def cleaned_asset(self) -> str:
        return f"cleaned_{self.name}"

    @property
    def raw_labels_asset(self) -> str:
        return f"raw_{self.labels.name}"


def _format_validation_error(path: str, err: ValidationError) -> str:
    lines = [f"dataset spec {path} is not valid:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  - {where}: {e['msg']}")
    lines.append(
        "Fix the fields above (see ml_assets/specs/transactions.yaml for a complete example)."
    )
    return "\n".join(lines)


def load_spec(path: str | os.PathLike | None = None) -> DatasetSpec:
    """Load and validate a spec; `path` defaults to $ML_ASSETS_SPEC, then the example spec."""
    resolved = Path(path or os.environ.get(SPEC_ENV_VAR) or DEFAULT_SPEC_PATH).expanduser()
    return _load_spec_cached(
        str(resolved.resolve()), resolved.stat().st_mtime_ns if resolved.exists() else 0
    )


@lru_cache(maxsize=8)
def _load_spec_cached(path: str, _mtime_ns: int) -> DatasetSpec:
    if not Path(path).exists():
        raise SpecError(
            f"dataset spec {path} does not exist; set {SPEC_ENV_VAR} to a spec file "
            f"or unset it to use the example spec {DEFAULT_SPEC_PATH}"
        )
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SpecError(f"dataset spec {path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise SpecError(
            f"dataset spec {path} must be a YAML mapping with name, partitions, landing, columns, labels"
        )
    try:
        return DatasetSpec.model_validate({**raw, "source_path": path})
    except ValidationError as e:
        raise SpecError(_format_validation_error(path, e)) from None
