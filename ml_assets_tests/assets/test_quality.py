"""Table checks, the refuse-before-write guard, and all-or-nothing warehouse writes."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from ml_assets.definitions import build_definitions
from ml_assets.metadata import BlockingCheckFailed, refuse_if_blocking_failed
from ml_assets.settings import Settings
from ml_assets.storage.arrow import for_duckdb
from ml_assets.storage.assembly import build_warehouse
from ml_assets.storage.duckdb_file import DuckDBWarehouse
from ml_assets.transforms.quality import (
    null_rate_check,
    range_check,
    schema_check,
    table_checks,
    unique_check,
)
from ml_assets_tests.conftest import materialize

FRAME = pl.DataFrame({"id": ["a", "b", "b"], "x": [1.0, None, 50.0], "c": ["u", "v", "zz"]})


def test_each_check_passes_and_fails():
    assert schema_check(FRAME, {"id": pl.String, "x": pl.Float64}).passed
    wrong = schema_check(FRAME, {"id": pl.Int64, "y": pl.String})
    assert not wrong.passed and "y" in wrong.description and "Int64" in wrong.description
    assert (
        null_rate_check(FRAME, {"x": 0.5}).passed and not null_rate_check(FRAME, {"x": 0.1}).passed
    )
    assert (
        not unique_check(FRAME, "id").passed
        and unique_check(FRAME, "x").metadata["duplicates"] == 0
    )
    assert unique_check(FRAME, None).passed
    ranges = range_check(FRAME, {"x": (0, 10)}, {"c": ["u", "v"]})
    assert not ranges.passed and "'x': 1" in ranges.description and "'c': 1" in ranges.description
    assert [o.name for o in table_checks(FRAME, {}, {}, "id", {})] == [
        "schema",
        "null_rates",
        "unique_id",
        "value_ranges",
    ]


def test_null_rates_of_one_day_are_judged_as_the_per_day_grouping_would():
    """One day takes a shortcut past the per-day grouping; it must say what the grouping says."""
    day = [datetime(2026, 1, 1, 1), datetime(2026, 1, 1, 2), datetime(2026, 1, 1, 3)]
    one = pl.DataFrame({"t": day, "x": [None, None, 1.0], "y": ["a", None, "b"]})
    limits = {"x": 0.5, "y": 0.5}
    shortcut = null_rate_check(one, limits, "t")
    # a second day of rows under the limit: the grouping then runs, and judges the first day
    both = pl.concat([one, pl.DataFrame({"t": [datetime(2026, 1, 2, 1)], "x": [1.0], "y": ["c"]})])
    grouped = null_rate_check(both, limits, "t")
    assert not shortcut.passed and shortcut.metadata["failing_days"] == ["2026-01-01"]
    assert shortcut.metadata["failing_days"] == grouped.metadata["failing_days"]
    assert shortcut.metadata["worst_null_rate"] == grouped.metadata["worst_null_rate"] == 2 / 3
    assert "2026-01-01 {'x': 0.6667}" in shortcut.description
    assert "on 1 of 1 day(s)" in shortcut.description
    # a row without a time is no day of its own in the shortcut: the grouping counts it apart
    timeless = pl.concat([one, pl.DataFrame({"t": [None], "x": [1.0], "y": ["c"]})])
    assert "on 1 of 2 day(s)" in null_rate_check(timeless, limits, "t").description


def test_strings_cross_between_duckdb_and_polars_as_views(tmp_path, monkeypatch):
    """The warehouse hands polars its strings as Arrow views and takes polars' views as they
    are: a classic Arrow string on either side is a copy of every string column (1.3 GB for a
    5M-row write)."""
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(tmp_path))
    warehouse = build_warehouse(Settings.from_env())
    frame = pl.DataFrame(
        {
            "t": [datetime(2026, 1, 1, 5)] * 3,
            "s": ["short", "a string longer than twelve bytes", None],
        }
    )
    assert for_duckdb(frame).schema.field("s").type == pa.string_view()
    warehouse.replace_time_range("s.a", frame, "t", datetime(2026, 1, 1), datetime(2026, 1, 2))
    with warehouse.get_connection() as conn:
        assert conn.sql("SELECT s FROM s.a").to_arrow_table().schema.field("s").type == (
            pa.string_view()
        )
    assert_frame_equal(warehouse.read("SELECT * FROM s.a"), frame)


def test_blocking_failure_raises_before_write():
    outcomes = table_checks(FRAME, {"id": pl.String}, {"x": 0.0}, "id", {})
    refuse_if_blocking_failed("t", outcomes, blocking={"schema"})  # null rate is not blocking
    with pytest.raises(BlockingCheckFailed, match="unique_id: 1 duplicate id values"):
        refuse_if_blocking_failed("t", outcomes)


def test_writes_in_one_transaction_are_all_or_nothing(tmp_path):
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    day = pl.DataFrame({"t": [datetime(2026, 1, 1, 5)], "v": [1]})
    wh.replace_time_range("s.a", day, "t", datetime(2026, 1, 1), datetime(2026, 1, 2))
    wh.replace_time_range("s.b", day, "t", datetime(2026, 1, 1), datetime(2026, 1, 2))
    changed = pl.DataFrame({"t": [datetime(2026, 1, 1, 6)], "v": [2]})
    other_shape = pl.DataFrame({"t": [datetime(2026, 1, 1, 6)], "w": ["x"]})
    with pytest.raises(ValueError, match="the spec \\(or the code\\) changed under existing data"):
        wh.replace_time_ranges(
            [
                ("s.a", changed, "t", datetime(2026, 1, 1), datetime(2026, 1, 2)),
                ("s.b", other_shape, "t", datetime(2026, 1, 1), datetime(2026, 1, 2)),
            ]
        )
    assert wh.read("SELECT v FROM s.a")["v"].to_list() == [1]  # the first write was rolled back
    with pytest.raises(ValueError, match="outside"):
        wh.replace_time_range("s.a", changed, "t", datetime(2026, 1, 2), datetime(2026, 1, 3))


def test_raw_rows_keep_the_files_order_after_writes_free_to_reorder_theirs(tmp_path):
    """Only raw tables are inserted in order; DuckDB's setting is global to the process's
    database (alive while any connection to it is open), so a later read of raw (cleaning keeps
    the first row of a repeated id) must find it back at its default."""
    path = tmp_path / "w.duckdb"
    wh = DuckDBWarehouse(database=str(path))
    day = (datetime(2026, 1, 1), datetime(2026, 1, 2))
    ids = [f"id{i:06d}" for i in range(300_000)][::-1]  # not sorted: an order only the file gives
    rows = pl.DataFrame({"t": [datetime(2026, 1, 1, 5)] * len(ids), "id": ids})
    # another user of the database in this process, as the warehouse connects
    held = duckdb.connect(str(path), config={"custom_user_agent": "dagster"})
    try:
        wh.replace_time_range("raw.x", rows, "t", *day)
        wh.replace_time_range("cleaned.x", rows, "t", *day)  # this write may reorder its rows
        setting = held.sql("SELECT current_setting('preserve_insertion_order')").fetchall()
        assert setting == [(True,)]
        assert wh.read("SELECT id FROM raw.x WHERE t >= $s", {"s": day[0]})["id"].to_list() == ids
    finally:
        held.close()


def test_a_newer_version_writing_more_columns_adds_them_and_keeps_the_old_rows(tmp_path):
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    old = pl.DataFrame({"t": [datetime(2026, 1, 1, 5)], "v": [1]})
    wh.replace_time_range("s.a", old, "t", datetime(2026, 1, 1), datetime(2026, 1, 2))
    new = pl.DataFrame({"t": [datetime(2026, 1, 2, 5)], "v": [2], "source": ["x"]})
    wh.replace_time_range("s.a", new, "t", datetime(2026, 1, 2), datetime(2026, 1, 3))
    rows = wh.read("SELECT v, source FROM s.a ORDER BY t").rows()
    assert rows == [(1, None), (2, "x")]


@pytest.mark.integration
def test_cleaned_refuses_to_write_rows_that_fail_a_blocking_check(example_env, monkeypatch):
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        materialize(
            defs, "key:raw_transactions or key:cleaned_transactions", instance, "2026-09-01"
        )
        import ml_assets.defs.clean.assets as clean_assets

        real_clean = clean_assets.clean_by_day

        def clean_with_duplicates(*args, **kwargs):
            frame, *rest = real_clean(*args, **kwargs)
            return pl.concat([frame, frame.head(3)]), *rest

        monkeypatch.setattr(clean_assets, "clean_by_day", clean_with_duplicates)
        defs = build_definitions()
        result = materialize(
            defs, "cleaned_transactions", instance, "2026-09-01", raise_on_error=False
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert (
        "blocking check(s) failed, nothing was written"
        in failure.event_specific_data.user_failure_data.description
    )
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    dupes = con.sql(
        "SELECT count(*) - count(DISTINCT transaction_id) FROM cleaned.transactions"
    ).fetchall()[0][0]
    con.close()
    assert dupes == 0


def test_reading_a_table_that_was_never_materialized_says_so(tmp_path):
    from ml_assets.storage.base import MissingTableError

    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    with pytest.raises(MissingTableError, match="has not been materialized yet"):
        wh.read("SELECT * FROM cleaned.transactions")
