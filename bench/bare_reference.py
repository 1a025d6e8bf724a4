"""A bare reference for the daily path's first three stages: what a person would write by hand
to do one example day's raw -> cleaned -> features work, with no Dagster, no checks, no
provenance, no archive, no quarantine, no metadata. Plain polars, with DuckDB's CSV reader for the
typed read and its rejected lines.

`bench/bench_pipeline.py` runs it beside the assets on the same day and reports the ratio per
stage; `ml_assets_tests/integration/test_bare_reference.py` checks that its output equals the
assets' on a small day (same rows, same values), so it keeps measuring the same work.

The rules are the example spec's (`ml_assets/specs/transforms.yaml`), read from the spec object
rather than written out again: its columns, categories, ranges, imputation and rolling windows.
Everything else is written here from scratch.

Stages, each reading the previous one's Parquet file as the assets read the previous table:
- raw: read the CSV typed (ragged and unparseable lines set aside), reject rows with a required
  value missing or a time outside the day, replace personal columns by keyed BLAKE2b pseudonyms;
- cleaned: first row per id, NaN/infinite and out-of-range numbers to null, categories mapped
  (spaces, invisible characters, NFKC, case, accents) or to the unknown category, missing values
  imputed (median, constant);
- features: per row the numeric and categorical inputs, hour and weekday; per entity over 7 days
  of history, the count and sums over each rolling window [t - w, t) and seconds since the
  previous event.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from ml_assets.spec import DatasetSpec

_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_DURATIONS = {"h": 3600, "d": 86400, "m": 60, "s": 1}


def raw_day(spec: DatasetSpec, csv: Path, day: datetime, key: str) -> pl.DataFrame:
    """One landing file's rows, typed, with the row rules applied and personal values pseudonymized."""
    types = {c.name: c.duckdb_type for c in spec.columns}
    columns = "{" + ", ".join(f"'{n}': '{t}'" for n, t in types.items()) + "}"
    con = duckdb.connect()
    rows = con.sql(
        f"SELECT * FROM read_csv('{csv}', header=true, columns={columns}, auto_detect=false, "
        "strict_mode=true, store_rejects=true, null_padding=false)"
    ).pl()
    con.close()
    required = [c.name for c in spec.columns if not c.nullable]
    t = spec.event_time_column
    rows = rows.filter(
        pl.all_horizontal(pl.col(required).is_not_null())
        & (pl.col(t) >= day)
        & (pl.col(t) < day + timedelta(days=1))
    )
    key_bytes = hashlib.sha256(key.encode()).digest()
    personal = [c.name for c in spec.columns if c.role == "personal"]
    rows = rows.with_columns(
        pl.col(n).replace_strict(
            {
                v: hashlib.blake2b(v.encode(), key=key_bytes, digest_size=12).hexdigest()
                for v in rows[n].drop_nulls().unique().to_list()
            },
            default=None,
            return_dtype=pl.String,
        )
        for n in personal
    )
    return rows.with_columns(_source_file=pl.lit(csv.name))


def _category(value: str, categories: list[str]) -> str | None:
    """The category `value` means after trimming, invisible characters, NFKC, case, accents."""
    v = _INVISIBLE.sub("", value.strip()).strip()
    v = unicodedata.normalize("NFKC", v).strip()
    if v in categories:
        return v
    folded = {c.casefold(): c for c in categories}
    if v.casefold() in folded:
        return folded[v.casefold()]

    def bare(s: str) -> str:
        return "".join(
            ch for ch in unicodedata.normalize("NFKD", s) if not unicodedata.combining(ch)
        ).casefold()

    return {bare(c): c for c in categories}.get(bare(v))


def cleaned_day(spec: DatasetSpec, raw: pl.DataFrame) -> pl.DataFrame:
    """The day's raw rows cleaned by the spec's rules."""
    rows = raw.filter(pl.col(spec.id_column).is_first_distinct())
    fixes = []
    for c in spec.columns:
        x = pl.col(c.name)
        if c.categories is not None:
            mapping = {
                v: _category(v, list(c.categories)) or c.unknown_category
                for v in rows[c.name].drop_nulls().unique().to_list()
            }
            fixes.append(x.replace_strict(mapping, default=None, return_dtype=pl.String))
        elif c.type == "float" and c.range is not None:
            bad = x.is_nan() | x.is_infinite() | (x < c.range.min) | (x > c.range.max)
            fixes.append(pl.when(bad).then(None).otherwise(x).alias(c.name))
    rows = rows.with_columns(fixes)
    fills = []
    for c in spec.columns:
        if c.impute.strategy == "median":
            fills.append(pl.col(c.name).fill_null(rows[c.name].median()))
        elif c.impute.strategy == "constant":
            fills.append(pl.col(c.name).fill_null(pl.lit(c.impute.value)))
    return rows.with_columns(fills)


def _seconds(window: str) -> int:
    return int(window[:-1]) * _DURATIONS[window[-1]]


def features_day(spec: DatasetSpec, history: pl.DataFrame, day: datetime) -> pl.DataFrame:
    """Features of `day`'s events; `history` holds that day and the days before it.

    The rolling windows come from one sort by (entity, time): an event's window [t - w, t) in
    that order is the run of its entity's rows from the first at or after t - w up to the first
    at t, found by binary search on (entity number, time); counts are the run's length and sums
    differences of a per-entity cumulative sum.
    """
    t, e, idc = spec.event_time_column, spec.entity_column, spec.id_column
    sums = list(spec.features.rolling.sum_columns)
    end = day + timedelta(days=1)
    entities = history.filter(pl.col(t) >= day)[e].unique()
    h = (
        history.filter(pl.col(e).is_in(entities.implode()))
        .sort(e, t)
        .with_columns(entity_no=pl.col(e).rank("dense").cast(pl.Int64))
    )
    micros = h[t].dt.epoch("us").to_numpy()
    # (entity, time) as one sortable number: entities 2^40 us (12.7 days) apart, beyond any window
    key = (h["entity_no"].to_numpy() << 40) + (micros - micros.min())
    first_at_t = np.searchsorted(key, key, side="left")
    out = {}
    cums = {c: np.concatenate([[0.0], np.cumsum(h[c].fill_null(0).to_numpy())]) for c in sums}
    for w in spec.features.rolling.windows:
        first_in_window = np.searchsorted(key, key - _seconds(w) * 1_000_000, side="left")
        out[f"{e}_events_{w}"] = pl.Series((first_at_t - first_in_window).astype(np.int32))
        for c in sums:
            total = cums[c][first_at_t] - cums[c][first_in_window]
            out[f"{e}_{c}_sum_{w}"] = pl.Series(np.where(first_at_t > first_in_window, total, 0.0))
    # the entity's last event at an earlier time: the row before the first one at this time
    before = np.maximum(first_at_t - 1, 0)
    entity_no = h["entity_no"].to_numpy()
    same = (first_at_t > 0) & (entity_no[before] == entity_no)
    gap = (micros - micros[before]) / 1e6
    out[f"{e}_seconds_since_previous"] = pl.Series(np.where(same, gap, np.nan)).fill_nan(None)
    h = h.with_columns(**out)
    h = h.filter(pl.col(t) >= day, pl.col(t) < end).with_columns(
        event_hour=pl.col(t).dt.hour().cast(pl.Int8),
        event_weekday=pl.col(t).dt.weekday().cast(pl.Int8),
    )
    return h.select(
        idc,
        pl.col(t).alias("event_time"),
        *spec.numeric_columns,
        "event_hour",
        "event_weekday",
        *out,
        *spec.categorical_columns,
        *spec.sensitive_columns,
    )


def run_day(spec: DatasetSpec, csv: Path, day: datetime, key: str, folder: Path) -> dict:
    """The three stages of `day`, each writing Parquet under `folder`; seconds per stage.

    `folder` must hold `cleaned_<day>.parquet` for the feature history's earlier days.
    """
    import time

    folder.mkdir(parents=True, exist_ok=True)
    seconds = {}
    t0 = time.perf_counter()
    raw_day(spec, csv, day, key).write_parquet(folder / f"raw_{day:%Y-%m-%d}.parquet")
    seconds["raw"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw = pl.read_parquet(folder / f"raw_{day:%Y-%m-%d}.parquet")
    cleaned_day(spec, raw).write_parquet(folder / f"cleaned_{day:%Y-%m-%d}.parquet")
    seconds["cleaned"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    days = [day - timedelta(days=i) for i in range(spec.feature_history_days, -1, -1)]
    files = [folder / f"cleaned_{d:%Y-%m-%d}.parquet" for d in days]
    windowed = [
        spec.id_column,
        spec.event_time_column,
        spec.entity_column,
        *spec.features.rolling.sum_columns,
    ]
    history = pl.concat(
        [pl.read_parquet(f, columns=windowed) for f in files[:-1] if f.exists()]
        + [pl.read_parquet(files[-1])],
        how="diagonal_relaxed",
    )
    features_day(spec, history, day).write_parquet(folder / f"features_{day:%Y-%m-%d}.parquet")
    seconds["features"] = time.perf_counter() - t0
    return seconds
