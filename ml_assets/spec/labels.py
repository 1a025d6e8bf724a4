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
    """Ground truth: in files of its own that arrive after the events (e.g. chargebacks), or a
    column of the event file (role `label`) that is known only `available_after_days` after its
    event.

    Either way an event is unlabelled until its label is known, positive or negative once it is,
    and negative once `maturity_days` passed without one. With label files, "known" means a label
    file of a day up to the newest one landed says so, and a day without any label file means the
    labels are incomplete from that day on (landing.required: true makes such a day an error).
    With a label column, "known" means the event data of the day `available_after_days` after the
    event has landed.
    """

    name: str
    # label files: where they land and their columns
    landing: LandingFiles | None = None
    columns: list[Column] = []
    # the column of the label file that holds the event id it refers to
    event_id_column: str | None = None
    # the column of the label file that says when the label was reported (partitions the files)
    reported_time_column: str | None = None
    # the 0/1 column; when unset, every row of the label file is a positive
    label_column: str | None = None
    # an event with no label after this many days is a negative; before, it is unlabelled
    maturity_days: int = Field(14, ge=0, le=365)
    # a label column in the event file: its value is treated as unknown until this many days
    # after the event (as a late label would arrive); sets maturity_days
    available_after_days: int | None = Field(None, ge=0, le=365)

    @model_validator(mode="before")
    @classmethod
    def _availability_is_maturity(cls, data):
        if isinstance(data, dict) and data.get("available_after_days") is not None:
            if "maturity_days" in data and data["maturity_days"] != data["available_after_days"]:
                raise ValueError(
                    "labels.available_after_days sets maturity_days for a label column in the "
                    "event file: give one of them"
                )
            data = {**data, "maturity_days": data["available_after_days"]}
        return data

    @model_validator(mode="after")
    def _columns_exist(self) -> LabelSource:
        if self.landing is None:
            given = [
                f
                for f in ("columns", "event_id_column", "reported_time_column")
                if getattr(self, f)
            ]
            if given:
                raise ValueError(
                    f"labels.{', labels.'.join(given)} describe label files, but labels.landing is "
                    "not set: give labels.landing for label files, or drop them when the label is a "
                    "column of the event file (role: label)"
                )
            return self
        if self.available_after_days is not None:
            raise ValueError(
                "labels.available_after_days is for a label column in the event file; label files "
                "say when each label was reported (reported_time_column)"
            )
        for field in ("event_id_column", "reported_time_column"):
            if getattr(self, field) is None:
                raise ValueError(f"label files (labels.landing) need labels.{field}")
        names = {c.name for c in self.columns}
        for field in ("event_id_column", "reported_time_column", "label_column"):
            value = getattr(self, field)
            if value is not None and value not in names:
                raise ValueError(
                    f"labels.{field} {value!r} is not one of labels.columns {sorted(names)}"
                )
        return self

    @property
    def in_event_file(self) -> bool:
        """The label is a column of the event file (no label files)."""
        return self.landing is None

    @property
    def reported_time(self) -> Column | None:
        return next((c for c in self.columns if c.name == self.reported_time_column), None)


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

    # events offered to annotators per day; 0 disables the queue (no annotation_queue asset and
    # no batch files; annotations dropped into `landing` are still read)
    daily_budget: int = Field(50, ge=0)
    # at most this many events of one entity per batch (a diversity guard)
    per_entity: int = Field(1, ge=1)
    # where the batch files go, relative to the data folder
    batch_folder: str = "annotation/batches"
    # where completed batches are dropped back: the `raw_annotations` file sensor watches it. A
    # completed batch keeps the batch's columns (extra ones are read past); its rows belong to the
    # days of their events, so an annotation re-opens the day of the event it labels
    landing: AnnotationLanding = AnnotationLanding()
    # who may annotate: the `annotator` of a completed batch line must be one of these names,
    # else the line is rejected with its reason (whoever can write to the completed folder
    # could otherwise invent annotators and outvote real ones). Unset: anyone, with a warning
    annotators: list[str] | None = None

    @field_validator("annotators")
    @classmethod
    def _names(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        cleaned = [n.strip() for n in names]
        if not all(cleaned) or len(set(cleaned)) != len(cleaned):
            raise ValueError("annotation.annotators: names must be non-empty and each listed once")
        return cleaned


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
