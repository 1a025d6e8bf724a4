"""Data-quality changes seen for what they are: a missing share that jumps on a known day and a
category the spec does not list, on generated loans, through the whole graph."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.materialize import run_graph
from ml_assets.storage.registry import current_version, load_card
from ml_assets_tests import loans
from ml_assets_tests.conftest import TEST_KEY

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS = 60
JUMP = loans.START + timedelta(days=40)  # a third of income missing from here (2 % before)
NEW = (loans.START + timedelta(days=45), loans.START + timedelta(days=46))  # purpose "crypto"


def at(day) -> datetime:
    return datetime.combine(day, datetime.min.time())


@pytest.fixture(scope="module")
def quality_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    data = root / "data"
    loans.write_loans(data, days=DAYS, missing_from=JUMP, new_category_days=NEW)
    spec = loans.loans_spec(
        root / "loans.yaml",
        days=DAYS,
        labels={"name": "repayments", "available_after_days": 5},
        training={
            "window": "fixed",
            "start": loans.START.isoformat(),
            "end": (loans.START + timedelta(days=30)).isoformat(),
            "gap_days": 0,
            "validation_days": 7,
            "test_days": 7,
            "tuning_candidates": 1,
            "bootstrap_samples": 20,
        },
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ML_ASSETS_SPEC", str(spec))
        mp.setenv("ML_ASSETS_DATA_DIR", str(data))
        mp.setenv("ML_ASSETS_PSEUDONYM_KEY", TEST_KEY)
        defs = build_definitions()
        with dg.DagsterInstance.ephemeral() as instance:
            first, last = (
                loans.START.isoformat(),
                (loans.START + timedelta(days=DAYS - 1)).isoformat(),
            )
            results = run_graph(defs, instance, first, last, log=lambda _: None)
            assert all(r.success for r in results)
            yield data, results


def read(data, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(sql).pl()


def metadata_of(results, asset: str) -> dict:
    """The metadata of a range run's materialization (each day's event carries the run's)."""
    events = [
        e
        for r in results
        for e in r.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(asset)
    ]
    return events[-1].materialization.metadata


def test_cleaning_counts_are_per_day_and_name_the_raw_values_behind_other(quality_run):
    data, results = quality_run
    imputed = read(
        data,
        "SELECT day, rows FROM cleaned.loans_cleaning_days WHERE rule = 'imputed' AND \"column\" = 'income' ORDER BY day",
    )
    rows_in = read(
        data,
        "SELECT day, rows FROM cleaned.loans_cleaning_days WHERE rule = 'rows_in' ORDER BY day",
    )
    share = imputed.join(rows_in, on="day", suffix="_in").with_columns(
        share=pl.col("rows") / pl.col("rows_in")
    )
    assert len(share) == DAYS
    before, after = share.filter(pl.col("day") < at(JUMP)), share.filter(pl.col("day") >= at(JUMP))
    assert before["share"].max() < 0.08 and after["share"].min() > 0.2
    unknown = read(
        data, 'SELECT day, "column", mapped_to, raw_value, rows FROM cleaned.loans_unknown_values'
    )
    assert sorted(set(unknown["day"].to_list())) == [at(d) for d in NEW]
    assert set(unknown["raw_value"]) == {"crypto"} and set(unknown["mapped_to"]) == {"other"}
    assert unknown["rows"].min() > 5
    meta = metadata_of(results, "cleaned_loans")
    assert "crypto (" in meta["unknown_category_values"].value
    # the metadata tells the run's newest days (Dagster copies it onto each day's event); every
    # day is in the tables read above
    per_day = meta["changes_per_day"].value
    newest = loans.START + timedelta(days=DAYS - 1)
    assert f"| {newest} |" in per_day and "imputed income" in per_day
    assert str(JUMP) not in per_day
    assert f"{DAYS - 7} earlier day(s) of this run: in `cleaned.loans_cleaning_days`" in per_day


def test_a_range_run_judges_null_rates_day_by_day_and_names_the_failing_days(quality_run):
    data, results = quality_run
    (check,) = {
        c.description: c
        for r in results
        for c in r.get_asset_check_evaluations()
        if c.asset_key == dg.AssetKey("raw_loans") and c.check_name == "null_rates"
    }.values()
    # over the whole range the share is about 13 %, under the 20 % limit; 20 single days are over
    overall = check.metadata["null_rates_over_the_run"].data["income"]
    assert 0.08 < overall < 0.2
    assert not check.passed
    failing = check.metadata["failing_days"].data
    assert failing[0] == str(JUMP) and len(failing) == DAYS - 40
    assert f"null rate over limit on {DAYS - 40} of {DAYS} day(s): {JUMP}" in check.description


def test_drift_sees_the_missing_share_before_imputation_and_names_the_new_raw_values(quality_run):
    data, _ = quality_run
    card = load_card(data / "models", current_version(data / "models"))
    assert 0.0 < card["missing_before_imputation"]["income"] < 0.06
    income = read(
        data,
        "SELECT day, drifted, why, missing_rate_current FROM monitor.loans_drift_columns "
        "WHERE \"column\" = 'income' ORDER BY day",
    )
    after = income.filter(pl.col("day") >= at(JUMP))
    assert after["missing_rate_current"].min() > 0.2 and after["drifted"].all()
    assert after["why"].str.contains("missing rate").all()
    before = income.filter(
        (pl.col("day") >= at(loans.START + timedelta(days=30))) & (pl.col("day") < at(JUMP))
    )
    assert not before["why"].str.contains("missing rate").any()
    purpose = read(
        data,
        "SELECT day, unknown_raw_values FROM monitor.loans_drift_columns WHERE \"column\" = 'purpose' ORDER BY day",
    )
    named = purpose.filter(pl.col("unknown_raw_values") != "")
    assert named["day"].to_list() == [at(d) for d in NEW]
    assert named["unknown_raw_values"].str.starts_with("other <- crypto (").all()
    page = (data / "reports" / f"drift_{NEW[0]}.html").read_text()
    assert "other &lt;- crypto (" in page or "other <- crypto (" in page
