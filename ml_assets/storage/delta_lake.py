"""The cluster profile's warehouse: Delta Lake tables on object storage (or a local folder).

The same resource interface as the embedded `Warehouse` (read, read_if_exists, exists,
replace_time_range(s), replace_table(s), read_only_now), so no asset knows which one it has:

- a table `schema.name` is the Delta table at `<root>/<schema>/<name>` (root: a local folder or
  `s3://bucket/prefix`; credentials and endpoint come from the standard AWS_* variables);
- a write replaces a time window in one Delta commit (`mode="overwrite"` with a predicate on
  the window), so re-running a day never duplicates rows, and a reader sees the old window or
  the new one, never a mix. A table written by windows is partitioned by the day of its time
  column (`_day`, which readers never see): a write touches its days' files only, even after a
  backfill run wrote several days at once, so writers of different days of one table do not
  conflict; one that loses a race on the same day is made again on the newest version;
- a newer version that adds columns at the end merges them into the schema (older rows read
  NULL), as the embedded warehouse does;
- reads run the same DuckDB SQL as the embedded profile, in an in-memory DuckDB over each
  referenced table's Arrow dataset (filters pushed down to the Parquet files).

Several tables written by one asset (raw rows, rejected rows, files read) are not one
transaction here: they are written data first and the last one is the files log, each write is
idempotent, and the asset fails if any write fails, so a re-run of the day repairs what a kill
left half done (ml_assets_tests/transforms/test_lake.py shows it).

Imported only when ML_ASSETS_WAREHOUSE=delta: the embedded profile does not need deltalake.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from ml_assets.names import SCHEMAS
from ml_assets.storage.arrow import DUCKDB_CONFIG
from ml_assets.storage.base import MissingTableError, SingleWrites, params_for, refuse_rows_outside
from ml_assets.transforms.sql import quote_ident

# a commit that lost a race with another writer of the table is tried again on the newest
# version this many times (a window write replaces its window whatever the other wrote)
COMMIT_ATTEMPTS = 5
# orphan files (written by a writer that was killed before its commit) younger than this are
# left by a purge: a writer still running may be about to commit them
ORPHAN_GRACE_HOURS = 1
# Delta's default log retention, put back once a purge has cut the log
LOG_RETENTION = "interval 30 days"
# the partition column of a table written by windows: the day of its time column. Readers never
# see it (the views leave it out); it keeps each day in files of its own, so that a window
# write rewrites its days' files only and writers of other days never conflict
DAY = "_day"

# `schema.table` (optionally quoted) where the schema is one of ours: the tables a query reads
_TABLE_REFERENCE = re.compile(
    r'(?<![\w."])"?(' + "|".join(SCHEMAS) + r')"?\s*\.\s*"?([A-Za-z_][A-Za-z0-9_]*)"?'
)


class LakeSchemaError(ValueError):
    """New rows do not fit the stored table's columns."""


def _literal(moment: datetime) -> str:
    return f"'{moment.isoformat(sep=' ')}'"


class DeltaWarehouse(SingleWrites, dg.ConfigurableResource):
    """Every table as a Delta Lake table under `root` (a folder, or s3://bucket/prefix)."""

    root: str
    # the in-memory DuckDB that runs each read (its buffer pool; spills past it)
    memory_limit: str = "1GB"

    def uri(self, table: str) -> str:
        schema, name = table.split(".")
        return f"{self.root.rstrip('/')}/{schema}/{name}"

    def _table(self, table: str) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri(table))
        except TableNotFoundError:
            return None

    def exists(self, table: str) -> bool:
        return self._table(table) is not None

    # -- writes -------------------------------------------------------------------------------

    def replace_time_ranges(
        self, writes: Sequence[tuple[str, pl.DataFrame, str, datetime, datetime]]
    ) -> None:
        """Each window replaced in one commit, in the order given (data first, the files log
        last): a failure part way leaves the earlier windows replaced and the later ones as
        they were, and a re-run replaces them all again."""
        refuse_rows_outside(writes)
        for table, frame, time_column, start, end in writes:
            column = quote_ident(time_column)
            # the partitions first (a day either side, whatever the time zones), then the rows
            days = (
                f"{DAY} >= '{(start - timedelta(days=1)).date()}' AND "
                f"{DAY} <= '{(end + timedelta(days=1)).date()}' AND "
            )
            self._write(
                table,
                frame.with_columns(pl.col(time_column).cast(pl.Date).alias(DAY)),
                predicate=f"{column} >= {_literal(start)} AND {column} < {_literal(end)}",
                partition_predicate=days,
            )

    def replace_tables(self, frames: Mapping[str, pl.DataFrame]) -> None:
        """Replace whole tables, one commit each, in the order given (the data before the
        table that describes it)."""
        for table, frame in frames.items():
            self._write(table, frame, predicate=None)

    def _write(
        self,
        table: str,
        frame: pl.DataFrame,
        predicate: str | None,
        partition_predicate: str = "",
    ) -> None:
        """One commit; when another writer committed to the table first (a run of an
        overlapping window, or a whole-table writer), the write is made again on the newest
        version: a window write replaces its whole window, so the result is the same as if it
        had come second. A window write's frame carries the DAY column: a new table is
        partitioned by it (a table made before it was is written as it is)."""
        for attempt in range(COMMIT_ATTEMPTS):
            stored = self._table(table)
            partitioned = stored is None or DAY in stored.metadata().partition_columns
            if DAY in frame.columns and not partitioned:
                frame = frame.drop(DAY)
            where = (partition_predicate if partitioned else "") + predicate if predicate else None
            arrow = self._fitted(table, frame, stored, whole=predicate is None).to_arrow()
            try:
                if stored is None:
                    # the first write creates the table; the same call also overwrites a table
                    # another writer created meanwhile, as a re-run of this window would
                    write_deltalake(
                        self.uri(table),
                        arrow,
                        mode="overwrite",
                        predicate=where,
                        partition_by=[DAY] if DAY in frame.columns else None,
                    )
                    return
                write_deltalake(
                    stored,
                    arrow,
                    mode="overwrite",
                    # whole-table replacements take the new rows' columns as they are
                    schema_mode="merge" if predicate else "overwrite",
                    predicate=where,
                    partition_by=[DAY] if DAY in frame.columns else None,
                )
                return
            except CommitFailedError:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise

    def _fitted(
        self, table: str, frame: pl.DataFrame, stored: DeltaTable | None, whole: bool
    ) -> pl.DataFrame:
        """The frame in types Delta stores: a column of nulls takes the stored column's type
        (else string). A window's columns must extend the stored ones at the end, as in the
        embedded warehouse; a whole-table replacement takes any columns."""
        stored_types = {}
        if stored is not None:
            schema = pl.from_arrow(stored.to_pyarrow_dataset().schema.empty_table()).schema
            stored_types = dict(schema)
        casts = [
            pl.col(name).cast(stored_types.get(name, pl.String))
            for name, dtype in frame.schema.items()
            if dtype == pl.Null
        ]
        frame = frame.with_columns(casts) if casts else frame
        existing = [c for c in stored_types if c != DAY]
        incoming = [c for c in frame.columns if c != DAY]
        if existing and not whole and incoming[: len(existing)] != existing:
            raise LakeSchemaError(
                f"table {table} has columns {existing} but the new rows have {incoming}; "
                "the spec (or the code) changed under existing data: remove the table's folder "
                f"({self.uri(table)}) and re-materialize, restore the old spec, or start afresh "
                "with an empty lake root"
            )
        return frame

    # -- governance: erasure and retention delete rows, then purge the files that held them --

    def tables(self) -> list[str]:
        """Every Delta table under the root, as schema.table."""
        from fsspec.core import url_to_fs

        fs, base = url_to_fs(self.root)
        out = []
        for schema in SCHEMAS:
            try:
                entries = fs.ls(f"{base.rstrip('/')}/{schema}", detail=False)
            except FileNotFoundError:
                continue
            for entry in entries:
                name = entry.rstrip("/").rsplit("/", 1)[-1]
                if fs.exists(f"{entry.rstrip('/')}/_delta_log"):
                    out.append(f"{schema}.{name}")
        return sorted(out)

    def columns(self) -> dict[str, list[str]]:
        """{schema.table: its columns in order} of every table."""
        return {
            table: [f.name for f in DeltaTable(self.uri(table)).schema().fields if f.name != DAY]
            for table in self.tables()
        }

    def delete_where(self, deletes: Mapping[str, tuple[str, object]]) -> dict[str, int]:
        """{table: rows deleted} for {table: (DuckDB WHERE clause, its parameters)}: each table
        that holds matching rows is rewritten without them in one commit (the clauses are
        DuckDB SQL, run here over the table as it is). Tables are not one transaction on Delta:
        the callers record what they do first and resume an interrupted erasure."""
        done = {}
        for table, (where, params) in deletes.items():
            for attempt in range(COMMIT_ATTEMPTS):
                # the rows kept are read from the very version the rewrite commits against: a
                # window another run commits meanwhile makes this commit fail (and be made
                # again on the newest version), never silently undone
                stored = self._table(table)
                if stored is None:
                    done[table] = 0
                    break
                pinned = {table: stored}
                count = self.read(
                    f"SELECT count(*) AS n FROM {table} WHERE {where}", params, pinned
                ).item()
                done[table] = count
                if not count:
                    break
                kept = self.read(
                    f"SELECT * FROM {table} WHERE ({where}) IS NOT TRUE",
                    params,
                    pinned,
                    with_partitions=True,
                )
                try:
                    write_deltalake(
                        stored,
                        self._fitted(table, kept, stored, whole=True).to_arrow(),
                        mode="overwrite",
                        partition_by=stored.metadata().partition_columns or None,
                    )
                    break
                except CommitFailedError:
                    if attempt == COMMIT_ATTEMPTS - 1:
                        raise
        return done

    def purge_deleted(self, tables: Sequence[str] | None = None) -> None:
        """Delta keeps replaced files, and the statistics (min/max values) of every file it
        ever added in its log, until VACUUM and log cleanup: for each table, the unreferenced
        files are removed now and the log is cut to a checkpoint of the current version."""
        for table in self.tables() if tables is None else tables:
            stored = self._table(table)
            if stored is None:
                continue
            # the files the deletes replaced (tombstones of the current version), now
            stored.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
            # and every file no version references (older tombstones a checkpoint dropped,
            # files of writers killed before their commit), past a grace period for the
            # writers still running
            stored.vacuum(
                retention_hours=ORPHAN_GRACE_HOURS,
                enforce_retention_duration=False,
                dry_run=False,
                full=True,
            )
            # the log's older commits carry each added file's min/max values: cut the log to
            # a checkpoint of this version, then give the table its usual log retention back
            stored.alter.set_table_properties(
                {"delta.logRetentionDuration": "interval 0 days"}, raise_if_not_exists=False
            )
            stored = DeltaTable(self.uri(table))
            stored.create_checkpoint()
            stored.cleanup_metadata()
            stored.alter.set_table_properties(
                {"delta.logRetentionDuration": LOG_RETENTION}, raise_if_not_exists=False
            )

    def describe(self) -> str:
        return self.root

    # -- reads --------------------------------------------------------------------------------

    def _connection(
        self,
        sql: str,
        pinned: Mapping[str, DeltaTable] | None = None,
        with_partitions: bool = False,
    ) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB where every existing table the query names is a view over its
        Delta table's current version (or the version `pinned` gives), without the DAY
        partition column (unless `with_partitions`: a rewrite of the whole table keeps it)."""
        conn = duckdb.connect(config={"memory_limit": self.memory_limit, **DUCKDB_CONFIG})
        for schema, name in sorted(set(_TABLE_REFERENCE.findall(sql))):
            table = f"{schema}.{name}"
            stored = (pinned or {}).get(table) or self._table(table)
            if stored is None:
                continue
            arrow_name = f"__{schema}__{name}"
            dataset = stored.to_pyarrow_dataset()
            conn.register(arrow_name, dataset)
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
            hidden = DAY in dataset.schema.names and not with_partitions
            conn.execute(
                f"CREATE VIEW {quote_ident(schema)}.{quote_ident(name)} AS "
                f"SELECT * {f'EXCLUDE ({DAY})' if hidden else ''} FROM {arrow_name}"
            )
        return conn

    def read(
        self,
        sql: str,
        params: Sequence | Mapping | None = None,
        pinned: Mapping[str, DeltaTable] | None = None,
        with_partitions: bool = False,
    ) -> pl.DataFrame:
        conn = self._connection(sql, pinned, with_partitions)
        try:
            return conn.sql(sql, params=params_for(sql, params)).pl()
        except duckdb.CatalogException as err:
            raise MissingTableError(
                f"{err}. under {self.root}: the upstream asset has not been materialized yet; "
                "materialize it (or the whole graph) first"
            ) from None
        finally:
            conn.close()

    def read_if_exists(
        self, table: str, sql: str, params: Sequence | Mapping | None = None
    ) -> pl.DataFrame | None:
        return self.read(sql, params) if self.exists(table) else None

    @contextmanager
    def read_only_now(self) -> Iterator[DeltaWarehouse]:
        """Readers never wait for writers on Delta tables: each read sees the newest commit."""
        yield self
