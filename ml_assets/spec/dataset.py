"""The dataset spec as a whole, and its loader."""

from __future__ import annotations

import math
import os
import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from ml_assets.spec.base import DEFAULT_SPEC_PATH, SPEC_ENV_VAR, SpecError, _Strict
from ml_assets.spec.columns import Column
from ml_assets.spec.labels import Annotation, LabelQuality, LabelSource, WeakLabels
from ml_assets.spec.landing import LandingFiles, Partitions
from ml_assets.spec.lifecycle import Backup, MLflow, PartitionFreshness, Retention, Retraining
from ml_assets.spec.modelling import (
    Drift,
    Fairness,
    Features,
    Performance,
    Promotion,
    Training,
    window_timedelta,
)


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
    mlflow: MLflow | None = None
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
        for role in ("id", "event_time", "entity", "label"):
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
        label = self._role("label")
        if self.labels.in_event_file:
            if label is None:
                raise ValueError(
                    "labels has no landing, so the label must be a column of the event file: give "
                    "one column role 'label' (0/1), or give labels.landing and its columns for "
                    "label files"
                )
            if label.type not in ("int", "bool"):
                raise ValueError(f"label column {label.name!r} must have type int (0/1) or bool")
            if self.labels.label_column not in (None, label.name):
                raise ValueError(
                    f"labels.label_column {self.labels.label_column!r} is not the event file's "
                    f"label column {label.name!r}"
                )
        else:
            if label is not None:
                raise ValueError(
                    f"column {label.name!r} has role 'label' but labels.landing says the labels "
                    "come in files of their own: use one or the other"
                )
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
    def label_column(self) -> str | None:
        """The event file's label column (role `label`), None when labels come in files."""
        col = self._role("label")
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
        names = [self.id_column, "event_id", *self.personal_columns]
        if self.labels.event_id_column:
            names.append(self.labels.event_id_column)
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
