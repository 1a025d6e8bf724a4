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
    # timestamp/date columns: the strptime format of the values in the landing files (e.g.
    # "%d/%m/%Y %H:%M", "%Y-%m-%dT%H:%M:%S%z"). Unset, a timestamp takes what common exports
    # write: "2024-01-31 13:45:00", a "T" for the space, fractional seconds, a "Z" or "+hh:mm"
    # offset (converted to partitions.timezone; no offset means that timezone) or a date alone.
    format: str | None = None

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(
                f"column name {name!r} must be letters, digits and underscores, not starting with a digit"
            )
        return name

    @model_validator(mode="before")
    @classmethod
    def _bool_categories(cls, data):
        # YAML reads `[true, false]` (and yes/no) as booleans: a bool column's categories are
        # its words; on another column they were meant as text and must be quoted
        categories = data.get("categories") if isinstance(data, dict) else None
        if not isinstance(categories, list) or not any(isinstance(v, bool) for v in categories):
            return data
        if data.get("type") != "bool":
            raise ValueError(
                f"column {data.get('name')!r}: categories {categories} hold YAML booleans (yes, no, "
                "true, false, on, off unquoted): quote them, e.g. ['yes', 'no']"
            )
        return {
            **data,
            "categories": [str(v).lower() if isinstance(v, bool) else v for v in categories],
        }

    @model_validator(mode="after")
    def _range_only_numeric(self) -> Column:
        if self.range is not None and self.type not in ("int", "float"):
            raise ValueError(f"column {self.name!r}: range is only allowed on int/float columns")
        if self.categories is not None and self.type not in ("string", "bool"):
            raise ValueError(
                f"column {self.name!r}: categories are only allowed on string and bool columns"
            )
        if self.type == "bool" and self.categories is not None:
            wrong = [c for c in self.categories if c not in ("true", "false")]
            if wrong:
                raise ValueError(
                    f"column {self.name!r}: a bool column's categories are true and false, not "
                    f"{wrong} (the files may write true/false, t/f, 1/0 or yes/no)"
                )
        if self.format is not None:
            if self.type not in ("timestamp", "date"):
                raise ValueError(
                    f"column {self.name!r}: format is only allowed on timestamp and date columns"
                )
            _check_strptime_format(self.name, self.format)
        return self

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.type]

    @property
    def is_bool_category(self) -> bool:
        """A bool column used as a category: read as a bool (true/false, t/f, 1/0, yes/no) and
        kept as the words 'true' and 'false', as every other category is a string."""
        return self.type == "bool" and (self.role == "categorical" or self.categories is not None)

    @property
    def table_type(self) -> ColumnType:
        """The type of the column in the tables (raw onwards)."""
        return "string" if self.is_bool_category else self.type


def _check_strptime_format(name: str, fmt: str) -> None:
    """Refuse a format the parser would refuse, at spec load rather than at the first file."""
    import duckdb

    if "%" not in fmt:
        raise ValueError(f"column {name!r}: format {fmt!r} has no %-directive (e.g. %Y-%m-%d)")
    try:
        duckdb.sql("SELECT try_strptime('', ?)", params=[fmt]).fetchall()
    except duckdb.Error as err:
        raise ValueError(
            f"column {name!r}: format {fmt!r} is not a strptime format ({err}); "
            "see https://duckdb.org/docs/sql/functions/dateformat"
        ) from None
