"""The example generator: same seed, same bytes; the planted dirt and drift are there."""

from __future__ import annotations

from datetime import date

import polars as pl

from ml_assets.example_data import DRIFT_START, generate


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    generate(tmp_path / "a", days=3, rows_per_day=200)
    generate(tmp_path / "b", days=3, rows_per_day=200)
    generate(tmp_path / "c", days=3, rows_per_day=200, seed=1)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.csv"))
    assert len(files) == 6
    assert all(
        (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files
    )
    assert (tmp_path / "a/transactions/transactions_2026-09-01.csv").read_bytes() != (
        tmp_path / "c/transactions/transactions_2026-09-01.csv"
    ).read_bytes()


def test_planted_dirt_and_documented_drift(tmp_path):
    start = date(2026, 10, 15)
    generate(tmp_path, start=start, days=4, rows_per_day=3000)
    before = (tmp_path / "transactions/transactions_2026-10-15.csv").read_text(encoding="utf-8")
    lines = before.splitlines()
    assert sum("BAD" in line for line in lines) == 3  # the malformed rows
    good = pl.read_csv(
        (tmp_path / "transactions/transactions_2026-10-15.csv"),
        infer_schema=False,
        truncate_ragged_lines=True,
    ).filter(~pl.col("transaction_id").str.contains("BAD"))
    assert good["transaction_id"].is_duplicated().sum() > 0
    assert good["amount"].null_count() > 0 and good["device"].null_count() > 0
    assert (good["amount"].cast(pl.Float64) < 0).sum() > 0
    drifted = pl.read_csv(
        tmp_path / f"transactions/transactions_{DRIFT_START}.csv",
        infer_schema=False,
        truncate_ragged_lines=True,
    )
    assert "crypto_exchange" not in set(good["merchant_category"]) and "crypto_exchange" in set(
        drifted["merchant_category"]
    )
    chargebacks = pl.read_csv(tmp_path / "chargebacks/chargebacks_2026-10-18.csv")
    assert set(chargebacks.columns) == {
        "chargeback_id",
        "transaction_id",
        "reported_at",
        "reason_code",
    }
    assert len(chargebacks) > 0 and all(t[1:9] < "20261018" for t in chargebacks["transaction_id"])
