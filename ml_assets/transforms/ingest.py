"""Reading a landing file as it is: checked, typed, bad rows set aside with their reason.

No Dagster here. `read_landing_file` either returns the typed rows plus the rejected rows, or
raises `LandingFileError` whose message names the file, the row or column, and the fix.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from ml_assets.spec import Column

REJECT_SCHEMA = {
    "source_file": pl.String,
    "line": pl.Int64,
    "column": pl.String,
    "reason": pl.String,
    "raw_line": pl.String,
}
SOURCE_FILE_COLUMN = "_source_file"


class LandingFileError(ValueError):
    """A landing file that cannot be ingested; the message says where and how to fix it."""

    def __init__(self, path: Path, problem: str, fix: str):
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {problem}. Fix: {fix}")


@dataclass
class LandingFileRead:
    path: Path
    sha256: str
    size_bytes: int
    rows: pl.DataFrame
    rejects: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REJECT_SCHEMA))

    @property
    def lines_read(self) -> int:
        return len(self.rows) + self.rejects["line"].n_unique()


CHUNK_BYTES = 8 << 20


@dataclass
class _Scan:
    sha256: str
    size_bytes: int
    newlines: int
    ends_with_newline: bool
    bad_utf8_at: int | None  # offset of the first byte that is not UTF-8


def _scan(path: Path) -> _Scan:
    """One streaming pass: checksum, UTF-8 validity and line count, never the whole file in memory."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = newlines = 0
    bad_at = None
    last = b""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            newlines += chunk.count(b"\n")
            if bad_at is None:
                pending = len(decoder.getstate()[0])
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as err:
                    bad_at = size - pending + err.start
            size += len(chunk)
            last = chunk[-1:]
    if bad_at is None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            bad_at = size - len(decoder.getstate()[0])
    return _Scan(digest.hexdigest(), size, newlines, last == b"\n", bad_at)


def _where(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        before = f.read(offset + 1)
    line = before.count(b"\n", 0, offset) + 1
    col = offset - (before.rfind(b"\n", 0, offset) + 1) + 1
    return f"line {line}, byte {col} (0x{before[offset]:02x})"


def check_file_structure(
    path: Path, columns: list[Column], delimiter: str = ",", allow_extra_columns: bool = False
) -> tuple[_Scan, list[str]]:
    """The checks of a whole file, in one streaming pass plus its header line: not empty, UTF-8,
    the spec's columns. Cheap enough for a sensor; rows are parsed by `read_landing_file`.

    Returns the scan (checksum, size) and the header; raises `LandingFileError`.
    """
    path = Path(path)
    scan = _scan(path)
    expected = [c.name for c in columns]
    if scan.size_bytes < 4096 and not path.read_bytes().strip():
        raise LandingFileError(
            path,
            f"the file is empty ({scan.size_bytes} bytes); a header line is expected: {delimiter.join(expected)}",
            "re-export the file from its source; a day with no rows still needs the header line",
        )
    if scan.bad_utf8_at is not None:
        raise LandingFileError(
            path,
            f"the file is not UTF-8: first invalid byte at {_where(path, scan.bad_utf8_at)}",
            "re-encode it as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`",
        )

    with open(path, encoding="utf-8") as f:
        header_line = f.readline().lstrip("\ufeff").rstrip("\r\n")
    header = next(csv.reader(io.StringIO(header_line), delimiter=delimiter))
    header = [h.strip() for h in header]
    missing = [c for c in expected if c not in header]
    extra = [] if allow_extra_columns else [h for h in header if h not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            parts.append(f"unexpected column(s) {extra}")
        raise LandingFileError(
            path,
            f"line 1 (header): {' and '.join(parts)}; the spec expects {expected}",
            "export the file with the spec's columns, or change the spec's `columns` if the source really changed",
        )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise LandingFileError(
            path, f"line 1 (header): column(s) {dupes} appear twice", "remove the repeated columns"
        )

    return scan, header


def read_landing_file(
    path: Path,
    columns: list[Column],
    delimiter: str = ",",
    max_rejected_fraction: float = 0.05,
    allow_extra_columns: bool = False,
) -> LandingFileRead:
    """Parse one CSV landing file against the spec's columns (header order may differ; columns
    the spec does not name are an error unless `allow_extra_columns`, then read past)."""
    path = Path(path)
    scan, header = check_file_structure(path, columns, delimiter, allow_extra_columns)
    expected = [c.name for c in columns]
    truncated_line: str | None = None
    parse_path = path
    tmp = None
    if not scan.ends_with_newline and scan.newlines == 0:
        # only a header, without its newline: a valid file with no rows
        tmp = tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False)
        tmp.write(path.read_bytes() + b"\n")
        tmp.close()
        parse_path = Path(tmp.name)
    elif not scan.ends_with_newline:
        # A last line without a newline is how an interrupted copy looks: the line may be cut in
        # the middle of a value that still parses, so it is set aside rather than trusted.
        with open(path, "rb") as f:
            f.seek(max(0, scan.size_bytes - (1 << 20)))
            tail = f.read()
        cut = scan.size_bytes - len(tail) + tail.rfind(b"\n") + 1
        truncated_line = tail[tail.rfind(b"\n") + 1 :].decode("utf-8")
        tmp = tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False)
        with open(path, "rb") as src:
            remaining = cut
            while remaining > 0 and (chunk := src.read(min(CHUNK_BYTES, remaining))):
                tmp.write(chunk)
                remaining -= len(chunk)
        tmp.close()
        parse_path = Path(tmp.name)

    by_name = {c.name: c for c in columns}
    duck_columns = (
        "{"
        + ", ".join(
            f"'{h}': '{by_name[h].duckdb_type if h in by_name else 'VARCHAR'}'" for h in header
        )
        + "}"
    )
    con = duckdb.connect()
    try:
        rows = con.sql(
            f"""SELECT * FROM read_csv(?, header=true, columns={duck_columns}, delim=?, quote='"',
                escape='"', auto_detect=false, strict_mode=true, store_rejects=true,
                timestampformat='%Y-%m-%d %H:%M:%S', null_padding=false)""",
            params=[str(parse_path), delimiter],
        ).pl()
        rejects_raw = con.sql(
            "SELECT line, column_name, error_type, error_message, csv_line FROM reject_errors ORDER BY line"
        ).pl()
    except duckdb.Error as err:
        raise LandingFileError(
            path, f"could not be parsed as CSV: {err}", "check the delimiter and quoting"
        ) from None
    finally:
        con.close()
        if tmp is not None:
            Path(tmp.name).unlink(missing_ok=True)

    rejects = (
        rejects_raw.group_by("line", maintain_order=True)
        .agg(
            column=pl.col("column_name").drop_nulls().unique(maintain_order=True).str.join(","),
            reason=pl.col("error_message").str.join("; "),
            raw_line=pl.col("csv_line").first(),
        )
        .select(
            source_file=pl.lit(path.name),
            line=pl.col("line").cast(pl.Int64),
            column=pl.col("column"),
            reason=pl.col("reason"),
            raw_line=pl.col("raw_line"),
        )
    )
    if truncated_line is not None and truncated_line.strip():
        last_line = scan.newlines + 1
        rejects = pl.concat(
            [
                rejects,
                pl.DataFrame(
                    {
                        "source_file": [path.name],
                        "line": [last_line],
                        "column": [None],
                        "reason": ["last line has no newline: the file looks truncated"],
                        "raw_line": [truncated_line],
                    },
                    schema=REJECT_SCHEMA,
                ),
            ]
        )
    rows = rows.select(expected).with_columns(pl.lit(path.name).alias(SOURCE_FILE_COLUMN))
    result = LandingFileRead(
        path=path, sha256=scan.sha256, size_bytes=scan.size_bytes, rows=rows, rejects=rejects
    )

    if result.lines_read and len(rejects) / result.lines_read > max_rejected_fraction:
        first = "; ".join(
            f"line {r['line']}"
            + (f" column {r['column']}" if r["column"] else "")
            + f": {r['reason']}"
            for r in rejects.head(5).iter_rows(named=True)
        )
        raise LandingFileError(
            path,
            f"{len(rejects)} of {result.lines_read} rows are bad (more than the allowed "
            f"{max_rejected_fraction:.0%}); first ones: {first}",
            "fix the export (types and column count must match the spec), or raise "
            "`landing.max_rejected_fraction` in the spec if these rows are expected",
        )
    return result


def reject_rows(
    frame: pl.DataFrame, mask: pl.Expr, column: str | None, reason: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split `frame` by `mask`: (kept rows, rejects in REJECT_SCHEMA) for rows-level rules."""
    flagged = frame.with_columns(_bad=mask.fill_null(False))
    bad = flagged.filter(pl.col("_bad")).drop("_bad")
    kept = flagged.filter(~pl.col("_bad")).drop("_bad")
    value_cols = [c for c in frame.columns if c != SOURCE_FILE_COLUMN]
    rejects = bad.select(
        source_file=pl.col(SOURCE_FILE_COLUMN)
        if SOURCE_FILE_COLUMN in frame.columns
        else pl.lit(None, pl.String),
        line=pl.lit(None, pl.Int64),
        column=pl.lit(column, pl.String),
        reason=pl.lit(reason),
        raw_line=pl.concat_str(
            [pl.col(c).cast(pl.String).fill_null("") for c in value_cols], separator=","
        ),
    )
    return kept, rejects


def check_row_rules(
    frame: pl.DataFrame, columns: list[Column], time_column: str, start: datetime, end: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Reject rows that parse but break the spec: nulls in required columns, times outside the day."""
    all_rejects = [pl.DataFrame(schema=REJECT_SCHEMA)]
    for col in columns:
        if not col.nullable:
            frame, rejects = reject_rows(
                frame,
                pl.col(col.name).is_null(),
                col.name,
                f"{col.name} is empty but the spec says nullable: false",
            )
            all_rejects.append(rejects)
    when = pl.col(time_column).cast(pl.Datetime("us"))
    frame, rejects = reject_rows(
        frame,
        (when < start) | (when >= end),
        time_column,
        f"{time_column} is outside the file's day [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M})",
    )
    all_rejects.append(rejects)
    return frame, pl.concat(all_rejects)


def days_in_file(path: Path, time_column: str, delimiter: str = ",") -> list:
    """The days a landing file has rows for, from its time column (rows whose time does not
    parse belong to no day here; ingestion sets them aside with their reason)."""
    con = duckdb.connect()
    try:
        rows = con.sql(
            f"""SELECT DISTINCT CAST(TRY_CAST("{time_column}" AS TIMESTAMP) AS DATE) AS day
                FROM read_csv(?, header=true, all_varchar=true, delim=?, quote='"', escape='"',
                              strict_mode=false, ignore_errors=true, null_padding=true)
                WHERE day IS NOT NULL ORDER BY day""",
            params=[str(path), delimiter],
        ).fetchall()
    except duckdb.Error as err:
        raise LandingFileError(
            path,
            f"its column {time_column} could not be read: {err}",
            "check the delimiter and header",
        ) from None
    finally:
        con.close()
    return [r[0] for r in rows]
