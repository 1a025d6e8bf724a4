"""Where each asset's rows live in the warehouse: one schema per lifecycle stage."""

from __future__ import annotations

from dataclasses import dataclass

from ml_assets.spec import Column, DatasetSpec, LandingFiles


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
        self.ground_truth = f"labels.{n}_ground_truth"
        self.labels = f"labels.{n}"
        self.weak_votes = f"labels.{n}_weak_votes"
        self.annotation_queue = f"labels.{n}_annotation_queue"
        self.features = f"features.{n}"
        self.training_set = "models.training_set"
        self.predictions = f"predictions.{n}"
        self.drift_columns = "monitor.drift_columns"
        self.drift_days = "monitor.drift_days"


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


def landing_areas(spec: DatasetSpec) -> list[LandingArea]:
    """The events' landing area, then the label files' (partitioned by when a label was reported)."""
    t, lab = Tables(spec), spec.labels
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
        ),
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
        ),
    ]
