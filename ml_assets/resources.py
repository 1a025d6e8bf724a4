"""Resources, chosen in one place.

The embedded default is a DuckDB file and plain folders under the data folder
(`ML_ASSETS_DATA_DIR`, default `./data`). Another backend is configuration of these
resources, not a fork of the assets.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from ml_assets.arrow import DUCKDB_CONFIG, for_duckdb
from ml_assets.names import RAW_SCHEMA
from ml_assets.registry import Registry
from ml_assets.spec import DatasetSpec, LandingFiles
from ml_assets.transforms.arrivals import FileStat
from ml_assets.transforms.privacy import (
    Pseudonymize,
    key_fingerprint,
    keyed_pseudonymizer,
    private_dir,
)
from ml_assets.transforms.sql import quote_ident

PSEUDONYM_KEY_ENV_VAR = "ML_ASSETS_PSEUDONYM_KEY"
# The DuckDB file's stem must not equal a schema name ("Ambiguous reference" otherwise).
WAREHOUSE_FILE = "warehouse.duckdb"


def data_dir_from_env() -> Path:
    """The data folder of the command-line tools: the settings' (ML_ASSETS_DATA_DIR)."""
    from ml_assets.settings import Settings

    return Settings.from_env().data_dir


class MissingTableError(RuntimeError):
    """A table an asset reads does not exist yet: its upstream asset never ran."""


def params_for(sql: str, params):
    """Positional params as given; named ones limited to those the SQL uses (DuckDB refuses extras)."""
    if params is None:
        return None
    if isinstance(params, Mapping):
        return {k: v for k, v in params.items() if f"${k}" in sql}
    return list(params)


def refuse_rows_outside(
    writes: Sequence[tuple[str, pl.DataFrame, str, datetime, datetime]],
) -> None:
    """A window write whose rows fall outside its window would duplicate them on a re-run."""
    for table, frame, time_column, start, end in writes:
        when = pl.col(time_column).cast(pl.Datetime("us"))
        outside = frame.filter((when < start) | (when >= end))
        if len(outside):
            raise ValueError(
                f"{len(outside)} rows for {table} fall outside [{start}, {end}): refusing a write that would duplicate on re-run"
            )


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


class SingleWrites:
    """The one-table forms of a warehouse's writes, for both backends (the DuckDB file here,
    Delta tables in ml_assets.lake): each is its batch form with one entry.

    In a run, the warehouse holds the governance lock shared from its setup to the run's end
    (`governance.busy`): an erasure, retention, key rotation or restore never changes the data
    under a run, and a run started during one waits for it."""

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext):
        from ml_assets.governance.busy import GOVERNANCE_RUN_TAG, hold_for_run

        run = context.run
        held = (
            hold_for_run(context.log)
            if run is not None and GOVERNANCE_RUN_TAG not in run.tags
            else None
        )
        try:
            with super().yield_for_execution(context) as resource:
                yield resource
        finally:
            if held is not None:
                os.close(held)

    def replace_time_range(
        self, table: str, frame: pl.DataFrame, time_column: str, start: datetime, end: datetime
    ) -> None:
        """Replace the rows of `table` whose `time_column` is in [start, end) by `frame`."""
        self.replace_time_ranges([(table, frame, time_column, start, end)])

    def replace_table(self, table: str, frame: pl.DataFrame) -> None:
        self.replace_tables({table: frame})


class Warehouse(SingleWrites, DuckDBResource):
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
    def read_only_now(self) -> Iterator[WarehouseReader]:
        """A read-only connection if the file is free this instant, else WarehouseBusy (no retry:
        a writer is never held up, and the caller tries again on its next tick)."""
        if not Path(self.database).exists():
            yield WarehouseReader(None)
            return
        try:
            conn = duckdb.connect(self.database, read_only=True, config=DUCKDB_CONFIG)
        except duckdb.IOException as err:
            raise WarehouseBusy(str(err).splitlines()[0]) from None
        try:
            yield WarehouseReader(conn)
        finally:
            conn.close()

    def read_if_exists(
        self, table: str, sql: str, params: Sequence | Mapping | None = None
    ) -> pl.DataFrame | None:
        with self.get_connection() as conn:
            if not self.table_exists(conn, table):
                return None
            return conn.sql(sql, params=params_for(sql, params)).pl()


class WarehouseBusy(RuntimeError):
    """Another process is writing the warehouse file right now."""


class WarehouseReader:
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


class LocalFiles(dg.ConfigurableResource):
    """The data folder on local disk: landing files, quarantine, model artifacts, reports."""

    data_dir: str

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    @property
    def clock_margin_seconds(self) -> float:
        """How far behind the clock a new file's change time may be (a file server's clock)."""
        return 60.0

    def landing_files(self, landing: LandingFiles, day: date) -> list[Path]:
        """The day's landing entries: regular files, and anything else the pattern matches (a
        link, a folder) so that the caller can refuse it; never followed."""
        folder = self.root / landing.path
        return sorted(folder.glob(landing.pattern.replace("{date}", day.isoformat())))

    def landing_glob(self, landing: LandingFiles, day: date) -> str:
        return str(self.root / landing.path / landing.pattern.replace("{date}", day.isoformat()))

    def folder(self, *parts: str) -> Path:
        """A folder of the data folder, created readable by its owner only (0700)."""
        return private_dir(self.root.joinpath(*parts))

    def landing_listing(self, landing: LandingFiles) -> dict[str, FileStat]:
        """Every regular file of a landing folder that matches the pattern, with its size and
        change time (from the entry itself: a link is not followed)."""
        listing = {}
        for path in self._matching(landing):
            try:
                if not_a_regular_file(path) is None:
                    listing[path.name] = FileStat.of(path)
            except FileNotFoundError:  # removed between the listing and the stat
                continue
        return listing

    def landing_irregular(self, landing: LandingFiles) -> dict[str, str]:
        """{name: what it is} of the entries matching the pattern that are not regular files
        (links, folders, pipes, devices): landing takes regular files only."""
        out = {}
        for path in self._matching(landing):
            try:
                if kind := not_a_regular_file(path):
                    out[path.name] = kind
            except FileNotFoundError:
                continue
        return out

    def _matching(self, landing: LandingFiles) -> list[Path]:
        # any name the pattern could match: a file whose date is not a date is quarantined, not ignored
        folder = self.root / landing.path
        return sorted(folder.glob(re.sub(r"\*+", "*", landing.pattern.replace("{date}", "*"))))

    def landing_path(self, landing: LandingFiles, name: str) -> Path:
        return self.root / landing.path / name

    def release(self, path) -> None:
        """A landing file has been read: nothing to do on local disk (an object store removes
        its staged copy)."""

    def origin(self, path) -> str:
        """What logs and metadata name a landing file by: its path (an object store names the
        object a local copy was made from)."""
        return str(path)

    def quarantine_file(
        self, source: Path, reason: str, dataset: str, *, move: bool = False
    ) -> Path:
        """Put a bad landing file in quarantine with a sidecar stating why.

        `move=False` copies (the original stays where it was); `move=True` takes it out of the
        landing folder so that the day's good files can go on without it. Nothing is deleted:
        a name already in quarantine gets a numbered suffix.
        """
        target_dir = self.folder("quarantine", dataset)
        target = _free_name(target_dir / fitting_name(source.name))
        if not_a_regular_file(source):
            # a link, folder, pipe or device: the entry itself is moved, its target never read
            os.rename(source, target)
            move = True
        elif move:
            shutil.move(source, target)
            os.chmod(target, 0o600)  # it may hold personal data
        else:
            shutil.copy2(source, target)
            os.chmod(target, 0o600)
        sidecar = target.with_name(target.name + ".reason.json")
        sidecar.touch(mode=0o600)
        sidecar.write_text(quarantine_reason(str(source), move, reason))
        return target

    def quarantined(self, dataset: str) -> list[dict]:
        """The files waiting in quarantine (move them to quarantine/<dataset>/resolved once handled)."""
        folder = self.root / "quarantine" / dataset
        return quarantine_entries(sorted(folder.glob("*.reason.json")))

    def archive_file(self, source: Path, dataset: str, day: date) -> tuple[Path, str]:
        """Keep the version of a landing file that was ingested, as archive/<dataset>/<day>/<sha16>_<name>.

        A writer may overwrite the original later (a changed file); the archived copy keeps what
        the raw rows came from. Returns the copy and the SHA-256 of the bytes copied, so a caller
        can tell whether the file changed since it was read.
        """
        folder = self.folder("archive", dataset, day.isoformat())
        digest = hashlib.sha256()
        name = fitting_name(source.name)
        partial = folder / f".{name}.{os.getpid()}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(8 << 20):
                digest.update(chunk)
                dst.write(chunk)
        sha = digest.hexdigest()
        target = folder / f"{sha[:16]}_{name}"
        if target.exists():
            partial.unlink()
        else:
            shutil.copystat(source, partial)
            os.chmod(partial, 0o600)  # the archive keeps personal data: the owner's only
            partial.replace(target)
        return target, sha


def quarantine_reason(file: str, moved: bool, reason: str) -> str:
    """The `.reason.json` beside a quarantined copy (on disk or in an object store)."""
    return json.dumps(
        {
            "file": file,
            "moved": moved,
            "reason": reason,
            "quarantined_at": datetime.now().isoformat(timespec="seconds"),
        },
        indent=2,
    )


def quarantine_entries(sidecars) -> list[dict]:
    """{quarantined_as, file, moved, reason, quarantined_at} of each `.reason.json` (a local
    path or an object store's UPath)."""
    out = []
    for sidecar in sidecars:
        copy = str(sidecar)[: -len(".reason.json")]
        try:
            out.append({"quarantined_as": copy, **json.loads(sidecar.read_text())})
        except (OSError, ValueError):
            out.append({"quarantined_as": copy, "reason": "(sidecar unreadable)"})
    return out


def not_a_regular_file(path: Path) -> str | None:
    """What a landing entry is when it is not a regular file, or None. The entry itself is
    looked at (lstat): a link to /etc/passwd or /dev/zero is a link, and is never opened."""
    mode = path.lstat().st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link (landing takes regular files only; links are not followed)"
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    return "not a regular file (a pipe, socket or device)"


# a file name is at most 255 bytes; what archive and quarantine add to a landing name fits in 55
NAME_ROOM_BYTES = 200


def fitting_name(name: str, room: int = NAME_ROOM_BYTES) -> str:
    """`name` itself when it is at most `room` bytes, else its start, a hash of the whole name
    and its extension: a long landing name still gets an archive and quarantine copy (with the
    prefix and sidecar suffix added there), and two long names never share one."""
    if len(name.encode()) <= room:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, ext = name, ""
    tag = "~" + hashlib.sha256(name.encode()).hexdigest()[:16]
    keep = room - len(tag.encode()) - len(ext.encode()) - 1
    short = stem.encode()[:keep].decode("utf-8", errors="ignore")
    return f"{short}{tag}" + (f".{ext}" if ext else "")


def _free_name(path: Path) -> Path:
    if not path.exists():
        return path
    for i in range(1, 100_000):
        candidate = path.with_name(f"{path.stem}.{i}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise RuntimeError(f"no free name for {path} in quarantine")


class ModelRegistry(dg.ConfigurableResource):
    """The model registry: each dataset's versions under the data folder's models/ (a folder of
    the dataset's name when several datasets share the data folder)."""

    data_dir: str

    def for_dataset(self, spec: DatasetSpec) -> Registry:
        from ml_assets.names import dataset_folder

        return Registry(private_dir(Path(self.data_dir).joinpath(*dataset_folder(spec, "models"))))


class Pseudonymizer(dg.ConfigurableResource):
    """Keyed pseudonymization of personal data; the key comes from the environment, never code."""

    key: str

    def function(self) -> Pseudonymize:
        return keyed_pseudonymizer(self.key)

    def fingerprint(self) -> str:
        """Tells keys apart without revealing them: recorded with every materialization that
        pseudonymizes, so a changed key is caught before it gives a person a second pseudonym."""
        return key_fingerprint(self.key)


def require_cluster_extra(module: str, setting: str) -> None:
    """A cluster setting without the cluster extra installed: say which, and the fix."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        from ml_assets.settings import SettingsError

        raise SettingsError(
            f"{setting} needs the `cluster` extra ({module} is not installed). "
            "Fix: pip install -e '.[cluster]' (or `make install`), or unset it for the embedded profile"
        )


def build_warehouse(settings):
    """The tables' backend: the DuckDB file (embedded), or Delta Lake tables (cluster; imported
    only then, so the embedded profile does not need deltalake)."""
    # DuckDB's default buffer pool is 80% of RAM and it keeps what it took; a cap keeps a
    # 1M-row day well under 2 GiB, and DuckDB spills to disk past it.
    memory_limit = settings.duckdb_memory_limit
    if settings.warehouse == "delta":
        require_cluster_extra("deltalake", "ML_ASSETS_WAREHOUSE=delta")
        from ml_assets.lake import DeltaWarehouse

        return DeltaWarehouse(root=settings.lake_root, memory_limit=memory_limit)
    return Warehouse(
        database=str(Path(settings.data_dir) / WAREHOUSE_FILE),
        connection_config={"memory_limit": memory_limit, **DUCKDB_CONFIG},
    )


def build_file_store(settings) -> dict:
    """Landing, archive, quarantine, reports and batches (`files`) and the model registry: the
    data folder (embedded), or an object store (ML_ASSETS_FILES_ROOT=s3://...; imported only
    then)."""
    if settings.files_root:
        require_cluster_extra("upath", f"ML_ASSETS_FILES_ROOT={settings.files_root}")
        require_cluster_extra("s3fs", f"ML_ASSETS_FILES_ROOT={settings.files_root}")
        from ml_assets.objectstore import ObjectStoreFiles, ObjectStoreRegistry

        return {
            "files": ObjectStoreFiles(
                root=settings.files_root, staging_dir=str(Path(settings.data_dir) / "staged")
            ),
            "registry": ObjectStoreRegistry(root=settings.files_root),
        }
    return {
        "files": LocalFiles(data_dir=str(settings.data_dir)),
        "registry": ModelRegistry(data_dir=str(settings.data_dir)),
    }


def build_resources(settings) -> dict:
    """The resources of the code location, from its Settings: one place for all of them."""
    return {
        "warehouse": build_warehouse(settings),
        **build_file_store(settings),
        "pseudonymizer": Pseudonymizer(key=dg.EnvVar(PSEUDONYM_KEY_ENV_VAR)),
        "mlflow": build_mlflow_mirror(settings),
    }


def build_mlflow_mirror(settings):
    """The MLflow mirror: on when MLFLOW_TRACKING_URI (or a spec's `mlflow` block) names a store."""
    import os

    from ml_assets.mlflow_mirror import TRACKING_URI_ENV_VAR, MLflowMirror

    # by name where it is set: a URI with a user and password would otherwise be shown in the
    # UI's resource config and written to the instance's snapshot of the definitions
    given = os.environ.get(TRACKING_URI_ENV_VAR)
    return MLflowMirror(
        tracking_uri=dg.EnvVar(TRACKING_URI_ENV_VAR) if given else "",
        artifact_root=str(Path(settings.data_dir) / "mlflow"),
    )
