"""What a storage backend must do, written down once.

Stages, sensors, governance and benches are typed against these Protocols, never against an
implementation: the embedded profile's (`duckdb_file.DuckDBWarehouse`, `local_files`) and the
cluster's (`delta_lake.DeltaWarehouse`, `object_store`) both satisfy them
(`ml_assets_tests/transforms/test_storage_interfaces.py` checks each has every method). `assembly` is the one place
that picks one. An asset or sensor takes a resource as `dg.ResourceParam[Warehouse]`: Dagster
passes whichever implementation the definitions were built with.

Table names are `schema.table`; `read` takes DuckDB SQL over those names (the Delta warehouse
registers its tables under the same names), with `$name` or `?` parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

import polars as pl

from ml_assets.spec import DatasetSpec, LandingFiles
from ml_assets.storage.registry import Registry
from ml_assets.transforms.arrivals import FileStat

# (table, rows, time column, start, end): the rows that replace [start, end) of the table
WindowWrite = tuple[str, pl.DataFrame, str, datetime, datetime]


@runtime_checkable
class WarehouseReader(Protocol):
    """Reads only: what a sensor gets, beside the runs, without waiting for a writer."""

    def exists(self, table: str) -> bool:
        """Whether the table has been written (asking creates nothing)."""
        ...

    def read(self, sql: str, params: Sequence | Mapping | None = None) -> pl.DataFrame:
        """The result of a query; `MissingTableError` when a table it names was never written."""
        ...

    def read_if_exists(
        self, table: str, sql: str, params: Sequence | Mapping | None = None
    ) -> pl.DataFrame | None:
        """`read`, or None while `table` does not exist."""
        ...


@runtime_checkable
class Warehouse(WarehouseReader, Protocol):
    """Every table of the code location, with writes that are safe to repeat.

    A window write replaces exactly the rows of its window, in one commit with the other writes
    of the call: a re-run never duplicates rows, a failed write leaves the earlier rows
    readable. In a run, the warehouse holds the governance lock shared from its setup to the
    run's end (`storage.lock`), so governance never changes data under a run."""

    def replace_time_ranges(self, writes: Sequence[WindowWrite]) -> None:
        """Each table's window replaced by its rows, all together or none; rows outside their
        window are refused (`base.refuse_rows_outside`)."""
        ...

    def replace_time_range(
        self, table: str, frame: pl.DataFrame, time_column: str, start: datetime, end: datetime
    ) -> None: ...

    def replace_tables(self, frames: Mapping[str, pl.DataFrame]) -> None:
        """Whole tables replaced by frames, all together or none."""
        ...

    def replace_table(self, table: str, frame: pl.DataFrame) -> None: ...

    def columns(self) -> dict[str, list[str]]:
        """{schema.table: its columns in order} of every table (governance finds by it what
        holds a person)."""
        ...

    def delete_where(self, deletes: Mapping[str, tuple[str, object]]) -> dict[str, int]:
        """{table: rows deleted} for {table: (SQL condition, its parameters)}: erasure by key
        and retention by day. DuckDB: one transaction; Delta: a commit per table."""
        ...

    def purge_deleted(self, tables: Sequence[str] | None = None) -> None:
        """Make deleted rows unreadable from storage too (old file blocks, old table versions)."""
        ...

    def describe(self) -> str:
        """Where the tables live, for messages (a path or a URI without credentials)."""
        ...

    def read_only_now(self) -> AbstractContextManager[WarehouseReader]:
        """A reader if the tables can be read this instant, else `WarehouseBusy` (a sensor tries
        again on its next tick rather than hold up a writer)."""
        ...


@runtime_checkable
class FileStore(Protocol):
    """Landing, archive, quarantine, reports and annotation batches: a folder tree (the data
    folder, or an object store's prefix) whose landing files come from outside.

    Landing entries are untrusted: a name never becomes a glob or a path outside its folder,
    and only regular files are read (links and folders are refused, never followed)."""

    @property
    def clock_margin_seconds(self) -> float:
        """How far behind the clock a new file's change time may be."""
        ...

    def landing_files(self, landing: LandingFiles, day: date) -> list[Path]:
        """The day's landing entries as local paths (an object store stages copies)."""
        ...

    def landing_glob(self, landing: LandingFiles, day: date) -> str:
        """The day's pattern, for messages only (never handed to a reader)."""
        ...

    def landing_listing(self, landing: LandingFiles) -> dict[str, FileStat]:
        """{name: size and change time} of every regular file matching the pattern."""
        ...

    def landing_irregular(self, landing: LandingFiles) -> dict[str, str]:
        """{name: what it is} of the entries matching the pattern that are not regular files."""
        ...

    def landing_path(self, landing: LandingFiles, name: str) -> Path:
        """One landing file by name, as a local path."""
        ...

    def release(self, path) -> None:
        """A landing file has been read (an object store removes its staged copy)."""
        ...

    def origin(self, path) -> str:
        """What logs and metadata name a landing file by."""
        ...

    def folder(self, *parts: str):
        """A folder of the store (created, owner-only on local disk)."""
        ...

    def quarantine_file(self, source: Path, reason: str, dataset: str, *, move: bool = False):
        """Set a bad file aside with a `.reason.json` beside it; nothing is ever deleted."""
        ...

    def quarantined(self, dataset: str) -> list[dict]:
        """The quarantined files still waiting, with their reasons."""
        ...

    def archive_file(self, source: Path, dataset: str, day: date) -> tuple[object, str]:
        """Keep the ingested version of a landing file; (the copy, the SHA-256 of its bytes)."""
        ...


@runtime_checkable
class ModelRegistry(Protocol):
    """The model versions of each dataset: cards, artifacts and which version is in use."""

    def for_dataset(self, spec: DatasetSpec) -> Registry: ...
