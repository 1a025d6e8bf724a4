"""The embedded profile's warehouse: every table in one DuckDB file under the data folder, with
idempotent window writes (a transaction each) and read-only reads for sensors."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from ml_assets.names import RAW_SCHEMA
from ml_assets.storage.arrow import DUCKDB_CONFIG, for_duckdb
from ml_assets.storage.base import (
    MissingTableError,
    SingleWrites,
    WarehouseBusy,
    params_for,
    refuse_rows_outside,
)
from ml_assets.transforms.sql import quote_ident

# The DuckDB file's stem must not equal a schema name ("Ambiguous reference" otherwise).
WAREHOUSE_FILE = "warehouse.duckdb"


def _table_exists(conn, table: str) -> bool:
    """Whether `schema.name` exists on a DuckDB connection (the whole result is fetched: duckdb
    2.0 refuses the next query on a connection with an open result)."""
    schema, name = table.split(".")
    return bool(
        conn.sql(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            params=[schema, name],
        ).fetchall()[0][0]
    )


class DuckDBWarehouse(SingleWrites, DuckDBResource):
    """The DuckDB file every table lives in, with idempotent partition writes.

    Writes replace a time range in one transaction (delete, then insert), so re-materializing a
    partition never duplicates rows and a failed write leaves the earlier rows readable.
    Connections come from dagster-duckdb, which retries while another process holds the lock.
    """

    def table_exists(self, conn, table: str) -> bool:
        return _table_exists(conn, table)

    def _ensure_table(self, conn, table: str, frame: pl.DataFrame, view: str = "_incoming") -> None:
        schema, _ = table.split(".")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {view} LIMIT 0")
        existing = [r[0] for r in conn.sql(f"DESCRIBE {table}").fetchall()]
        if existing == frame.columns:
            return
        if frame.columns[: len(existing)] == existing:
            # new columns at the end (a newer version writes more): add them, older rows get NULL
            types = dict(
                conn.sql(f"SELECT column_name, column_type FROM (DESCRIBE {view})").fetchall()
            )
            for column in frame.columns[len(existing) :]:
                conn.execute(
                    f"ALTER TABLE {table} ADD COLUMN {quote_ident(column)} {types[column]}"
                )
            return
        raise ValueError(
            f"table {table} has columns {existing} but the new rows have {frame.columns}; "
            f"the spec (or the code) changed under existing data: drop the table (`DROP TABLE {table}` "
            f"in {self.database}) and re-materialize, restore the old spec, or start afresh with "
            "`make clean-data`"
        )

    def replace_time_ranges(
        self, writes: Sequence[tuple[str, pl.DataFrame, str, datetime, datetime]]
    ) -> None:
        """Several `replace_time_range` writes in one transaction: all of them happen, or none."""
        refuse_rows_outside(writes)
        with self.get_connection() as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                for i, (table, frame, time_column, start, end) in enumerate(writes):
                    view = f"_incoming_{i}"
                    conn.register(view, for_duckdb(frame))
                    # the raw tables keep the files' row order (cleaning keeps the first row of
                    # a repeated id); other tables' rows have no order, and an insert free to
                    # reorder them is a third faster (1M rows: 0.7 s instead of 1.1 s)
                    in_order = table.split(".")[0] == RAW_SCHEMA
                    conn.execute(f"SET preserve_insertion_order = {str(in_order).lower()}")
                    self._ensure_table(conn, table, frame, view)
                    conn.execute(
                        f"DELETE FROM {table} WHERE {quote_ident(time_column)} >= ? AND {quote_ident(time_column)} < ?",
                        [start, end],
                    )
                    conn.execute(f"INSERT INTO {table} SELECT * FROM {view}")
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
            finally:
                # the setting is global to the process's database: reads after this write
                # (cleaning reading raw in file order) must find the default again
                conn.execute("SET preserve_insertion_order = true")

    def replace_tables(self, frames: Mapping[str, pl.DataFrame]) -> None:
        """Replace whole tables by frames in one transaction: all of them, or none."""
        with self.get_connection() as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                for i, (table, frame) in enumerate(frames.items()):
                    schema, _ = table.split(".")
                    conn.register(f"_incoming_{i}", for_duckdb(frame))
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
                    conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _incoming_{i}")
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise

    def read(self, sql: str, params: Sequence | Mapping | None = None) -> pl.DataFrame:
        # duckdb 2.0: .pl() exists on relations from conn.sql(), not on execute() results
        with self.get_connection() as conn:
            try:
                return conn.sql(sql, params=params_for(sql, params)).pl()
            except duckdb.CatalogException as err:
                raise MissingTableError(
                    f"{err}. in {self.database}: the upstream asset has not been materialized yet; "
                    "materialize it (or the whole graph: `make demo`) first"
                ) from None

    def exists(self, table: str) -> bool:
        if not Path(self.database).exists():  # asking does not create the file
            return False
        with self.get_connection() as conn:
            return self.table_exists(conn, table)

    # -- governance: erasure and retention delete rows, then purge what a file still holds ----

    def columns(self) -> dict[str, list[str]]:
        """{schema.table: its columns in order} of every table."""
        with self.get_connection() as conn:
            return {
                f"{s}.{t}": cols
                for s, t, cols in conn.sql(
                    "SELECT table_schema, table_name, list(column_name ORDER BY ordinal_position) "
                    "FROM information_schema.columns GROUP BY 1, 2"
                ).fetchall()
            }

    def delete_where(self, deletes: Mapping[str, tuple[str, object]]) -> dict[str, int]:
        """{table: rows deleted} for {table: (WHERE clause, its parameters)}, all in one
        transaction: every delete happens, or none."""
        done = {}
        with self.get_connection() as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                for table, (where, params) in deletes.items():
                    done[table] = conn.execute(
                        f"DELETE FROM {table} WHERE {where}", params
                    ).fetchall()[0][0]
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
        return done

    def purge_deleted(self, tables: Sequence[str] | None = None) -> None:
        """Rewrite the DuckDB file from its live rows: deleted rows stay readable in a file's
        free blocks until they are reused (a grep of the file found an erased person's
        pseudonyms). The whole file, whatever `tables` says."""
        database = Path(self.database)
        fresh = database.with_name(database.name + ".compacting")
        fresh.unlink(missing_ok=True)
        with self.get_connection() as conn:
            name = conn.sql("SELECT current_database()").fetchall()[0][0]
            conn.execute(f"ATTACH '{fresh}' AS compacted")
            conn.execute(f"COPY FROM DATABASE {quote_ident(name)} TO compacted")
            conn.execute("DETACH compacted")
        os.chmod(fresh, 0o600)
        os.replace(fresh, database)
        database.with_name(database.name + ".wal").unlink(missing_ok=True)

    def describe(self) -> str:
        return str(self.database)

    @contextmanager
    def read_only_now(self) -> Iterator[DuckDBReader]:
        """A read-only connection if the file is free this instant, else WarehouseBusy (no retry:
        a writer is never held up, and the caller tries again on its next tick)."""
        if not Path(self.database).exists():
            yield DuckDBReader(None)
            return
        try:
            conn = duckdb.connect(self.database, read_only=True, config=DUCKDB_CONFIG)
        except duckdb.IOException as err:
            raise WarehouseBusy(str(err).splitlines()[0]) from None
        try:
            yield DuckDBReader(conn)
        finally:
            conn.close()

    def read_if_exists(
        self, table: str, sql: str, params: Sequence | Mapping | None = None
    ) -> pl.DataFrame | None:
        with self.get_connection() as conn:
            if not self.table_exists(conn, table):
                return None
            return conn.sql(sql, params=params_for(sql, params)).pl()


class DuckDBReader:
    """Reads over one read-only connection (or none, before the file exists): for sensors, which
    run beside the runs and must neither wait for a writer nor hold one up."""

    def __init__(self, conn):
        self._conn = conn

    def exists(self, table: str) -> bool:
        return self._conn is not None and _table_exists(self._conn, table)

    def read(self, sql: str, params: Sequence | Mapping | None = None) -> pl.DataFrame:
        if self._conn is None:
            raise MissingTableError("the warehouse has no tables yet")
        return self._conn.sql(sql, params=params_for(sql, params)).pl()

    def read_if_exists(
        self, table: str, sql: str, params: Sequence | Mapping | None = None
    ) -> pl.DataFrame | None:
        return self.read(sql, params) if self.exists(table) else None
