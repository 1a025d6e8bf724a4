"""The Delta Lake warehouse (cluster profile) on a local folder: window writes, schema changes,
missing tables, a writer killed between two tables, and concurrent writers of one table."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta

import polars as pl
import pytest

pytest.importorskip(
    "deltalake", reason="the cluster extra is not installed: pip install -e '.[cluster]'"
)

from ml_assets.storage.base import MissingTableError  # noqa: E402
from ml_assets.storage.delta_lake import DeltaWarehouse, LakeSchemaError  # noqa: E402

DAY = datetime(2026, 9, 1)


def events(day: int, n: int, **extra) -> pl.DataFrame:
    start = DAY + timedelta(days=day)
    frame = pl.DataFrame(
        {
            "id": [f"{day}-{i}" for i in range(n)],
            "event_time": [start + timedelta(minutes=i) for i in range(n)],
            "amount": [float(i) for i in range(n)],
        },
        schema={"id": pl.String, "event_time": pl.Datetime("us"), "amount": pl.Float64},
    )
    return frame.with_columns(**{k: pl.lit(v) for k, v in extra.items()})


def put(lake: DeltaWarehouse, table: str, day: int, frame: pl.DataFrame) -> None:
    start = DAY + timedelta(days=day)
    lake.replace_time_range(table, frame, "event_time", start, start + timedelta(days=1))


def per_day(lake: DeltaWarehouse, table: str) -> dict:
    rows = lake.read(
        f"SELECT CAST(event_time AS DATE) AS day, count(*) AS n FROM {table} GROUP BY 1 ORDER BY 1"
    )
    return {d.day: n for d, n in rows.iter_rows()}


@pytest.fixture
def lake(tmp_path) -> DeltaWarehouse:
    return DeltaWarehouse(root=str(tmp_path / "lake"))


def test_a_window_write_replaces_that_window_only(lake):
    put(lake, "raw.t", 0, events(0, 3))
    put(lake, "raw.t", 1, events(1, 4))
    put(lake, "raw.t", 0, events(0, 2))  # a re-run of day 0 with fewer rows
    assert per_day(lake, "raw.t") == {1: 2, 2: 4}
    put(lake, "raw.t", 1, events(1, 0))  # an empty day empties its window
    assert per_day(lake, "raw.t") == {1: 2}
    with pytest.raises(ValueError, match="outside"):
        put(lake, "raw.t", 0, events(1, 1))
    assert per_day(lake, "raw.t") == {1: 2}


def test_tables_are_partitioned_by_day_and_a_day_rewrites_only_its_own_files(lake):
    """A backfill run writes several days at once; a later run of one of them replaces that
    day's files only (so writers of other days never touch the same files), and readers never
    see the partition column."""
    from deltalake import DeltaTable

    three = pl.concat([events(d, 3) for d in range(3)])
    lake.replace_time_range("raw.t", three, "event_time", DAY, DAY + timedelta(days=3))
    table = DeltaTable(lake.uri("raw.t"))
    assert table.metadata().partition_columns == ["_day"]
    before = set(table.file_uris())
    assert len(before) == 3  # one file a day, though one write wrote them
    put(lake, "raw.t", 1, events(1, 5))
    after = set(DeltaTable(lake.uri("raw.t")).file_uris())
    assert len(before - after) == 1 and len(before & after) == 2
    assert per_day(lake, "raw.t") == {1: 3, 2: 5, 3: 3}
    assert lake.read("SELECT * FROM raw.t LIMIT 1").columns == ["id", "event_time", "amount"]
    assert lake.columns()["raw.t"] == ["id", "event_time", "amount"]


def test_reads_run_duckdb_sql_over_several_tables(lake):
    put(lake, "raw.t", 0, events(0, 3))
    lake.replace_table("monitor.days", pl.DataFrame({"id": ["0-1"], "flag": [True]}))
    joined = lake.read(
        'SELECT t.id, d.flag FROM "raw"."t" AS t JOIN monitor.days d ON t.id = d.id WHERE t.amount > $low',
        {"low": 0.5, "unused": 1},
    )
    assert joined.rows() == [("0-1", True)]
    assert lake.exists("raw.t") and not lake.exists("raw.nothing")
    assert lake.read_if_exists("raw.nothing", "SELECT * FROM raw.nothing") is None
    with pytest.raises(MissingTableError, match="raw.nothing.*materialize"):
        lake.read("SELECT * FROM raw.nothing")


def test_a_newer_version_adds_columns_and_a_changed_one_is_refused(lake):
    put(lake, "raw.t", 0, events(0, 2))
    put(lake, "raw.t", 1, events(1, 2, channel="web"))  # a column added at the end
    rows = lake.read("SELECT event_time, channel FROM raw.t ORDER BY event_time")
    assert rows["channel"].to_list() == [None, None, "web", "web"]
    # a column of nulls takes the stored column's type (a float here, not the string default)
    put(lake, "raw.t", 2, events(2, 1).with_columns(channel=pl.lit(None)))
    assert per_day(lake, "raw.t")[3] == 1
    put(lake, "raw.t", 3, events(3, 1).with_columns(amount=pl.lit(None), channel=pl.lit("x")))
    stored = lake.read("SELECT amount FROM raw.t WHERE CAST(event_time AS DATE) = '2026-09-04'")
    assert stored.schema["amount"] == pl.Float64 and stored["amount"].to_list() == [None]
    with pytest.raises(LakeSchemaError, match=r"raw\.t has columns .* re-materialize"):
        put(lake, "raw.t", 4, events(4, 1).select("amount", "id", "event_time"))


def test_whole_table_replacement_takes_the_new_columns(lake):
    lake.replace_table("models.info", pl.DataFrame({"a": [1, 2]}))
    lake.replace_tables({"models.info": pl.DataFrame({"b": ["x"]})})
    assert lake.read("SELECT * FROM models.info").rows() == [("x",)]


KILLED_WRITER = """
import os, signal, sys
from datetime import datetime, timedelta
import polars as pl
import ml_assets.storage.delta_lake as lake_module
from ml_assets.storage.delta_lake import DeltaWarehouse

lake = DeltaWarehouse(root=sys.argv[1])
first = lake_module.DeltaWarehouse._write
calls = []

def write_then_die(self, table, frame, predicate, **kwargs):
    if calls:  # killed after the first table's commit, before the second's
        os.kill(os.getpid(), signal.SIGKILL)
    calls.append(table)
    first(self, table, frame, predicate, **kwargs)

lake_module.DeltaWarehouse._write = write_then_die
day = datetime(2026, 9, 1)
rows = pl.DataFrame({"id": ["new"], "event_time": [day]})
log = pl.DataFrame({"day": [day], "file": ["new.csv"]})
lake.replace_time_ranges([
    ("raw.t", rows, "event_time", day, day + timedelta(days=1)),
    ("raw.t_files", log, "day", day, day + timedelta(days=1)),
])
"""


def test_a_writer_killed_between_two_tables_is_repaired_by_the_rerun(lake, tmp_path):
    day = DAY
    writes = [
        ("raw.t", pl.DataFrame({"id": ["old"], "event_time": [day]}), "event_time"),
        ("raw.t_files", pl.DataFrame({"day": [day], "file": ["old.csv"]}), "day"),
    ]
    end = day + timedelta(days=1)
    lake.replace_time_ranges([(t, f, c, day, end) for t, f, c in writes])
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_WRITER), lake.root],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    # each table is whole (its old window or its new one, never a mix) ...
    assert lake.read("SELECT id FROM raw.t").rows() == [("new",)]
    assert lake.read("SELECT file FROM raw.t_files").rows() == [("old.csv",)]
    # ... and the files log, written last, still says the new file was not taken: the run
    # failed, and its re-run replaces both windows again
    rerun = [
        ("raw.t", pl.DataFrame({"id": ["new"], "event_time": [day]}), "event_time"),
        ("raw.t_files", pl.DataFrame({"day": [day], "file": ["new.csv"]}), "day"),
    ]
    lake.replace_time_ranges([(t, f, c, day, end) for t, f, c in rerun])
    assert lake.read("SELECT id FROM raw.t").rows() == [("new",)]
    assert lake.read("SELECT file FROM raw.t_files").rows() == [("new.csv",)]


def _write_days(root: str, days: list[int]) -> None:
    lake = DeltaWarehouse(root=root)
    for day in days:
        put(lake, "raw.t", day, events(day, 50))


def test_two_processes_writing_different_days_of_one_table_lose_nothing(lake):
    put(lake, "raw.t", 0, events(0, 50))  # the table exists before the writers start
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_write_days, args=(lake.root, list(range(1, 12, 2)))),
        context.Process(target=_write_days, args=(lake.root, list(range(2, 13, 2)))),
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    assert [w.exitcode for w in writers] == [0, 0]
    assert per_day(lake, "raw.t") == {d: 50 for d in range(1, 14)}
    duplicated = lake.read("SELECT id FROM raw.t GROUP BY id HAVING count(*) > 1")
    assert duplicated.is_empty()
