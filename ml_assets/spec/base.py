"""What every part of the spec shares: strict models, the error, the type tables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

SPEC_ENV_VAR = "ML_ASSETS_SPEC"
DEFAULT_SPEC_PATH = Path(__file__).parent.parent / "specs" / "transactions.yaml"

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
    "label",  # the 0/1 target in the event file (labels.available_after_days says when known)
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
