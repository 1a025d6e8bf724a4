"""Backup and restore: a consistent snapshot of everything the pipeline made, checked on restore.

    python -m ml_assets.backup create [--to FOLDER | --to FILE.tar.gz] [--keep N]
    python -m ml_assets.backup restore SNAPSHOT [--yes]
    python -m ml_assets.backup list

A snapshot holds the warehouse (copied through DuckDB from a read-only attach, so a writer's
half-done transaction is never in it), the models, the reports, the annotation batches, the
Dagster instance's run, event and schedule storage (through SQLite's backup API, consistent per
database) with its dagster.yaml, the dataset spec, and `manifest.json` with the SHA-256 and size
of every file. Landing, archive and quarantine files are not in it: they are the sources, kept
where they are, and the only place clear personal data lives. In the cluster profile the same
snapshot is taken from the stores the settings name: Delta tables on S3 (each table's log
before its data files), models, reports and batches from the object store; the instance in
PostgreSQL is not in it (pg_dump backs it up).

Restore checks every file against the manifest first and changes nothing if one differs. It
needs the platform stopped (the warehouse is written while nothing holds it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ml_assets.transforms.privacy import private_dir

FORMAT = 1
WAREHOUSE = "warehouse.duckdb"
# folders of the data folder a snapshot holds, as they are
FOLDERS = ("models", "reports", "annotation/batches")
# Delta Lake tables kept in the data folder (ML_ASSETS_WAREHOUSE=delta with the default
# ML_ASSETS_LAKE_ROOT): copied table by table, the log before the data files
LAKE = "lake"
INSTANCE_FOLDERS = ("history", "schedules")
DEFAULT_KEEP = 7


class BackupError(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_warehouse(source: Path, target: Path, attempts: int = 30) -> None:
    """The warehouse as of one committed state: DuckDB copies it from a read-only attach (a
    writer holding the file is waited for, up to `attempts` seconds)."""
    for attempt in range(attempts):
        con = duckdb.connect()
        try:
            con.execute(f"ATTACH '{source}' AS live (READ_ONLY)")
            con.execute(f"ATTACH '{target}' AS snapshot")
            con.execute("COPY FROM DATABASE live TO snapshot")
            con.execute("DETACH snapshot")
            return
        except duckdb.IOException as err:
            if "lock" not in str(err).lower() or attempt == attempts - 1:
                raise BackupError(
                    f"could not read {source}: {err}. Fix: retry when the running write ends"
                ) from None
            target.unlink(missing_ok=True)
            time.sleep(1)
        finally:
            con.close()


def _copy_lake(root: str, target: Path) -> None:
    """Delta tables under `root` (a folder or s3://...) as of a committed version each: a
    table's log is copied before its data files, and data files are never changed in place, so
    every file the copied log names is copied too (a file a later commit adds is copied
    unreferenced, which readers ignore)."""
    from fsspec.core import url_to_fs

    fs, base = url_to_fs(root)
    base = base.rstrip("/")
    if not fs.exists(base):
        return
    fs.invalidate_cache()
    tables = sorted({k.split("/_delta_log/")[0] for k in fs.find(base) if "/_delta_log/" in k})
    for table in tables:
        into = target / table[len(base) :].lstrip("/")
        # not the `_last_checkpoint` hint: a checkpoint written after the listing would make it
        # name a file the snapshot lacks, and the table would not load (readers list the log)
        logs = [k for k in fs.find(f"{table}/_delta_log") if not k.endswith("/_last_checkpoint")]
        fs.invalidate_cache(table)
        data = [k for k in fs.find(table) if "/_delta_log/" not in k]
        for key in logs + data:
            (into / key[len(table) :].lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(key, str(into / key[len(table) :].lstrip("/")))


def _copy_objects(root: str, folder: str, target: Path) -> None:
    """The objects under `<root>/<folder>` of an object store, into `target` (same layout)."""
    from fsspec.core import url_to_fs

    fs, base = url_to_fs(f"{root.rstrip('/')}/{folder}")
    fs.invalidate_cache()
    for key in sorted(fs.find(base)):
        path = target / key[len(base) :].lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(key, str(path))


def _restore_objects(source: Path, url: str, delta: bool = False) -> int:
    """Put a snapshot folder's files back under `url` on an object store, then remove the
    objects there that the snapshot does not hold (newer model versions, reports, commits).
    Delta tables get their data files first, then their logs, and lose their newer commits
    before the data files only those name, so a reader sees a whole version throughout.
    Returns how many files were put back."""
    from fsspec.core import url_to_fs

    fs, base = url_to_fs(url)
    base = base.rstrip("/")
    local = "file" in fs.protocol
    files = sorted(p for p in source.rglob("*") if p.is_file())
    key = {p: f"{base}/{p.relative_to(source).as_posix()}" for p in files}
    wanted = set(key.values())
    fs.invalidate_cache()
    live = fs.find(base) if fs.exists(base) else []
    if delta:
        # only inside Delta tables (a folder with a _delta_log) is anything removed: whatever
        # else shares the root (landing files, another store) is not the snapshot's to judge
        tables = {k.split("/_delta_log/")[0] + "/" for k in [*live, *wanted] if "/_delta_log/" in k}
        live = [k for k in live if any(k.startswith(t) for t in tables)]
        for pointer in (k for k in live if k.endswith("/_delta_log/_last_checkpoint")):
            if pointer not in wanted:
                fs.rm(pointer)  # it would name a checkpoint newer than the snapshot's version
        files.sort(key=lambda p: ("_delta_log" in p.parts, p.name == "_last_checkpoint", p))
    for p in files:
        if local:
            fs.makedirs(key[p].rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(p), key[p])
    extra = [k for k in live if k not in wanted]
    # newer commits first, newest first (an interrupted restore leaves no gap in a log), then
    # the data files only they named
    logs_first = sorted((k for k in extra if "/_delta_log/" in k), reverse=True)
    for k in logs_first + sorted(k for k in extra if "/_delta_log/" not in k):
        fs.rm(k)
    return len(files)


def _copy_sqlite(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def snapshot_name(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"snapshot_{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z"


def create(
    data_dir: Path,
    dagster_home: Path | None,
    spec_path: Path | None,
    to: Path | None = None,
    keep: int | None = DEFAULT_KEEP,
    files_root: str = "",
    lake_root: str | None = None,
) -> tuple[Path, dict]:
    """Write a snapshot to `to` (a folder, or a .tar.gz file); default data/backups/<name>.
    With `keep`, only the newest `keep` snapshots of that folder stay. The stores are those of
    the settings: models, reports and batches from the data folder or from the object store
    `files_root` (s3://...), Delta tables from `lake_root` (default <data folder>/lake, or
    s3://...). Returns (where, manifest)."""
    data_dir = Path(data_dir)
    lake_root = str(data_dir / LAKE) if lake_root is None else lake_root
    name = snapshot_name()
    archive = to is not None and str(to).endswith(".tar.gz")
    parent = (to.parent if archive else to) if to is not None else data_dir / "backups"
    private_dir(parent)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
    os.chmod(work, 0o700)
    try:
        if (data_dir / WAREHOUSE).exists():
            _copy_warehouse(data_dir / WAREHOUSE, work / WAREHOUSE)
        for folder in FOLDERS:
            if files_root:
                _copy_objects(files_root, folder, work / folder)
            elif (data_dir / folder).is_dir():
                shutil.copytree(data_dir / folder, work / folder, symlinks=True)
        _copy_lake(lake_root, work / LAKE)
        instance = "not in the snapshot (no DAGSTER_HOME)"
        if dagster_home is not None and Path(dagster_home).is_dir():
            home = Path(dagster_home)
            databases = sorted(home.rglob("*.db"))
            # an instance on PostgreSQL (cluster profile) has no file here: its own tools
            # (pg_dump, the managed service's snapshots) back it up
            instance = (
                "SQLite files of DAGSTER_HOME"
                if databases
                else "not in the snapshot: its storage is not SQLite (back PostgreSQL up with pg_dump)"
            )
            for path in databases:
                rel = path.relative_to(home)
                if rel.parts[0] in INSTANCE_FOLDERS or len(rel.parts) == 1:
                    target = work / "dagster_home" / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _copy_sqlite(path, target)
            if (home / "dagster.yaml").exists():
                (work / "dagster_home").mkdir(exist_ok=True)
                shutil.copy2(home / "dagster.yaml", work / "dagster_home/dagster.yaml")
        if spec_path is not None and Path(spec_path).exists():
            shutil.copy2(spec_path, work / "spec.yaml")
        manifest = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data_dir": str(data_dir),
            "stores": {"files": files_root or str(data_dir), "lake": lake_root},
            "instance": instance,
            "files": {
                str(p.relative_to(work)): {"sha256": _sha256(p), "bytes": p.stat().st_size}
                for p in sorted(work.rglob("*"))
                if p.is_file()
            },
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        if archive:
            tmp = to.with_name(to.name + ".partial")
            with tarfile.open(tmp, "w:gz") as tar:
                tar.add(work, arcname=name)
            os.chmod(tmp, 0o600)
            tmp.replace(to)
            where = to
        else:
            where = parent / name
            work.replace(where)
    finally:
        if work.exists():
            shutil.rmtree(work)
    if keep is not None:
        prune(parent, keep)  # --to's folder too, and its archives
    return where, manifest


def snapshot_created(path: Path) -> datetime | None:
    """When a snapshot (a folder, or a .tar.gz holding one) was taken, from its name inside;
    None for anything that is not a snapshot of this module."""
    name = path.name
    if path.is_file() and name.endswith(".tar.gz"):
        try:
            with tarfile.open(path, "r:gz") as tar:
                first = tar.next()  # the snapshot folder is the archive's first member
        except (tarfile.TarError, OSError, EOFError):
            return None
        name = first.name.split("/")[0] if first is not None else ""
    elif not (path.is_dir() and (path / "manifest.json").exists()):
        return None
    try:
        return datetime.strptime(name[len("snapshot_") : len("snapshot_") + 15], "%Y%m%dT%H%M%S")
    except ValueError:
        return None


def snapshots(folder: Path) -> list[Path]:
    """The snapshots of a folder, folders and .tar.gz archives, oldest first."""
    if not folder.is_dir():
        return []
    taken = {p: when for p in folder.iterdir() if (when := snapshot_created(p)) is not None}
    return sorted(taken, key=lambda p: (taken[p], p.name))


def snapshots_before(folder: Path, day) -> list[Path]:
    """The snapshots of `folder` taken before `day` (UTC), for retention's `backups_days`."""
    # a snapshot pruned between the listing and here has no date any more: not ours to remove
    return [p for p in snapshots(folder) if (t := snapshot_created(p)) and t.date() < day]


def prune(folder: Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` snapshots (folders and archives); returns the removed
    ones."""
    old = snapshots(folder)[:-keep] if keep > 0 else []
    for path in old:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return old


def _unpacked(snapshot: Path, into: Path) -> Path:
    if snapshot.is_dir():
        return snapshot
    if not str(snapshot).endswith(".tar.gz") or not snapshot.exists():
        raise BackupError(f"{snapshot} is neither a snapshot folder nor a .tar.gz snapshot")
    with tarfile.open(snapshot, "r:gz") as tar:
        tar.extractall(into, filter="data")
    found = [p for p in into.iterdir() if (p / "manifest.json").exists()]
    if len(found) != 1:
        raise BackupError(f"{snapshot} holds no single snapshot folder with a manifest.json")
    return found[0]


def verify(folder: Path) -> dict:
    """The manifest, once every file it lists is there with its SHA-256 (and nothing else)."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise BackupError(f"{folder} has no manifest.json: not a snapshot of ml_assets.backup")
    manifest = json.loads(manifest_path.read_text())
    problems = []
    for rel, expected in manifest["files"].items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif _sha256(path) != expected["sha256"]:
            problems.append(f"{rel} does not match its SHA-256")
    extra = [
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file()
        and p.name != "manifest.json"
        and str(p.relative_to(folder)) not in manifest["files"]
    ]
    problems += [f"{rel} is not in the manifest" for rel in extra]
    if problems:
        raise BackupError(
            f"snapshot {folder} failed its check, nothing was restored: "
            + "; ".join(problems[:10])
            + ". Fix: restore another snapshot (`python -m ml_assets.backup list`)"
        )
    return manifest


def restore(
    snapshot: Path,
    data_dir: Path,
    dagster_home: Path | None,
    files_root: str = "",
    lake_root: str | None = None,
) -> dict:
    """Check a snapshot, stage every local file beside its place, then swap them in: a failure
    while staging (a full disk) changes nothing. Then the stores outside the data folder (an
    object store's files, Delta tables on S3 or elsewhere) get their objects put back, and lose
    the ones the snapshot does not hold; a failure there is repaired by restoring again.
    Returns counts."""
    data_dir = Path(data_dir)
    lake_root = str(data_dir / LAKE) if lake_root is None else lake_root
    lake_in_data = (
        "://" not in lake_root and Path(lake_root).resolve() == (data_dir / LAKE).resolve()
    )
    private_dir(data_dir)
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        folder = _unpacked(Path(snapshot), Path(tmp))
        manifest = verify(folder)
        live = data_dir / WAREHOUSE
        if live.exists():
            try:
                duckdb.connect(str(live)).close()  # the write lock: nothing else may hold it
            except duckdb.IOException as err:
                raise BackupError(
                    f"{live} is in use ({err}). Fix: stop dagster dev and running jobs, then restore"
                ) from None
        # (staged copy, its place) of everything, all copied before anything is replaced
        swaps: list[tuple[Path, Path]] = []
        try:
            if (folder / WAREHOUSE).exists():
                staged = data_dir / f".{WAREHOUSE}.restoring"
                shutil.copy2(folder / WAREHOUSE, staged)
                os.chmod(staged, 0o600)
                swaps.append((staged, live))
            local = [] if files_root else list(FOLDERS)
            for rel in (*local, *([LAKE] if lake_in_data else [])):
                if (folder / rel).is_dir():
                    target = data_dir / rel
                    private_dir(target.parent)
                    staged = target.with_name(f".{target.name}.restoring")
                    shutil.rmtree(staged, ignore_errors=True)
                    shutil.copytree(folder / rel, staged, symlinks=True)
                    swaps.append((staged, target))
            if dagster_home is not None and (folder / "dagster_home").is_dir():
                home = Path(dagster_home)
                for path in sorted((folder / "dagster_home").rglob("*")):
                    if path.is_file():
                        target = home / path.relative_to(folder / "dagster_home")
                        target.parent.mkdir(parents=True, exist_ok=True)
                        staged = target.with_name(f".{target.name}.restoring")
                        shutil.copy2(path, staged)
                        swaps.append((staged, target))
        except BaseException:
            for staged, _ in swaps:
                if staged.is_dir():
                    shutil.rmtree(staged, ignore_errors=True)
                else:
                    staged.unlink(missing_ok=True)
            raise
        restored = 0
        for staged, target in swaps:
            if staged.is_dir():
                old = target.with_name(f".{target.name}.replaced")
                if target.exists():
                    target.replace(old)
                staged.replace(target)
                shutil.rmtree(old, ignore_errors=True)
                restored += sum(1 for p in target.rglob("*") if p.is_file())
            else:
                staged.replace(target)
                restored += 1
        data_dir.joinpath(WAREHOUSE + ".wal").unlink(missing_ok=True)
        if files_root:
            for rel in FOLDERS:
                if (folder / rel).is_dir():  # as on disk: a folder the snapshot lacks is left
                    restored += _restore_objects(folder / rel, f"{files_root.rstrip('/')}/{rel}")
        if not lake_in_data and (folder / LAKE).is_dir():
            restored += _restore_objects(folder / LAKE, lake_root, delta=True)
        return {"files": restored, "snapshot_created_at": manifest["created_at"]}


def fail_restored_runs(home: Path | None) -> int:
    """Runs a restored instance holds as in progress (the nightly backup's own run, caught by its
    snapshot) are over: the platform was stopped for the restore. Marked failed, else they would
    count as in progress for ever and every governance command would be refused."""
    if home is None or not Path(home).is_dir():
        return 0
    import dagster as dg
    from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(
            filters=dg.RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES))
        )
        for record in records:
            instance.report_run_failed(
                record.dagster_run, "in progress when the snapshot restored here was taken"
            )
    return len(records)


def reapply_ledger(data_dir: Path, config, since: str) -> dict:
    """The erasures made since a restored snapshot, carried out again on every dataset before
    the restored data is read (the erasure ledger is outside every snapshot)."""
    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets.governance.erasure import ledger_since, reapply_erasures

    total = {"erasures": len(ledger_since(data_dir, since)), "people": 0, "rows": 0}
    if not total["erasures"]:
        return total
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        for spec in config.specs():
            done = reapply_erasures(data_dir, spec, defs, instance, since)
            total["people"] += done["people"]
            total["rows"] += done["rows"]
    return total


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from ml_assets.settings import data_dir_from_env

    parser = argparse.ArgumentParser(
        prog="python -m ml_assets.backup", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser(
        "create", help="write a snapshot (default: data/backups/snapshot_<UTC time>)"
    )
    make.add_argument(
        "--to",
        type=Path,
        help="a folder for the snapshot, or a FILE.tar.gz (default: backup.folder)",
    )
    make.add_argument(
        "--keep", type=int, help="snapshots kept in the folder (default: backup.keep)"
    )
    back = sub.add_parser("restore", help="check a snapshot against its manifest and restore it")
    back.add_argument("snapshot", type=Path)
    sub.add_parser("list", help="the snapshots in backup.folder (default data/backups)")
    args = parser.parse_args(argv)
    from ml_assets.console import quiet_dagster

    quiet_dagster()
    data_dir = data_dir_from_env()
    home = Path(os.environ["DAGSTER_HOME"]) if os.environ.get("DAGSTER_HOME") else None
    from ml_assets.settings import Settings

    config = Settings.from_env()
    stores = config.backup_stores()
    from ml_assets.governance.retention import backup_folder

    settings = config.specs()[0].backup  # the first dataset's block, as the nightly job uses
    folder = backup_folder(data_dir, config.specs()[0])
    from contextlib import nullcontext

    from ml_assets.storage.lock import RunInProgress, governance_lock

    changes = args.command in ("create", "restore")
    try:
        with governance_lock(f"backup {args.command}") if changes else nullcontext():
            return _run(args, data_dir, home, config, stores, settings, folder)
    except (BackupError, RunInProgress) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args, data_dir, home, config, stores, settings, folder) -> int:
    from ml_assets.governance import audit

    if args.command == "create":
        spec = config.spec_paths[0]
        # backup.keep prunes backup.folder; another folder (--to) only when --keep says so
        keep = args.keep if args.keep is not None else (settings.keep if args.to is None else None)
        where, manifest = create(data_dir, home, spec, args.to or folder, keep, **stores)
        size = sum(f["bytes"] for f in manifest["files"].values())
        audit.record(
            data_dir, "backup", {"files": len(manifest["files"]), "bytes": size}, to=str(where)
        )
        print(f"snapshot {where}: {len(manifest['files'])} files, {size:,} bytes")
        print(f"the Dagster instance: {manifest['instance']}")
    elif args.command == "restore":
        done = restore(args.snapshot, data_dir, home, **stores)
        audit.record(data_dir, "restore", {"files": done["files"]}, snapshot=str(args.snapshot))
        print(
            f"restored {done['files']} files from {args.snapshot} ({done['snapshot_created_at']})"
        )
        stale = fail_restored_runs(home)
        if stale:
            print(f"marked {stale} run(s) the snapshot caught in progress as failed")
        again = reapply_ledger(data_dir, config, done["snapshot_created_at"])
        if again["erasures"]:
            audit.record(data_dir, "restore_erasures_reapplied", again)
        print(
            f"re-applied {again['erasures']} erasure(s) made since the snapshot: "
            f"{again['people']} person(s) it held erased again ({again['rows']} rows)"
        )
    else:
        for path in snapshots(folder):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
