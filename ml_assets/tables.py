"""Where each asset's rows live in the warehouse: one schema per lifecycle stage."""

from __future__ import annotations

from ml_assets.spec import DatasetSpec


class Tables:
    def __init__(self, spec: DatasetSpec):
        n, lab = spec.name, spec.labels.name
        self.raw = f"raw.{n}"
        self.raw_files = f"raw.{n}_files"
        self.raw_rejected = f"raw.{n}_rejected_rows"
        self.raw_labels = f"raw.{lab}"
        self.raw_labels_files = f"raw.{lab}_files"
        self.raw_labels_rejected = f"raw.{lab}_rejected_rows"
        self.cleaned = f"cleaned.{n}"
        self.labels = f"labels.{n}"
        self.features = f"features.{n}"
        self.training_set = "models.training_set"
        self.predictions = f"predictions.{n}"
        self.drift_columns = "monitor.drift_columns"
        self.drift_days = "monitor.drift_days"
