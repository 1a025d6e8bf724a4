"""The columns of a dataset: types, roles, ranges, categories, imputation."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_validator

from ml_assets.spec.base import DUCKDB_TYPES, ColumnType, Role, _Strict


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
