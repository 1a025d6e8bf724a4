"""Which landing files are new, changed or still being written: the file sensors' cursor logic.

No Dagster here. A sensor lists a landing folder (name, size, change time of each file) and asks
`next_tick` which files are ready; the answer carries the new cursor.

The cursor stays small however many files land:
- a watermark: every file whose change time is at or below it has been decided;
- `decided`: the files above the watermark already handled (name -> size:change time);
- `settling`: the files above the watermark seen on the last tick but not yet ready.
The watermark trails the clock by a safety margin, and decided files below it are dropped, so
the cursor holds only the files of the last few minutes, never the whole history.

A file's change time is max(mtime, ctime): ctime moves when a file is created, renamed into the
folder or copied with its old mtime kept (`mv`, `cp -p`, `rsync -t`), so those still count as
arrivals. A file is ready once it was seen with the same size and change time on an earlier tick
and has not changed for `settle_seconds` (a writer still appending changes both). A changed file
(same name, new size or time) is seen again; its checksum makes it a new run request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

CURSOR_VERSION = 1
# The watermark trails the clock by at least this much, for clocks of file servers that lag.
CLOCK_MARGIN_NS = 60 * 1_000_000_000


@dataclass(frozen=True)
class FileStat:
    size: int
    changed_ns: int
    # an object store's content tag (S3's ETag): a rewrite within the same second of
    # last-modified time, at the same size, still changes the signature
    tag: str = ""

    @property
    def signature(self) -> str:
        if self.tag:
            return f"{self.size}:{self.tag}:{self.changed_ns}"
        return f"{self.size}:{self.changed_ns}"

    @classmethod
    def of(cls, path: Path) -> FileStat:
        st = path.lstat()
        return cls(st.st_size, max(st.st_mtime_ns, st.st_ctime_ns))


def _changed_ns(signature: str) -> int:
    return int(signature.rsplit(":", 1)[1])


class CursorError(ValueError):
    pass


@dataclass
class ArrivalCursor:
    watermark_ns: int = 0
    decided: dict[str, str] = field(default_factory=dict)
    settling: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "watermark_ns": self.watermark_ns,
                "decided": self.decided,
                "settling": self.settling,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> ArrivalCursor:
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            if raw.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor version {raw.get('v')!r}, expected {CURSOR_VERSION}")
            return cls(int(raw["watermark_ns"]), dict(raw["decided"]), dict(raw["settling"]))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CursorError(
                f"the sensor cursor {text[:200]!r} cannot be read ({err}). Fix: reset the sensor's "
                "cursor in the UI (Sensors > ... > Set cursor value, empty); files already ingested "
                "are then recognised by their checksum and not run again"
            ) from None


@dataclass
class Tick:
    ready: list[str]  # new or changed files, settled: process these now
    waiting: list[str]  # files still changing (or not yet seen twice)
    deferred: list[str]  # settled, but over this tick's limit: next tick takes them
    cursor: ArrivalCursor


def next_tick(
    cursor: ArrivalCursor,
    listing: dict[str, FileStat],
    now_ns: int,
    settle_seconds: float,
    *,
    is_due: Callable[[str], bool] = lambda name: True,
    max_files: int = 500,
    max_bytes: int = 1 << 30,
    clock_margin_ns: int = CLOCK_MARGIN_NS,
) -> Tick:
    """Decide which files of `listing` to process now, and the cursor after this tick.

    A settled file is ready when `is_due(name)` (e.g. its day has ended); otherwise it keeps
    settling. At most `max_files` files and about `max_bytes` bytes (at least one file) are
    ready per tick, since the sensor reads each one; the rest are deferred to the next tick.
    A tick that is repeated (the daemon stopped before the cursor was saved) returns the same
    files again, so the run keys made from them deduplicate. `clock_margin_ns`: how far behind
    the clock a file's change time may be when it first appears (an object store dates a
    multipart upload by its start, so its margin is the longest upload).
    """
    settle_ns = int(settle_seconds * 1_000_000_000)
    candidates = sorted(
        (stat.changed_ns, name, stat)
        for name, stat in listing.items()
        if stat.changed_ns > cursor.watermark_ns and cursor.decided.get(name) != stat.signature
    )
    ready, waiting, deferred = [], [], []
    ready_bytes = 0
    settling: dict[str, str] = {}
    for _, name, stat in candidates:
        settled = (
            cursor.settling.get(name) == stat.signature and now_ns - stat.changed_ns >= settle_ns
        )
        within_budget = len(ready) < max_files and (
            not ready or ready_bytes + stat.size <= max_bytes
        )
        if settled and is_due(name) and within_budget:
            ready.append(name)
            ready_bytes += stat.size
            continue
        settling[name] = stat.signature
        (deferred if settled and is_due(name) else waiting).append(name)

    decided = dict(cursor.decided)
    for name in ready:
        decided[name] = listing[name].signature
    # Everything at or below the watermark is decided; files still open keep it below them.
    watermark = now_ns - max(settle_ns, clock_margin_ns)
    if settling:
        watermark = min(watermark, min(_changed_ns(s) for s in settling.values()) - 1)
    watermark = max(watermark, cursor.watermark_ns)
    decided = {n: s for n, s in decided.items() if _changed_ns(s) > watermark}
    return Tick(ready, waiting, deferred, ArrivalCursor(watermark, decided, settling))


def date_pattern(pattern: str) -> re.Pattern:
    """The spec's glob pattern (with `{date}`) as a regex whose group `date` is the day."""
    parts = pattern.split("{date}")
    translated = [
        "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in part)
        for part in parts
    ]
    return re.compile(r"(?P<date>\d{4}-\d{2}-\d{2})".join(translated) + r"\Z")


def day_of_file(name: str, pattern: str) -> date:
    """The partition day a landing file belongs to, from the `{date}` in its name."""
    match = date_pattern(pattern).match(name)
    if not match:
        raise ValueError(
            f"{name}: the name does not match the spec's landing pattern {pattern!r}; rename it so "
            "that `{date}` is the day as YYYY-MM-DD"
        )
    try:
        return date.fromisoformat(match["date"])
    except ValueError:
        raise ValueError(
            f"{name}: {match['date']!r} is not a calendar date; rename the file with the day as YYYY-MM-DD"
        ) from None
