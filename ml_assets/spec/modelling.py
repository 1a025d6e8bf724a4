"""Features, training, the promotion gate, fairness, drift and realised performance."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ml_assets.spec.base import _Strict

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
    #
    # window: rolling (default): the slices end at the newest day whose labels have all matured,
    #   so every retraining moves them forward.
    # window: fixed: the slices lie in the reference period [start, end) (`end` exclusive, as
    #   partitions.end): test and validation its last days, training from `start` on
    #   (train_days unused). The model is applied to everything after it and is not retrained
    #   on newer data: the retraining sensor trains it once the period's labels have matured and
    #   again only when its data changed (an erasure) or the period in the spec did.
    window: Literal["rolling", "fixed"] = "rolling"
    start: date | None = None
    end: date | None = None
    train_days: int = Field(28, ge=1)
    gap_days: int = Field(7, ge=0)
    validation_days: int = Field(7, ge=1)
    test_days: int = Field(7, ge=1)
    # rows sampled from the training window at most (keeps memory flat on big days)
    max_train_rows: int = Field(2_000_000, ge=1000)
    # ground-truth events sampled from the validation and from the test window at most, each
    # (seeded, like the training rows); the card says when a slice was sampled, and its
    # metrics' intervals are the sample's
    max_evaluation_rows: int = Field(1_000_000, ge=100)
    seed: int = 7
    # hyperparameter search on the validation slice: at most this many candidates, and no new
    # candidate once this many seconds have passed (the defaults are always tried first)
    tuning_candidates: int = Field(8, ge=1)
    tuning_seconds: float = Field(120, gt=0)
    threshold: ThresholdRule = ThresholdRule()
    # resamples of the test slice for the metrics' 95% confidence intervals
    bootstrap_samples: int = Field(200, ge=20)

    @model_validator(mode="after")
    def _window(self) -> Training:
        if self.window == "rolling":
            if self.start is not None or self.end is not None:
                raise ValueError(
                    "training.start and training.end set a fixed window: add `window: fixed`, "
                    "or remove them for the rolling window"
                )
            return self
        if self.start is None or self.end is None:
            raise ValueError("training.window: fixed needs training.start and training.end")
        need = self.test_days + self.validation_days + self.gap_days + 1
        if (self.end - self.start).days < need:
            raise ValueError(
                f"the fixed window {self.start} .. {self.end} (end exclusive) has "
                f"{(self.end - self.start).days} days; test_days + validation_days + gap_days "
                f"+ 1 day to train on need {need}"
            )
        return self

    def describe_window(self) -> str:
        """'rolling', or 'fixed 2024-01-01 .. 2024-06-30' (the last day, inclusive)."""
        if self.window == "rolling":
            return "rolling"
        return f"fixed {self.start} .. {self.end - timedelta(days=1)}"


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
    # the p-value tests of a day's columns are one family: with `multiple_testing: holm` the
    # chance that a day without drift flags any column is at most these levels (docs/drift.md:
    # at 0.05 per column, 1 stable day in 20 would be flagged by design)
    ks_p_value: float = Field(0.01, gt=0, lt=1)
    chi_square_p_value: float = Field(0.01, gt=0, lt=1)
    multiple_testing: Literal["holm", "none"] = "holm"
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
    # the distribution plots each day's report draws: `drifted` its drifted columns among the
    # `important_features` (the most important first, at most three; a day where none of them
    # drifted draws none), `all` its three worst columns every day, `none` none (a long
    # backfill: tables and verdicts are the same)
    plots: Literal["drifted", "all", "none"] = "drifted"


class Performance(_Strict):
    """model_performance: the model's realised metrics once a day's labels have matured."""

    # the alert compares the newest `window_days` matured days (pooled) with the test slice
    window_days: int = Field(7, ge=1)
    # alert when the pooled PR AUC / ROC AUC is this far below the model card's test value
    max_pr_auc_drop: float = Field(0.1, gt=0, le=1)
    max_roc_auc_drop: float = Field(0.05, gt=0, le=1)
    # before the labels come: retrain when the estimated ROC AUC (CBPE, docs/drift.md) of the
    # newest `window_days` scored days pooled is this far below the test slice's (unset: the
    # estimate is reported, never acted on)
    max_estimated_roc_auc_drop: float | None = Field(None, gt=0, le=1)
