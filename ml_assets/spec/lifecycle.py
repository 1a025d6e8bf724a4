"""Lifecycle policies: retraining, retention, backup and per-day freshness."""

from __future__ import annotations

from pydantic import Field, model_validator

from ml_assets.spec.base import _Strict


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
    # snapshots of `backup.folder` (folders and .tar.gz) taken more than this many days ago;
    # they hold what the other periods removed since, so a short period here keeps those
    # promises within days (`backup.keep` bounds how many, this how old)
    backups_days: int | None = Field(None, ge=1)
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


class MLflow(_Strict):
    """Mirror every model version to MLflow (ml_assets/storage/mlflow_mirror.py); MLFLOW_TRACKING_URI
    overrides `tracking_uri`. Our registry stays the source of truth."""

    tracking_uri: str | None = None
    # default: the dataset's name, for both
    experiment: str | None = None
    registered_model: str | None = None
