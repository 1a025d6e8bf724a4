"""Table checks every stage runs on what it writes: schema, null rates, id uniqueness, ranges.

No Dagster here: each check returns a `CheckOutcome`; the assets turn them into check results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

CHECK_NAMES = ("schema", "null_rates", "unique_id", "value_ranges")


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def schema_check(frame: pl.DataFrame, expected: dict[str, pl.DataType]) -> CheckOutcome:
    actual = dict(frame.schema)
    missing = [c for c in expected if c not in actual]
    wrong = {
        c: f"{actual[c]} (expected {t})"
        for c, t in expected.items()
        if c in actual and actual[c] != t
    }
    passed = not missing and not wrong
    desc = "columns and types as expected" if passed else f"missing {missing}, wrong types {wrong}"
    return CheckOutcome(
        "schema", passed, desc, {"missing": str(missing), "wrong_types": str(wrong)}
    )


MAX_DAYS_NAMED = 10


def null_rate_check(
    frame: pl.DataFrame, max_null_rate: dict[str, float], day_column: str | None = None
) -> CheckOutcome:
    """Null rates against their limits; with `day_column`, each day on its own (a range run's
    average would hide the days over the limit) and the failing days named."""
    columns = [c for c in max_null_rate if c in frame.columns]
    n = max(1, len(frame))
    rates = {c: frame[c].null_count() / n for c in columns}
    if day_column is None or day_column not in frame.columns or frame.is_empty():
        over = {c: round(r, 4) for c, r in rates.items() if r > max_null_rate[c]}
        desc = "null rates within limits" if not over else f"null rate over limit in {over}"
        return CheckOutcome(
            "null_rates",
            not over,
            desc,
            {"worst_null_rate": max(rates.values(), default=0.0), "over_limit": str(over)},
        )
    day = pl.col(day_column).cast(pl.Date)
    first, last, timeless = frame.select(
        day.min().alias("first"), day.max().alias("last"), day.null_count().alias("timeless")
    ).row(0)
    if first == last and timeless == 0:
        # one day: its rates are the run's (the group_by gathered every column again: +0.6 GB
        # at 5M rows)
        per_day = pl.DataFrame([{"_day": first, **rates}])
    else:
        per_day = (
            frame.group_by(day.alias("_day"))
            .agg([(pl.col(c).null_count() / pl.len()).alias(c) for c in columns])
            .sort("_day")
        )
    failing = []
    for row in per_day.iter_rows(named=True):
        over = {c: round(row[c], 4) for c in columns if row[c] > max_null_rate[c]}
        if over:
            failing.append((row["_day"], over))
    days = len(per_day)
    worst = (
        max((max(row[c] for c in columns) for row in per_day.iter_rows(named=True)), default=0.0)
        if columns
        else 0.0
    )
    if not failing:
        desc = f"null rates within limits on each of {days} day(s)"
    else:
        named = "; ".join(f"{d} {over}" for d, over in failing[:MAX_DAYS_NAMED])
        more = f" (+{len(failing) - MAX_DAYS_NAMED} more)" if len(failing) > MAX_DAYS_NAMED else ""
        desc = f"null rate over limit on {len(failing)} of {days} day(s): {named}{more}"
    return CheckOutcome(
        "null_rates",
        not failing,
        desc,
        {
            "worst_null_rate": worst,
            "failing_days": [str(d) for d, _ in failing],
            "null_rates_over_the_run": {c: round(r, 4) for c, r in rates.items()},
        },
    )


def unique_check(frame: pl.DataFrame, column: str | None) -> CheckOutcome:
    if column is None:
        return CheckOutcome("unique_id", True, "no id column in this table")
    dupes = len(frame) - frame[column].n_unique()
    return CheckOutcome(
        "unique_id", dupes == 0, f"{dupes} duplicate {column} values", {"duplicates": dupes}
    )


def range_check(
    frame: pl.DataFrame,
    ranges: dict[str, tuple[float | None, float | None]],
    allowed: dict[str, list[str]] | None = None,
) -> CheckOutcome:
    bad: dict[str, int] = {}
    for c, (low, high) in ranges.items():
        if c not in frame.columns:
            continue
        expr = pl.lit(False)
        if low is not None:
            expr = expr | (pl.col(c) < low)
        if high is not None:
            expr = expr | (pl.col(c) > high)
        count = int(frame.select(expr.fill_null(False).sum()).item())
        if count:
            bad[c] = count
    for c, values in (allowed or {}).items():
        if c in frame.columns:
            count = int(frame.select((~pl.col(c).is_in(values)).fill_null(False).sum()).item())
            if count:
                bad[c] = count
    desc = "all values in range" if not bad else f"values out of range: {bad}"
    return CheckOutcome("value_ranges", not bad, desc, {"out_of_range": str(bad)})


def table_checks(
    frame: pl.DataFrame,
    expected_schema: dict[str, pl.DataType],
    max_null_rate: dict[str, float],
    id_column: str | None,
    ranges: dict[str, tuple[float | None, float | None]],
    allowed: dict[str, list[str]] | None = None,
    day_column: str | None = None,
) -> list[CheckOutcome]:
    """The four checks; `day_column` judges the null rates day by day (see null_rate_check)."""
    return [
        schema_check(frame, expected_schema),
        null_rate_check(frame, max_null_rate, day_column),
        unique_check(frame, id_column),
        range_check(frame, ranges, allowed),
    ]
