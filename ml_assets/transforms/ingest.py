"""Reading a landing file as it is: checked, typed, bad rows set aside with their reason.

No Dagster here. `read_landing_file` either returns the typed rows plus the rejected rows, or
raises `LandingFileError` whose message names the file, the row or column, and the fix.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from ml_assets.spec import Column, LandingLimits
from ml_assets.storage.arrow import DUCKDB_CONFIG
from ml_assets.transforms.privacy import (
    Pseudonymize,
    guard_out_of_place_values,
    pseudonymize_columns,
    redact_raw_lines,
    withhold_values,
)
from ml_assets.transforms.sql import quote_literal

REJECT_SCHEMA = {
    "source_file": pl.String,
    "line": pl.Int64,
    "column": pl.String,
    "reason": pl.String,
    "raw_line": pl.String,
}
SOURCE_FILE_COLUMN = "_source_file"
# what a header's column name looks like; anything else in a header is not echoed in errors
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


class LandingFileError(ValueError):
    """A landing file that cannot be ingested; the message says where and how to fix it."""

    def __init__(self, path: Path, problem: str, fix: str):
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {problem}. Fix: {fix}")


class LandingFileTooBig(LandingFileError):
    """A file that may be valid but does not fit in memory here: deferred, never quarantined
    as bad (it stays in landing; the run that needs it fails naming the fix)."""


def crashed_check(path: Path, err: BaseException) -> str:
    """The quarantine reason of a file whose check raised something unforeseen: the error's
    kind only (its message may quote the file's values)."""
    return str(
        LandingFileError(
            path,
            f"checking the file failed with {type(err).__name__} (message withheld: it may "
            "quote the file's values)",
            "look at the file in quarantine; if it is valid, report the error with the file's "
            "shape (not its contents) and drop it again",
        )
    )


@contextmanager
def landing_connection(
    path: Path, timezone: str = "UTC"
) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """A DuckDB connection that can read `path` and nothing else, and the name to read it by.

    A landing file's name comes from outside: DuckDB's readers take a path as a glob (`[b]`,
    `*`, `?`) and would read other files, so the reader is given a link of a fixed name in a
    folder of its own instead. External access is then switched off for the connection, with
    that link as its only allowed path, and the configuration locked: no query it runs can
    open another file, whatever a header or a value holds. Times are read in `timezone`.
    """
    folder = tempfile.mkdtemp(prefix="ml_assets_landing_")
    link = os.path.join(folder, "landing.csv")
    os.symlink(os.path.abspath(path), link)
    con = duckdb.connect(config=DUCKDB_CONFIG)
    try:
        con.execute(f"SET TimeZone = {quote_literal(timezone)}")
        con.execute(f"SET allowed_paths = [{quote_literal(link)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        yield con, link
    finally:
        con.close()
        os.unlink(link)
        os.rmdir(folder)


def irregular_entry_error(path: Path, kind: str) -> str:
    """The reason a landing entry that is not a regular file is refused (it is never read)."""
    return str(
        LandingFileError(
            path,
            f"it is {kind}",
            "put the file itself in the landing folder (copy it, or write it elsewhere and "
            "rename it in); the entry was moved to quarantine as it was, its target untouched",
        )
    )


@dataclass
class LandingFileRead:
    path: Path
    sha256: str
    size_bytes: int
    rows: pl.DataFrame
    rejects: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REJECT_SCHEMA))
    # {column: values stored as their pseudonym}: personal-looking values out of place
    pseudonymized_values: dict[str, int] = field(default_factory=dict)

    @property
    def lines_read(self) -> int:
        # a parse reject carries its line (one line may fail on several columns); a row that
        # parsed but broke a rule has no line number and counts once
        lines = self.rejects["line"]
        return len(self.rows) + lines.drop_nulls().n_unique() + lines.null_count()


CHUNK_BYTES = 8 << 20
# DuckDB's CSV reader rejects a line longer than this (its `max_line_size`), and drops a line
# longer than its buffer without a word; the scan finds such lines itself so none vanishes.
MAX_LINE_BYTES = 2 << 20
NEWLINE = ord("\n")


@dataclass
class _Scan:
    sha256: str
    size_bytes: int
    newlines: int
    ends_with_newline: bool
    bad_utf8_at: int | None  # offset of the first byte that is not UTF-8
    blank_lines: int = 0
    # offset just past the last newline: what follows is an unterminated last line
    last_line_end: int = 0
    # (line number, offset, bytes) of every line longer than MAX_LINE_BYTES
    long_lines: list[tuple[int, int, int]] = field(default_factory=list)


def _scan(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> _Scan:
    """One streaming pass: checksum, UTF-8 validity, lines, blank and over-long lines; never the
    whole file in memory."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = newlines = blank = 0
    line_start = 0  # offset where the current line began
    long_lines: list[tuple[int, int, int]] = []
    bad_at = None
    last = b""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            if bad_at is None:
                pending = len(decoder.getstate()[0])
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as err:
                    bad_at = size - pending + err.start
            ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == NEWLINE) + size
            if len(ends):
                starts = np.concatenate(([line_start], ends[:-1] + 1))
                lengths = ends - starts  # bytes before the newline
                blank += int((lengths == 0).sum())
                # a line of only a carriage return is blank too (CRLF files)
                for i in np.flatnonzero(lengths == 1):
                    at = int(starts[i]) - size
                    if (chunk[at : at + 1] if at >= 0 else last) == b"\r":
                        blank += 1
                for i in np.flatnonzero(lengths > max_line_bytes):
                    long_lines.append((newlines + int(i) + 1, int(starts[i]), int(lengths[i])))
                newlines += len(ends)
                line_start = int(ends[-1]) + 1
            size += len(chunk)
            last = chunk[-1:]
    if bad_at is None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            bad_at = size - len(decoder.getstate()[0])
    if size - line_start > max_line_bytes:
        long_lines.append((newlines + 1, line_start, size - line_start))
    return _Scan(
        digest.hexdigest(),
        size,
        newlines,
        last == b"\n",
        bad_at,
        blank_lines=blank,
        last_line_end=line_start,
        long_lines=long_lines,
    )


def _where(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        before = f.read(offset + 1)
    line = before.count(b"\n", 0, offset) + 1
    col = offset - (before.rfind(b"\n", 0, offset) + 1) + 1
    return f"line {line}, byte {col} (0x{before[offset]:02x})"


def _header_line(path: Path, limits: LandingLimits) -> str:
    """The first line of `path`, read up to `limits.max_header_bytes` (never the whole file)."""
    with open(path, "rb") as f:
        head = f.read(limits.max_header_bytes + 1)
    end = head.find(b"\n")
    if end < 0 and len(head) > limits.max_header_bytes:
        raise LandingFileError(
            path,
            f"line 1 (the header) is longer than the {limits.max_header_bytes:,}-byte limit of a "
            "header (no newline in its first bytes)",
            "put a header line of the spec's column names first; if the header really is this "
            "long, raise `landing.limits.max_header_bytes` in the spec",
        )
    line = head if end < 0 else head[:end]
    return line.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r")


def _parse_header(path: Path, line: str, delimiter: str, limits: LandingLimits) -> list[str]:
    fields = line.count(delimiter) + 1
    if fields > limits.max_columns:
        raise LandingFileError(
            path,
            f"line 1 (header) has {fields:,} fields, over the limit of "
            f"{limits.max_columns:,} columns",
            "export the spec's columns only, or raise `landing.limits.max_columns` in the spec",
        )
    if csv.field_size_limit() < limits.max_header_bytes:
        csv.field_size_limit(limits.max_header_bytes)
    try:
        header = next(csv.reader(io.StringIO(line), delimiter=delimiter), [])
    except csv.Error:
        raise LandingFileError(
            path,
            "line 1 (header) is not a CSV line (an unbalanced quote?)",
            "write the header as the spec's column names separated by the delimiter",
        ) from None
    return [h.strip() for h in header]


def check_file_structure(
    path: Path,
    columns: list[Column],
    delimiter: str = ",",
    allow_extra_columns: bool = False,
    limits: LandingLimits | None = None,
) -> tuple[_Scan, list[str]]:
    """The checks of a whole file, in one streaming pass plus its header line: within the
    landing's limits, not empty, UTF-8, the spec's columns. Cheap enough for a sensor; rows are
    parsed by `read_landing_file`.

    Returns the scan (checksum, size) and the header; raises `LandingFileError`.
    """
    path = Path(path)
    limits = limits or LandingLimits()
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise LandingFileError(
            path,
            f"the file is {size:,} bytes, over the {limits.max_file_bytes:,}-byte limit of a "
            "landing file (it was not read)",
            "split the export into several files of the day, or raise "
            "`landing.limits.max_file_bytes` in the spec if the machine has the memory",
        )
    header = _parse_header(path, _header_line(path, limits), delimiter, limits)
    scan = _scan(path, limits.max_line_bytes)
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

    known = set(expected)
    present = set(header)
    missing = [c for c in expected if c not in present]
    extra = [] if allow_extra_columns else [h for h in header if h not in known]
    unnamed = [h for h in header if h not in known and not _NAME.fullmatch(h)]
    if len(missing) == len(expected) and (
        len(unnamed) > len(header) / 3 or len(header) >= len(expected)
    ):
        # most fields are no names at all: the first line is data, maybe a person's row
        raise LandingFileError(
            path,
            f"line 1 does not look like a header: {len(unnamed)} of its {len(header)} fields are "
            f"not column names and {len(missing)} of the spec's {len(expected)} columns are missing "
            "(values not shown, they may be personal)",
            f"put the header line first: {delimiter.join(expected)}",
        )
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            shown = [h for h in extra if _NAME.fullmatch(h)]
            hidden = len(extra) - len(shown)
            parts.append(
                f"unexpected column(s) {shown}"
                + (f" and {hidden} more not shown (not names of columns)" if hidden else "")
            )
        raise LandingFileError(
            path,
            f"line 1 (header): {' and '.join(parts)}; the spec expects {expected}",
            "export the file with the spec's columns, or change the spec's `columns` if the source really changed",
        )
    dupes = sorted(h for h, n in Counter(header).items() if n > 1)
    if dupes:
        shown = [h for h in dupes if _NAME.fullmatch(h)]
        raise LandingFileError(
            path,
            f"line 1 (header): column(s) {shown} appear twice"
            + (f" ({len(dupes) - len(shown)} more not shown)" if len(shown) < len(dupes) else ""),
            "remove the repeated columns",
        )

    return scan, header


RAW_LINE_CHARS = 10_000  # a rejected line is kept up to this many characters (DuckDB's own cap)


def _reject(path: Path, line: int, reason: str, raw_line: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source_file": [path.name],
            "line": [line],
            "column": [None],
            "reason": [reason],
            "raw_line": [raw_line[:RAW_LINE_CHARS]],
        },
        schema=REJECT_SCHEMA,
    )


def _read_text(path: Path, offset: int, size: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(min(size, RAW_LINE_CHARS * 4)).decode("utf-8", errors="replace")


def _embedded_newlines(frame: pl.DataFrame) -> int:
    text = [c for c, t in frame.schema.items() if t == pl.String]
    if not text or frame.is_empty():
        return 0
    counts = frame.select(pl.col(c).str.count_matches("\n", literal=True).sum() for c in text)
    return int(sum(v or 0 for v in counts.row(0)))


def _merge_cut_record(rejects: pl.DataFrame, tail_line: int) -> pl.DataFrame:
    """A cut last line that ends a quoted value opened lines before: one record, one reject.

    The parser reads the file up to its last newline; when that newline is inside a quoted
    value, the parser itself reports the value's first line as an unterminated quote, and the
    cut line after it is the rest of that record. Both are set aside as one record (the lines
    were counted one by one when checking that none is lost). The parser's own quote rules
    decide, so a stray quote inside an unquoted value is not mistaken for one."""
    numbered = rejects.filter(pl.col("line").is_not_null() & (pl.col("line") < tail_line))
    if numbered.is_empty():
        return rejects
    last = numbered.filter(pl.col("line") == numbered["line"].max())
    if not last["reason"].str.contains("unterminated quote", literal=True).any():
        return rejects
    opened = int(last["line"][0])
    tail = rejects.filter(pl.col("line") == tail_line)
    merged = pl.DataFrame(
        {
            "source_file": tail["source_file"][:1],
            "line": [opened],
            "column": [None],
            "reason": [
                f"last line has no newline: the file looks truncated (inside a quoted value "
                f"that line {opened} opens)"
            ],
            "raw_line": [str(last["raw_line"][0] or "") + str(tail["raw_line"][0] or "")],
        },
        schema=rejects.schema,
    )
    keep = rejects.filter(
        pl.col("line").is_null() | ((pl.col("line") != opened) & (pl.col("line") != tail_line))
    )
    return pl.concat([keep, merged]).sort("line", nulls_last=True)


def _copy_blanking(src, dst, end: int, blanks: list[tuple[int, int]]) -> None:
    """Copy src[:end] to dst, each (offset, size) range left out (its newline stays)."""
    pos = 0
    for offset, size in [*blanks, (end, 0)]:
        remaining = offset - pos
        src.seek(pos)
        while remaining > 0 and (chunk := src.read(min(CHUNK_BYTES, remaining))):
            dst.write(chunk)
            remaining -= len(chunk)
        pos = offset + size


TIMESTAMP_HINT = (
    "a timestamp is read as 2024-01-31 13:45:00, with a T for the space, fractional seconds, a Z "
    "or +hh:mm offset, or a date alone; for another layout set the column's `format` in the spec"
)
_PARSED = "__parsed__"


def _read_type(col: Column) -> str:
    """The type the CSV reader gives a spec column: timestamps with their offsets, columns with
    an explicit format as text (parsed after)."""
    if col.format is not None:
        return "VARCHAR"
    return "TIMESTAMPTZ" if col.type == "timestamp" else col.duckdb_type


def _typed_sql(col: Column, name: str, timezone: str) -> str | None:
    """What replaces a column read by `_read_type` (under the quoted name `name`), or None when
    it is kept as read."""
    if col.type == "timestamp" and col.format is None:
        # the time in the partitions' timezone
        return f"timezone({quote_literal(timezone)}, {name})"
    if col.is_bool_category:
        return f"CASE WHEN {name} THEN 'true' WHEN NOT {name} THEN 'false' END"
    return None


def _parse_sql(col: Column, text: str, timezone: str) -> str:
    """SQL that parses the text `text` as the time or date of `col` (NULL when it does not)."""
    zone = quote_literal(timezone)
    if col.format is None:
        local = f"timezone({zone}, TRY_CAST({text} AS TIMESTAMPTZ))"
    elif "%z" in col.format or "%Z" in col.format:
        local = f"timezone({zone}, try_strptime({text}, {quote_literal(col.format)}))"
    else:
        local = f"try_strptime({text}, {quote_literal(col.format)})"
    return f"CAST({local} AS DATE)" if col.type == "date" else local


def _apply_formats(
    rows: pl.DataFrame, formatted: list[Column], expected: list[str], delimiter: str = ","
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each explicitly formatted column replaced by its parsed value; rows whose value does not
    match the format set aside (one reject per row, for its first column that fails)."""
    all_rejects = [pl.DataFrame(schema=REJECT_SCHEMA)]
    for col in formatted:
        parsed = f"{_PARSED}{col.name}"
        rows, rejects = reject_rows(
            rows,
            pl.col(col.name).is_not_null() & pl.col(parsed).is_null(),
            col.name,
            f"{col.name} does not match the spec's format {col.format!r}: fix the value, or "
            "the column's `format` in the spec",
            value_columns=expected,
            delimiter=delimiter,
        )
        all_rejects.append(rejects)
    rows = rows.with_columns(pl.col(f"{_PARSED}{c.name}").alias(c.name) for c in formatted)
    return rows.drop(f"{_PARSED}{c.name}" for c in formatted), pl.concat(all_rejects)


def _parse_csv(
    path: Path,
    parse_path: Path,
    header: list[str],
    columns: list[Column],
    delimiter: str,
    timezone: str,
    limits: LandingLimits,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows of `parse_path` typed by the spec, named by `header`, and DuckDB's rejected
    lines. The header's names never enter the SQL: the reader's columns are named by position
    (`_c0`, `_c1`, ...) and renamed in the frame, and the connection reads that one file only
    (`landing_connection`)."""
    by_name = {c.name: c for c in columns}
    alias = {h: f"_c{i}" for i, h in enumerate(header)}
    read_types = {alias[h]: _read_type(by_name[h]) if h in by_name else "VARCHAR" for h in header}
    duck_columns = "{" + ", ".join(f"'{a}': '{t}'" for a, t in read_types.items()) + "}"
    typed = [by_name[h] for h in header if h in by_name]
    replaced = ", ".join(
        f"{sql} AS {alias[c.name]}"
        for c in typed
        if (sql := _typed_sql(c, alias[c.name], timezone)) is not None
    )
    formatted = [c for c in typed if c.format is not None]
    parsed = "".join(
        f", {_parse_sql(c, alias[c.name], timezone)} AS _p{i}" for i, c in enumerate(formatted)
    )
    try:
        with landing_connection(parse_path, timezone) as (con, readable):
            rows = con.sql(
                f"""SELECT *{f" REPLACE ({replaced})" if replaced else ""}{parsed}
                    FROM read_csv(?, header=true, columns={duck_columns}, delim=?, quote='"',
                    escape='"', auto_detect=false, strict_mode=true, store_rejects=true,
                    null_padding=false, max_line_size={int(limits.max_line_bytes)})""",
                params=[readable, delimiter],
            ).pl()
            rejects_raw = con.sql(
                "SELECT line, line_byte_position, byte_position, column_name, error_type, error_message, csv_line FROM reject_errors ORDER BY line"
            ).pl()
    except duckdb.OutOfMemoryException:
        raise LandingFileTooBig(
            path,
            "it does not fit in the memory DuckDB may use here, so it was not read",
            "split the export into several files of the day, or run ingestion on a machine "
            "with more memory; the file stays in landing",
        ) from None
    except duckdb.Error as err:
        raise LandingFileError(
            path,
            f"could not be parsed as CSV: {withhold_values(_named(str(err), alias))}",
            "check the delimiter and quoting (a line of only a carriage return in a file with "
            "\\n line ends also stops the reader)",
        ) from None
    names = {a: h for h, a in alias.items()} | {
        f"_p{i}": f"{_PARSED}{c.name}" for i, c in enumerate(formatted)
    }
    rows = rows.rename(names)
    rejects_raw = _true_lines(parse_path, rejects_raw)
    rejects_raw = rejects_raw.with_columns(
        column_name=pl.col("column_name").replace_strict(names, default=None),
        error_message=pl.col("error_message").map_elements(
            lambda m: _named(m, alias), return_dtype=pl.String
        ),
    )
    return rows, rejects_raw.with_columns(
        error_message=pl.when(pl.col("error_message").str.contains("TIME ZONE", literal=True))
        .then(
            pl.col("error_message").str.replace(
                "'TIMESTAMP WITH TIME ZONE'", "'TIMESTAMP'", literal=True
            )
            + f" ({TIMESTAMP_HINT})"
        )
        .otherwise(pl.col("error_message"))
    )


def _true_lines(parse_path: Path, rejects: pl.DataFrame) -> pl.DataFrame:
    """The reader's rejects numbered by where their line starts in the file.

    DuckDB's `line` can be one off (a cast error on line 2 was reported as line 3 beside a
    short line 3, so two bad lines counted as one); its byte offset of the line is right. A
    record may start with the blank lines the reader read into it: they are skipped."""
    if rejects.is_empty():
        return rejects.drop("line_byte_position")
    lead = (
        rejects["csv_line"]
        .fill_null("")
        .map_elements(
            lambda t: len(t.encode()) - len(t.lstrip("\r\n").encode()), return_dtype=pl.Int64
        )
    )
    starts = (rejects["line_byte_position"].cast(pl.Int64) + lead).to_numpy()
    wanted = np.unique(starts)
    before = np.zeros(len(wanted), dtype=np.int64)  # newlines before each wanted offset
    offset = 0
    with open(parse_path, "rb") as f:
        while offset <= wanted[-1] and (chunk := f.read(CHUNK_BYTES)):
            ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == NEWLINE) + offset
            before += np.searchsorted(ends, wanted, side="left")
            offset += len(chunk)
    line = dict(zip(wanted.tolist(), (before + 1).tolist(), strict=True))
    return rejects.with_columns(
        line=pl.Series([line[int(s)] for s in starts], dtype=pl.Int64)
    ).drop("line_byte_position")


_ALIAS = re.compile(r'"(_c\d+)"')


def _named(message: str, alias: dict[str, str]) -> str:
    """A reader message with the spec's column names where it says `"_c4"` (only spec columns
    are typed, so only their names can appear; another header name stays its position)."""
    back = {a: h for h, a in alias.items()}
    return _ALIAS.sub(lambda m: f'"{back.get(m.group(1), m.group(1))}"', message or "")


def _guard(
    rows: pl.DataFrame, columns: list[Column], pseudonymize: Pseudonymize | None, path: Path
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Personal-looking values in non-personal columns (`privacy.guard_out_of_place_values`):
    text ones pseudonymized in place, rows with a card-like number set aside without their
    values. Returns (rows, rejects, {column: values pseudonymized})."""
    text = {
        c.name: (
            {*c.categories, *(v for v in (c.unknown_category, c.impute.value) if v is not None)}
            if c.categories is not None
            else None
        )
        for c in columns
        if c.role != "personal" and c.table_type == "string" and c.format is None
    }
    numbers = [c.name for c in columns if c.type in ("int", "float")]
    rows, bad, replaced = guard_out_of_place_values(rows, text, numbers, pseudonymize)
    if not bad.any():
        return rows, pl.DataFrame(schema=REJECT_SCHEMA), replaced
    rejects = pl.DataFrame(
        {
            "source_file": [path.name] * int(bad.sum()),
            "line": [None] * int(bad.sum()),
            "column": [",".join(numbers)] * int(bad.sum()),
            "reason": [
                "a number column holds what looks like a card number (columns swapped?): the row "
                "is kept out of the tables, its line is in the archived copy of the file"
            ]
            * int(bad.sum()),
            "raw_line": ["(withheld: it may hold a card number)"] * int(bad.sum()),
        },
        schema=REJECT_SCHEMA,
    )
    return rows.filter(~bad), rejects, replaced


def read_landing_file(
    path: Path,
    columns: list[Column],
    delimiter: str = ",",
    max_rejected_fraction: float = 0.05,
    allow_extra_columns: bool = False,
    pseudonymize: Pseudonymize | None = None,
    timezone: str = "UTC",
    limits: LandingLimits | None = None,
) -> LandingFileRead:
    """Parse one CSV landing file against the spec's columns (header order may differ; columns
    the spec does not name are an error unless `allow_extra_columns`, then read past).

    Timestamps come back as times in `timezone` (the partitions' one, see `TIMESTAMP_HINT`);
    a column with a `format` is parsed by it.

    Personal columns (role `personal`) come back as keyed pseudonyms when `pseudonymize` is given,
    and rejected lines never hold their clear values (`privacy.redact_raw_lines`).

    Every data line ends up stored or rejected: the lines the scan counted are compared with the
    rows read plus the lines rejected, and a file where they differ fails.
    """
    path = Path(path)
    limits = limits or LandingLimits()
    scan, header = check_file_structure(path, columns, delimiter, allow_extra_columns, limits)
    expected = [c.name for c in columns]
    cut = scan.last_line_end  # the parser reads the file up to here
    tail_bytes = scan.size_bytes - cut
    extra_rejects: list[pl.DataFrame] = []
    parse_path = path
    tmp = None
    if scan.newlines == 0:
        # only a header, without its newline: a valid file with no rows
        tmp = tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False)
        tmp.write(path.read_bytes() + b"\n")
        tmp.close()
        parse_path = Path(tmp.name)
        tail_bytes = 0
    else:
        if tail_bytes:
            # A last line without a newline is how an interrupted copy looks: the line may be cut
            # in the middle of a value that still parses, so it is set aside rather than trusted,
            # and the parser sees the file only up to the last complete line.
            cut_line = _read_text(path, cut, tail_bytes)
            if cut_line.strip() or tail_bytes > len(cut_line):
                extra_rejects.append(
                    _reject(
                        path,
                        scan.newlines + 1,
                        "last line has no newline: the file looks truncated",
                        cut_line,
                    )
                )
            else:
                tail_bytes = 0  # only blanks after the last newline: no line there
        # DuckDB's reader rejects some over-long lines and silently drops others with the lines
        # around them: they are set aside here and blanked in the copy the parser reads.
        long_lines = [ln for ln in scan.long_lines if ln[1] < cut]
        for line, offset, size in long_lines:
            extra_rejects.append(
                _reject(
                    path,
                    line,
                    f"the line is {size:,} bytes long, over the {limits.max_line_bytes:,}-byte "
                    "limit of a line (`landing.limits.max_line_bytes`)",
                    _read_text(path, offset, size),
                )
            )
        if scan.size_bytes > cut or long_lines:
            tmp = tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False)
            with open(path, "rb") as src:
                _copy_blanking(src, tmp, cut, [(o, n) for _, o, n in long_lines])
            tmp.close()
            parse_path = Path(tmp.name)

    try:
        rows, rejects_raw = _parse_csv(
            path, parse_path, header, columns, delimiter, timezone, limits
        )
    finally:
        if tmp is not None:
            Path(tmp.name).unlink(missing_ok=True)
    formatted = [c for c in columns if c.format is not None and c.name in header]

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

    # The reader drops a line longer than its buffer without a word (a 31 MiB line vanished):
    # count what it returned against the lines the scan saw, and name the long lines it lost.
    if extra_rejects:
        rejects = pl.concat([rejects, *extra_rejects]).sort("line")
    # the header is the first line; a header-only file without its newline has no data line
    data_lines = max(0, scan.newlines - 1 - scan.blank_lines + (1 if tail_bytes else 0))
    accounted = len(rows) + rejects["line"].n_unique()
    if accounted < data_lines:
        # a quoted value may hold a newline: one row, several lines
        accounted += _embedded_newlines(rows) + _embedded_newlines(rejects.select("raw_line"))
    if accounted != data_lines:
        raise LandingFileError(
            path,
            f"{data_lines} data lines were counted but the CSV reader returned {len(rows)} rows and "
            f"{rejects['line'].n_unique()} rejected lines, so lines would be lost (a stray quote "
            "makes the reader take the lines after it as one value)",
            "look for lines of unusual length or unbalanced quotes (`awk '{print length}'` shows "
            "line lengths), fix or split them, and drop the file again",
        )
    if tail_bytes:
        rejects = _merge_cut_record(rejects, scan.newlines + 1)
    personal = [c.name for c in columns if c.role == "personal"]
    rejects = redact_raw_lines(rejects, header, personal, delimiter, pseudonymize)
    keep = expected + [f"{_PARSED}{c.name}" for c in formatted]
    rows = rows.select(keep).with_columns(pl.lit(path.name).alias(SOURCE_FILE_COLUMN))
    if pseudonymize is not None:
        rows = pseudonymize_columns(rows, personal, pseudonymize)
    rows, out_of_place, replaced = _guard(rows, columns, pseudonymize, path)
    rejects = pl.concat([rejects, out_of_place])
    if formatted:
        # after the pseudonyms: the rejected rows' values are kept as their raw line
        rows, format_rejects = _apply_formats(rows, formatted, expected, delimiter)
        rejects = pl.concat([rejects, format_rejects])
    result = LandingFileRead(
        path=path,
        sha256=scan.sha256,
        size_bytes=scan.size_bytes,
        rows=rows,
        rejects=rejects,
        pseudonymized_values=replaced,
    )
    check_rejected_fraction(path, result.lines_read, rejects, max_rejected_fraction)
    return result


def check_rejected_fraction(
    path: Path, lines: int, rejects: pl.DataFrame, max_rejected_fraction: float, note: str = ""
) -> None:
    """Fail a file whose rejected lines exceed `max_rejected_fraction` of its lines."""
    # parse rejects carry their line (one line may fail on several columns); row-rule rejects
    # are one row each
    bad = rejects["line"].drop_nulls().n_unique() + rejects["line"].null_count()
    if lines and bad / lines > max_rejected_fraction:
        first = "; ".join(
            (f"line {r['line']}" if r["line"] is not None else "a row")
            + (f" column {r['column']}" if r["column"] else "")
            + f": {r['reason']}"
            for r in rejects.head(5).iter_rows(named=True)
        )
        raise LandingFileError(
            path,
            f"{bad} of {lines} rows are bad (more than the allowed "
            f"{max_rejected_fraction:.0%}){note}; first ones: {first}",
            "fix the export (types and column count must match the spec), or raise "
            "`landing.max_rejected_fraction` in the spec if these rows are expected",
        )


def reject_rows(
    frame: pl.DataFrame,
    mask: pl.Expr,
    column: str | None,
    reason: str,
    value_columns: list[str] | None = None,
    delimiter: str = ",",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split `frame` by `mask`: (kept rows, rejects in REJECT_SCHEMA) for rows-level rules; a
    reject's raw line joins `value_columns` (default: all but the source file) with the
    landing's `delimiter`, as erasure reads it."""
    flagged = frame.select(mask.fill_null(False)).to_series()
    if not flagged.any():
        # the usual case: nothing to split, and no copy of the rows (5M rows: 5 rules, 5 copies)
        return frame, pl.DataFrame(schema=REJECT_SCHEMA)
    bad = frame.filter(flagged)
    kept = frame.filter(~flagged)
    value_cols = value_columns or [c for c in frame.columns if c != SOURCE_FILE_COLUMN]
    rejects = bad.select(
        source_file=pl.col(SOURCE_FILE_COLUMN)
        if SOURCE_FILE_COLUMN in frame.columns
        else pl.lit(None, pl.String),
        line=pl.lit(None, pl.Int64),
        column=pl.lit(column, pl.String),
        reason=pl.lit(reason),
        raw_line=pl.concat_str(
            [pl.col(c).cast(pl.String).fill_null("") for c in value_cols], separator=delimiter
        ),
    )
    return kept, rejects


def check_row_rules(
    frame: pl.DataFrame,
    columns: list[Column],
    time_column: str,
    start: datetime,
    end: datetime,
    delimiter: str = ",",
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
                delimiter=delimiter,
            )
            all_rejects.append(rejects)
    when = pl.col(time_column).cast(pl.Datetime("us"))
    frame, rejects = reject_rows(
        frame,
        (when < start) | (when >= end),
        time_column,
        f"{time_column} is outside the file's day [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M})",
        delimiter=delimiter,
    )
    all_rejects.append(rejects)
    return frame, pl.concat(all_rejects)


def checked_rows(
    read: LandingFileRead,
    columns: list[Column],
    time_column: str,
    start: datetime,
    end: datetime,
    max_rejected_fraction: float,
    keep_window_only: bool = False,
    delimiter: str = ",",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A file's rows under the row rules, the file failed when parse and rule rejects together
    are more than `max_rejected_fraction` of its lines.

    `keep_window_only`: the file holds several days (partition_by: event_time) and rows outside
    [start, end) belong to other partitions rather than being wrong.
    """
    rows = read.rows
    when = pl.col(time_column).cast(pl.Datetime("us"))
    if keep_window_only:
        rows = rows.filter((when >= start) & (when < end))
    kept, rule_rejects = check_row_rules(rows, columns, time_column, start, end, delimiter)
    note = ""
    if not keep_window_only:
        other = (
            rows.filter((when < start) | (when >= end))
            .group_by(when.dt.date().alias("day"))
            .len()
            .sort("day")
        )
        if len(other):
            days = ", ".join(f"{r['day']} ({r['len']} rows)" for r in other.head(5).to_dicts())
            note = (
                f"; {other['len'].sum()} rows are not for the file's day {start:%Y-%m-%d} but for "
                f"{days}: is the file named for the wrong day?"
            )
    check_rejected_fraction(
        read.path,
        read.lines_read,
        pl.concat([read.rejects, rule_rejects]),
        max_rejected_fraction,
        note,
    )
    return kept, rule_rejects


def days_in_file(
    path: Path,
    time_column: Column,
    delimiter: str = ",",
    timezone: str = "UTC",
    limits: LandingLimits | None = None,
) -> list:
    """The days a landing file has rows for, from its time column read as `read_landing_file`
    reads it (rows whose time does not parse belong to no day here; ingestion sets them aside
    with their reason). A file past the landing's limits raises `LandingFileError` unread."""
    path = Path(path)
    limits = limits or LandingLimits()
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        check_file_structure(path, [time_column], delimiter, True, limits)  # raises
    header = _parse_header(path, _header_line(path, limits), delimiter, limits)
    name = time_column.name
    if name not in header:
        return []  # no day: ingestion quarantines the file, naming the missing column
    position = f"_c{header.index(name)}"
    columns = "{" + ", ".join(f"'_c{i}': 'VARCHAR'" for i in range(len(header))) + "}"
    try:
        with landing_connection(path, timezone) as (con, readable):
            rows = con.sql(
                f"""SELECT DISTINCT CAST({_parse_sql(time_column, position, timezone)} AS DATE) AS day
                    FROM read_csv(?, header=true, columns={columns}, delim=?, quote='"',
                                  escape='"', auto_detect=false, strict_mode=false,
                                  ignore_errors=true, null_padding=true,
                                  max_line_size={int(limits.max_line_bytes)})
                    WHERE day IS NOT NULL ORDER BY day""",
                params=[readable, delimiter],
            ).fetchall()
    except duckdb.OutOfMemoryException:
        raise LandingFileTooBig(
            path,
            "it does not fit in the memory DuckDB may use here, so its days were not read",
            "split the export into several files; the file stays in landing",
        ) from None
    except duckdb.Error as err:
        raise LandingFileError(
            path,
            f"its column {name} could not be read: {withhold_values(str(err))}",
            "check the delimiter and header",
        ) from None
    return [r[0] for r in rows]


def duplicate_files(files: list[tuple[str, pl.DataFrame]], id_column: str | None) -> dict[str, str]:
    """{file: the file it repeats} among one day's files: a file whose rows are all, value for
    value, in a file kept before it adds nothing but duplicates, as a desktop copy
    (`... copy (1).csv`) does. Shorter names are kept first: the original. (`id_column` is kept
    for the callers; rows are compared whole.)"""
    kept: list[tuple[str, pl.DataFrame]] = []
    out: dict[str, str] = {}
    for name, rows in sorted(files, key=lambda f: (len(f[0]), f[0])):
        # whole rows, not ids: a re-delivery with the same ids and corrected values is new data
        key = [c for c in rows.columns if c != SOURCE_FILE_COLUMN]
        if len(rows) and kept:
            mine = rows.select(key).unique()
            for other_name, other in kept:
                if mine.join(
                    other.select(key).unique(), on=key, how="anti", nulls_equal=True
                ).is_empty():
                    out[name] = other_name
                    break
        if name not in out:
            kept.append((name, rows))
    return out


def files_sharing_ids(frame: pl.DataFrame, id_column: str | None, limit: int = 5) -> list[str]:
    """'a.csv and b.csv share 12 ids' for the pairs of source files whose ids collide."""
    if id_column is None or SOURCE_FILE_COLUMN not in frame.columns or frame.is_empty():
        return []
    if frame[SOURCE_FILE_COLUMN].n_unique() < 2:  # one file shares ids with no other
        return []
    per_id = (
        frame.group_by(id_column)
        .agg(pl.col(SOURCE_FILE_COLUMN).unique().sort().alias("files"))
        .filter(pl.col("files").list.len() > 1)
    )
    if per_id.is_empty():
        return []
    pairs = (
        per_id.with_columns(pl.col("files").list.join(" and "))
        .group_by("files")
        .len()
        .sort("len", descending=True)
        .head(limit)
    )
    return [f"{r['files']} share {r['len']} ids" for r in pairs.to_dicts()]
