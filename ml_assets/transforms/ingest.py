"""Reading a landing file as it is: checked, typed, bad rows set aside with their reason.

No Dagster here. `read_landing_file` either returns the typed rows plus the rejected rows, or
raises `LandingFileError` whose message names the file, the row or column, and the fix.
"""

from __future__ import annotations

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


def _first_bad_utf8(data: bytes, err: UnicodeDecodeError) -> str:
    line = data.count(b"\n", 0, err.start) + 1
    col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    return f"line {line}, byte {col} (0x{data[err.start]:02x})"


def read_landing_file(
    path: Path,
    columns: list[Column],
    delimiter: str = ",",
    max_rejected_fraction: float = 0.05,
) -> LandingFileRead:
    """Parse one CSV landing file against the spec's columns (header order may differ)."""
    path = Path(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    expected = [c.name for c in columns]
    if not data.strip():
        raise LandingFileError(
            path,
            f"the file is empty ({len(data)} bytes); a header line is expected: {delimiter.join(expected)}",
            "re-export the file from its source; a day with no rows still needs the header line",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise LandingFileError(
            path,
            f"the file is not UTF-8: first invalid byte at {_first_bad_utf8(data, err)}",
            "re-encode it as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]

    header_line = text.split("\n", 1)[0].rstrip("\r")
    header = next(csv.reader(io.StringIO(header_line), delimiter=delimiter))
    header = [h.strip() for h in header]
    missing = [c for c in expected if c not in header]
    extra = [h for h in header if h not in expected]
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

    truncated_line: str | None = None
    parse_path = path
    tmp = None
    if not text.endswith("\n"):
        # A last line without a newline is how an interrupted copy looks: the line may be cut in
        # the middle of a value that still parses, so it is set aside rather than trusted.
        body, _, truncated_line = text.rpartition("\n")
        tmp = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, encoding="utf-8")
        tmp.write(body + "\n")
        tmp.close()
        parse_path = Path(tmp.name)

    by_name = {c.name: c for c in columns}
    duck_columns = "{" + ", ".join(f"'{h}': '{by_name[h].duckdb_type}'" for h in header) + "}"
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
        last_line = text.count("\n") + 1
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
        path=path, sha256=digest, size_bytes=len(data), rows=rows, rejects=rejects
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
