"""The files governance changes, wherever they are: the data folder (embedded profile) or an
object store's prefix (cluster profile, ML_ASSETS_FILES_ROOT=s3://...).

Erasure and retention walk, rewrite and remove landing, archive, quarantine, report and batch
files and model versions through these few functions, on a `pathlib.Path` or on the `UPath` the
object store hands out, so that one code path serves both profiles. Where they differ:

- a local rewrite is written aside, fsynced, given the old times and renamed over the file,
  owner-only; an object is replaced by one PUT, which the store applies whole;
- a local folder may hold links, which are never followed nor rewritten; objects have none;
- an object store's listings are cached by s3fs for the life of the process: each walk
  lists afresh, or a file rewritten or removed a moment ago would be seen as it was.

Where the audit log and a pending erasure's record live is not here: they are the machine's
own (`<ML_ASSETS_DATA_DIR>/governance/`), on both profiles.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def file_root(data_dir: Path, defs):
    """The root of landing, archive, quarantine, reports and batches: the code location's file
    store (the data folder, or the object store's prefix); the data folder without definitions."""
    if defs is not None:
        return defs.resources["files"].folder()
    return Path(data_dir)


def models_folder(data_dir: Path, spec, defs):
    """The dataset's model registry folder (local, or on the object store)."""
    if defs is not None:
        return defs.resources["registry"].for_dataset(spec).folder
    from ml_assets.names import dataset_folder

    return Path(data_dir).joinpath(*dataset_folder(spec, "models"))


def is_local(path) -> bool:
    return isinstance(path, Path)


def files_under(folder, pattern: str = "*") -> list:
    """The files below `folder` whose name matches `pattern`, sorted; links are left out (a
    link's target is not ours to change)."""
    if not is_local(folder):
        folder.fs.invalidate_cache(folder.path)
    if not folder.is_dir():
        return []
    found = folder.rglob(pattern)
    if is_local(folder):
        return sorted(p for p in found if p.is_file() and not p.is_symlink())
    return sorted((p for p in found if p.is_file()), key=str)


def rewrite(path, data: bytes) -> None:
    """Replace a file's bytes whole: a reader sees the old or the new file, never a mix."""
    if not is_local(path):
        path.write_bytes(data)
        return
    tmp = path.with_name(f".{path.name}.erasing")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    stat = path.stat()
    # the registry and the retention policy date some files by their time: a rewrite keeps it
    os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    tmp.replace(path)


def rename(path, target) -> None:
    """Move a file to `target` (on an object store: a server-side copy, then a delete)."""
    if is_local(path):
        path.replace(target)
    else:
        path.rename(target)


def remove(path) -> None:
    """Remove a file or a whole folder; a link goes, never what it points at."""
    if is_local(path):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    elif path.is_dir():
        path.fs.rm(path.path, recursive=True)
    elif path.exists():
        path.unlink()
