"""What every storage backend shares: its errors, the checked window write, the quarantine
sidecar and the names a copy of a landing file may take. Backends import this module; it
imports none of them."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl


class MissingTableError(RuntimeError):
    """A table an asset reads does not exist yet: its upstream asset never ran."""


class WarehouseBusy(RuntimeError):
    """Another process is writing the warehouse file right now."""


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


class SingleWrites:
    """The one-table forms of a warehouse's writes, for both backends (the DuckDB file here,
    Delta tables in ml_assets.storage.delta_lake): each is its batch form with one entry.

    In a run, the warehouse holds the governance lock shared from its setup to the run's end
    (`storage.lock`): an erasure, retention, key rotation or restore never changes the data
    under a run, and a run started during one waits for it."""

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext):
        from ml_assets.storage.lock import GOVERNANCE_RUN_TAG, hold_for_run

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


def free_name(path: Path) -> Path:
    if not path.exists():
        return path
    for i in range(1, 100_000):
        candidate = path.with_name(f"{path.stem}.{i}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise RuntimeError(f"no free name for {path} in quarantine")
