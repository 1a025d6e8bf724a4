"""Labels: ground truth in its own files, weak labelling functions, the annotation queue
and the label-quality thresholds."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ml_assets.spec.base import _Strict
from ml_assets.spec.columns import Column
from ml_assets.spec.landing import LandingFiles


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
