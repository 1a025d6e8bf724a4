"""When to retrain: the retraining policy as a pure function of what the instance knows.

No Dagster here. The retraining sensor gathers the facts (when the model was trained, the newest
drift report, how many events are labelled now and were at training) and asks `reasons_to_retrain`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ml_assets.spec import Retraining


@dataclass(frozen=True)
class ModelState:
    version: str | None  # None: no model yet
    trained_at: datetime | None
    labelled_at_training: int | None  # labelled events when its training set was built
    # rows of people erased since it was trained that its training .. test windows held
    erased_rows: int = 0
    # the training window it was trained on (Training.describe_window, e.g. "rolling")
    window: str | None = None


@dataclass(frozen=True)
class FixedWindow:
    """training.window: fixed: the period the model must be trained on, and whether its labels
    have all matured (so a training can succeed)."""

    period: str  # Training.describe_window()
    ready: bool


@dataclass(frozen=True)
class DriftState:
    model_version: str  # the model whose reference the report compared with
    drifted_days_since_training: int
    important_drifted: str = ""  # the most important inputs drifted on the newest day


@dataclass(frozen=True)
class PerformanceState:
    model_version: str  # the model whose realised performance was judged
    alert: bool  # its pooled PR AUC / ROC AUC fell further below the test slice's than allowed
    reason: str = ""


def reasons_to_retrain(
    policy: Retraining,
    now: datetime,
    model: ModelState,
    drift: DriftState | None,
    labelled_now: int | None,
    last_requested_at: datetime | None,
    performance: PerformanceState | None = None,
    fixed: FixedWindow | None = None,
    estimated: PerformanceState | None = None,
) -> list[str]:
    """Why the model should be retrained now; empty when it should not.

    With a fixed training window (`fixed`) the model is trained once the period's labels have
    matured, and again only when its data changed (an erasure) or the spec's period is another
    than the model's: age, drift, performance and new labels are reported, never acted on,
    since retraining on the same period would give the same model.

    Any one condition is enough: no model yet (and `new_labels` events are labelled), the model is `every_days`
    old, `drifted_days` days after its training data drifted against its reference (the day
    verdict weighs the inputs by importance), its realised performance on matured days dropped
    (model_performance's alert), `new_labels` events gained a label since its training set, or
    `erased_since_training` rows of its data belonged to people erased since, or (`estimated`) the
    CBPE estimate of its newest scored days fell as far as the spec allows. Nothing is requested within
    `cooldown_hours` of the last training or of the last request (a run may still be queued).
    """
    cooldown = timedelta(hours=policy.cooldown_hours)
    if last_requested_at is not None and now - last_requested_at < cooldown:
        return []
    if model.version is None:
        if fixed is not None:
            return (
                [f"no model yet, and the labels of the {fixed.period} training window have matured"]
                if fixed.ready
                else []
            )
        if labelled_now is not None and labelled_now >= policy.new_labels:
            return [f"no model yet, and {labelled_now} events are labelled"]
        return []
    erased = []
    if model.erased_rows >= policy.erased_since_training:
        # data a person asked to erase is not kept in a model for a cooldown's sake
        erased.append(
            f"erased_since_training: {model.erased_rows} rows of people erased since it was trained "
            f"were in its data (retraining.erased_since_training = {policy.erased_since_training})"
        )
    if fixed is not None:
        if model.window != fixed.period and fixed.ready:
            erased.append(
                f"training window: the spec's is {fixed.period}, the model's "
                f"{model.window or 'unknown'}"
            )
        return erased
    if model.trained_at is not None and now - model.trained_at < cooldown:
        return erased
    reasons = erased
    if model.trained_at is not None and now - model.trained_at >= timedelta(days=policy.every_days):
        reasons.append(
            f"scheduled: the model is {(now - model.trained_at).days} days old "
            f"(retraining.every_days = {policy.every_days:g})"
        )
    if (
        drift is not None
        and drift.model_version == model.version
        and drift.drifted_days_since_training >= policy.drifted_days
    ):
        reasons.append(
            f"drift: {drift.drifted_days_since_training} days after its training data drifted "
            f"(retraining.drifted_days = {policy.drifted_days})"
            + (
                f"; important inputs drifted: {drift.important_drifted}"
                if drift.important_drifted
                else ""
            )
        )
    if performance is not None and performance.model_version == model.version and performance.alert:
        reasons.append(f"performance: {performance.reason}")
    if estimated is not None and estimated.model_version == model.version and estimated.alert:
        # CBPE's estimate before the labels come (performance.max_estimated_roc_auc_drop)
        reasons.append(f"estimated performance: {estimated.reason}")
    if labelled_now is not None and model.labelled_at_training is not None:
        gained = labelled_now - model.labelled_at_training
        if gained >= policy.new_labels:
            reasons.append(
                f"new labels: {gained} events gained a label since the training set "
                f"(retraining.new_labels = {policy.new_labels})"
            )
    return reasons
