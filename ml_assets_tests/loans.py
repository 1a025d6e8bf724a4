"""A third test dataset, shaped unlike the example and the readings: loan applications.

Generated here (seeded), not a copy of any public data: about 150-300 rows a day over more than a
year, ISO 8601 times with fractional seconds and `Z` or `+hh:mm` offsets in a timezone with
daylight saving, the label (`defaulted`) a column of the event file known 30 days late, a
boolean category written as exports write it (true/false, yes/no, 1/0), no entity and no personal
columns, a fixed training window, and drift planted in two columns from DRIFT_DAY while the
others stay as they were.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import yaml

START = date(2025, 1, 1)
DAYS = 400
TIMEZONE = "Europe/Berlin"
TRAIN_START, TRAIN_END = date(2025, 1, 1), date(2025, 5, 1)  # the fixed window, end exclusive
DRIFT_DAY = date(2025, 11, 1)
DRIFTED = {"income", "purpose"}  # shifted from DRIFT_DAY; every other input stays as it was
STABLE = {"loan_amount", "term_months", "region", "has_guarantor"}
AVAILABLE_AFTER_DAYS = 30
PURPOSES = ["car", "home", "education", "business", "travel"]
REGIONS = ["north", "south", "east", "west"]
BOOL_WORDS = [("true", "false"), ("yes", "no"), ("1", "0"), ("True", "False")]


def loans_spec(path: Path, days: int = DAYS, **overrides) -> Path:
    """The spec a user of this data writes: nothing here is known to the code."""
    spec = {
        "name": "loans",
        "description": "Loan applications, one row per application, with repayment outcomes.",
        "partitions": {
            "start": START.isoformat(),
            "end": (START + timedelta(days=days)).isoformat(),
            "timezone": TIMEZONE,
        },
        "landing": {"path": "landing/applications", "pattern": "applications_{date}.csv"},
        "columns": [
            {"name": "application_id", "type": "string", "role": "id", "nullable": False},
            {"name": "submitted_at", "type": "timestamp", "role": "event_time", "nullable": False},
            {
                "name": "income",
                "type": "float",
                "role": "numeric",
                "impute": {"strategy": "median"},
            },
            {"name": "loan_amount", "type": "float", "role": "numeric"},
            {"name": "term_months", "type": "int", "role": "numeric"},
            {
                "name": "purpose",
                "type": "string",
                "role": "categorical",
                "categories": PURPOSES,
                "unknown_category": "other",
            },
            {"name": "region", "type": "string", "role": "categorical", "categories": REGIONS},
            {
                "name": "has_guarantor",
                "type": "bool",
                "role": "categorical",
                "categories": [True, False],
            },
            {"name": "defaulted", "type": "int", "role": "label", "nullable": False},
        ],
        "labels": {"name": "repayments", "available_after_days": AVAILABLE_AFTER_DAYS},
        "features": {"time_parts": False},
        "training": {
            "window": "fixed",
            "start": TRAIN_START.isoformat(),
            "end": TRAIN_END.isoformat(),
            "gap_days": 0,
            "validation_days": 21,
            "test_days": 21,
            "tuning_candidates": 2,
            "bootstrap_samples": 50,
        },
        "annotation": {"daily_budget": 0},
        "freshness": {"lookback_days": 7},
        **overrides,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def write_loans(
    data: Path,
    days: int = DAYS,
    seed: int = 5,
    missing_from: date | None = None,
    new_category_days: tuple[date, ...] = (),
) -> None:
    """The landing files of `days` days from START: one CSV per day. Data-quality variants:
    from `missing_from` a third of `income` is missing (2 % before); on `new_category_days` a
    tenth of `purpose` is `crypto`, a value the spec does not list."""
    rng = np.random.default_rng(seed)
    zone = ZoneInfo(TIMEZONE)
    folder = data / "landing/applications"
    folder.mkdir(parents=True, exist_ok=True)
    header = "application_id,submitted_at,income,loan_amount,term_months,purpose,region,has_guarantor,defaulted"
    for i in range(days):
        day = START + timedelta(days=i)
        drifted = day >= DRIFT_DAY
        n = int(rng.integers(150, 301))
        seconds = np.sort(rng.integers(0, 86_400, n))
        millis = rng.integers(0, 1000, n)
        income = rng.lognormal(10.6 + (0.35 if drifted else 0.0), 0.35, n)
        missing = rng.random(n) < (0.33 if missing_from and day >= missing_from else 0.02)
        amount = rng.gamma(4.0, 2500.0, n)
        term = rng.choice([12, 24, 36, 48, 60], n)
        weights = [0.3, 0.25, 0.15, 0.2, 0.1] if not drifted else [0.1, 0.2, 0.15, 0.2, 0.35]
        purpose = rng.choice(PURPOSES, n, p=weights)
        if day in new_category_days:
            purpose = np.where(rng.random(n) < 0.1, "crypto", purpose)
        region = rng.choice(REGIONS, n)
        guarantor = rng.random(n) < 0.3
        risk = (
            -3.0
            + 0.00006 * amount
            - 0.6 * (np.log(income) - 10.6)
            + 0.015 * (term - 36)
            - 0.9 * guarantor
            + 0.6 * (purpose == "business")
        )
        defaulted = rng.random(n) < 1 / (1 + np.exp(-risk))
        lines = [header]
        for j in range(n):
            local = datetime.combine(day, datetime.min.time()) + timedelta(
                seconds=int(seconds[j]), milliseconds=int(millis[j])
            )
            local = local.replace(tzinfo=zone)
            style = j % 3
            if style == 0:  # an offset, as many APIs write
                when = local.isoformat(timespec="milliseconds")
            elif style == 1:  # UTC with a Z
                when = (
                    local.astimezone(ZoneInfo("UTC"))
                    .replace(tzinfo=None)
                    .isoformat(timespec="milliseconds")
                    + "Z"
                )
            else:  # local time, space separator, fractional seconds
                when = local.replace(tzinfo=None).isoformat(sep=" ", timespec="milliseconds")
            yes, no = BOOL_WORDS[j % len(BOOL_WORDS)]
            lines.append(
                ",".join(
                    [
                        f"A{i:03d}{j:04d}",
                        when,
                        "" if missing[j] else f"{income[j]:.2f}",
                        f"{amount[j]:.2f}",
                        str(term[j]),
                        purpose[j],
                        region[j],
                        yes if guarantor[j] else no,
                        str(int(defaulted[j])),
                    ]
                )
            )
        (folder / f"applications_{day}.csv").write_text("\n".join(lines) + "\n")
