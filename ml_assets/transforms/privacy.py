"""Personal data: keyed pseudonyms, the key's strength and fingerprint, redaction of raw lines.

No Dagster here. Clear personal values exist only in landing files and their archive and
quarantine copies; everything the pipeline stores, logs or reports goes through this module
first. A pseudonym is a keyed BLAKE2b of the value (a MAC, unlike a plain hash): without the key
it cannot be recomputed from a guessed name or card number.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

Pseudonymize = Callable[[pl.Series], pl.Series]

KEY_HELP = (
    "set ML_ASSETS_PSEUDONYM_KEY to a random secret, e.g. "
    "`export ML_ASSETS_PSEUDONYM_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')`"
)
MIN_KEY_CHARS = 16
MIN_KEY_BITS = 64.0
FINGERPRINT_MESSAGE = b"ml_assets pseudonym key fingerprint v1"


def key_strength_problem(key: str | None) -> str | None:
    """Why a key is too weak to pseudonymize with, or None.

    The estimate is the key's length times the Shannon entropy of its characters: 16 spaces or
    `aaaa...` count as 0 bits, a 32-byte hex token as 256.
    """
    if not key:
        return "the pseudonymization key is not set"
    if len(key) < MIN_KEY_CHARS:
        return f"the pseudonymization key has {len(key)} characters; at least {MIN_KEY_CHARS} are needed"
    counts = Counter(key)
    entropy = -sum(n / len(key) * math.log2(n / len(key)) for n in counts.values())
    bits = entropy * len(key)
    if key.strip() == "" or bits < MIN_KEY_BITS:
        return (
            f"the pseudonymization key is guessable (about {bits:.0f} bits from {len(counts)} distinct "
            f"characters; at least {MIN_KEY_BITS:.0f} are needed)"
        )
    return None


def check_key(key: str | None) -> bytes:
    """The key bytes the pseudonyms are made with; raises ValueError naming the fix."""
    problem = key_strength_problem(key)
    if problem:
        raise ValueError(f"{problem}. Fix: {KEY_HELP}")
    return hashlib.sha256(key.encode()).digest()


def key_fingerprint(key: str) -> str:
    """A keyed hash of a constant: tells two keys apart without revealing either."""
    return hashlib.blake2b(FINGERPRINT_MESSAGE, key=check_key(key), digest_size=8).hexdigest()


def keyed_pseudonymizer(key: str) -> Pseudonymize:
    """Keyed BLAKE2b of each distinct value, hashed once per value; nulls stay null."""
    key_bytes = check_key(key)

    def pseudonymize(values: pl.Series) -> pl.Series:
        distinct = values.cast(pl.String).drop_nulls().unique()
        hashed = pl.Series(pseudonyms(distinct.to_list(), key_bytes), dtype=pl.String)
        return values.cast(pl.String).replace_strict(
            distinct, hashed, default=None, return_dtype=pl.String
        )

    return pseudonymize


def pseudonyms(values: Sequence[str], key_bytes: bytes) -> list[str]:
    """The pseudonym of each value, in one comprehension: no Python call per value (a 1M-row
    day has 250k distinct values per personal column)."""
    blake2b = hashlib.blake2b
    return [blake2b(v.encode("utf-8"), key=key_bytes, digest_size=12).hexdigest() for v in values]


def pseudonym(value: str, key_bytes: bytes) -> str:
    return pseudonyms([value], key_bytes)[0]


def pseudonymize_columns(
    frame: pl.DataFrame, names: Sequence[str], pseudonymize: Pseudonymize
) -> pl.DataFrame:
    present = [n for n in names if n in frame.columns]
    if not present:
        return frame
    return frame.with_columns([pseudonymize(frame[n]).alias(n) for n in present])


# DuckDB quotes the value it could not convert; on a line whose fields are out of place that
# value may be anyone's name
_QUOTED_VALUE = re.compile(r'(string )"(?:[^"\\]|\\.)*"')


def withhold_values(reason: str) -> str:
    """A reader's message without the values it quotes, and only its first line (DuckDB appends
    the reader's settings and sometimes the original line)."""
    return _QUOTED_VALUE.sub(r"\1(value withheld)", _first_line(reason) or "")


def redact_raw_lines(
    rejects: pl.DataFrame,
    header: Sequence[str],
    personal: Sequence[str],
    delimiter: str,
    pseudonymize: Pseudonymize | None,
) -> pl.DataFrame:
    """Rejected lines as they may be stored: no clear value that could be personal.

    A line with as many fields as the header has replaced by their pseudonyms: its personal
    fields, the fields of the columns it was rejected for (a value that did not parse may be
    anyone's name, out of place), and any field that looks like an email or a card number. A
    line with another number of fields (ragged, cut, over-long) cannot say which field is
    whose, so its text is withheld: the reject keeps its file and line, and the archived copy
    of the file keeps the line itself. Reasons never quote a value.
    """
    if rejects.is_empty():
        return rejects
    position = {h: i for i, h in enumerate(header)}
    personal_at = {position[h] for h in personal if h in position}
    lines = rejects["raw_line"].to_list()
    reasons = rejects["reason"].to_list()
    failed = rejects["column"].to_list() if "column" in rejects.columns else [None] * len(lines)
    fields_per_line, hide_per_line = [], []
    for line, columns in zip(lines, failed, strict=True):
        try:
            fields = next(csv.reader(io.StringIO(line or ""), delimiter=delimiter), [])
        except csv.Error:
            fields = None
        hide: set[int] = set()
        if fields is not None and len(fields) == len(header):
            flagged = looks_personal(pl.Series(fields, dtype=pl.String)).to_list()
            hide = (
                personal_at
                | {position[c] for c in (columns or "").split(",") if c in position}
                | {i for i, f in enumerate(flagged) if f}
            )
        fields_per_line.append(fields)
        hide_per_line.append(hide)
    clear = sorted(
        {f[i] for f, hide in zip(fields_per_line, hide_per_line, strict=True) for i in hide if f[i]}
    )
    mapping = {}
    if clear and pseudonymize is not None:
        mapping = dict(
            zip(clear, pseudonymize(pl.Series(clear, dtype=pl.String)).to_list(), strict=True)
        )
    out_lines, out_reasons = [], []
    for line, reason, fields, hide in zip(
        lines, reasons, fields_per_line, hide_per_line, strict=True
    ):
        if fields is not None and len(fields) == len(header):
            mine = {fields[i]: mapping.get(fields[i], "(withheld)") for i in hide if fields[i]}
            if mine:
                buffer = io.StringIO()
                csv.writer(buffer, delimiter=delimiter, lineterminator="").writerow(
                    [mine[f] if i in hide and f else f for i, f in enumerate(fields)]
                )
                line = buffer.getvalue()
            out_lines.append(line)
            out_reasons.append(replace_whole_values(withhold_values(reason or ""), mine))
        else:
            n = len(fields) if fields is not None else "?"
            out_lines.append(
                f"(withheld: {n} fields where the header has {len(header)}, so personal values may be "
                "out of place; the line is in the archived copy of the file)"
            )
            out_reasons.append(withhold_values(reason or ""))
    return rejects.with_columns(
        raw_line=pl.Series(out_lines, dtype=pl.String),
        reason=pl.Series(out_reasons, dtype=pl.String),
    )


def replace_whole_values(text: str, aliases: dict[str, str]) -> str:
    """`text` with each value of `aliases` replaced where it stands as a whole (not inside a
    word: a one-letter value must not turn every word that holds the letter into a hash)."""
    for value, alias in sorted(aliases.items(), key=lambda kv: -len(kv[0])):
        text = re.sub(rf"(?<![\w@.\-]){re.escape(value)}(?![\w@.\-])", alias, text)
    return text


def _first_line(text: str | None) -> str | None:
    return text.strip().splitlines()[0] if text and text.strip() else text


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) readable by its owner only (0700)."""
    missing = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


# --- personal values out of place ----------------------------------------------------------------
# A line whose columns are swapped puts an email under `country` or a card number under
# `amount`. Such a value is kept out of every table: in a text column it is stored as its
# pseudonym, in a number column the row is set aside; the archive keeps the line.

_EMAIL = r"[^@\s,;]+@[^@\s,;]+\.[A-Za-z]{2,}"
_CARD_DIGITS = r"^\d[\d -]{11,22}\d$"
PSEUDONYM_PREFIX = "pseudonym:"
# a value outside a category column's categories that fewer rows of the file hold is shown by
# its pseudonym: a new category comes on many rows, a person's value out of place on few
RARE_UNKNOWN_ROWS = 5


def luhn_valid(digits: str) -> bool:
    """The payment-card check digit (ISO/IEC 7812) of a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def looks_personal(values: pl.Series) -> pl.Series:
    """Whether each text value looks like an email address or a payment card number (13 to 19
    digits, spaces or dashes between, a valid check digit)."""
    text = values.cast(pl.String)
    email = text.str.contains(_EMAIL).fill_null(False)
    candidates = text.str.contains(_CARD_DIGITS).fill_null(False)
    if not candidates.any():
        return email
    digits = text.str.replace_all(r"[ -]", "")
    card = [
        bool(c) and 13 <= len(d) <= 19 and luhn_valid(d)
        for c, d in zip(candidates.to_list(), digits.to_list(), strict=True)
    ]
    return email | pl.Series(card, dtype=pl.Boolean)


def card_like_numbers(values: pl.Series) -> pl.Series:
    """Whether each number is a whole number of 13 to 19 digits with a valid check digit."""
    whole = values.cast(pl.Float64)
    big = ((whole.abs() >= 1e12) & (whole == whole.round())).fill_null(False)
    if not big.any():
        return big
    return pl.Series(
        [
            bool(b) and luhn_valid(str(int(abs(v))))
            for b, v in zip(big.to_list(), whole.fill_null(0).to_list(), strict=True)
        ],
        dtype=pl.Boolean,
    )


def guard_out_of_place_values(
    rows: pl.DataFrame,
    text_columns: dict[str, set[str] | None],
    number_columns: Sequence[str],
    pseudonymize: Pseudonymize | None,
) -> tuple[pl.DataFrame, pl.Series, dict[str, int]]:
    """`rows` with each personal-looking value of a non-personal text column replaced by its
    pseudonym (`pseudonym:<hash>`; withheld without a key), and so for rare values outside a
    category column's categories; the mask of rows whose number columns hold a card-like
    number (to set aside); and {column: values replaced}.

    text_columns: {column: its allowed values, or None when it has no categories}.
    """
    replaced: dict[str, int] = {}
    updates = []
    for name, allowed in text_columns.items():
        if name not in rows.columns:
            continue
        values = rows[name]
        mask = looks_personal(values)
        if allowed is not None:
            outside = ~values.cast(pl.String).is_in(sorted(allowed)).fill_null(True)
            if outside.any():
                counts = values.value_counts(name="n")
                rare = set(counts.filter(pl.col("n") < RARE_UNKNOWN_ROWS)[name].to_list())
                mask = mask | (outside & values.is_in(sorted(v for v in rare if v is not None)))
        mask = mask.fill_null(False)
        if not mask.any():
            continue
        replaced[name] = int(mask.sum())
        hidden = values.filter(mask).cast(pl.String)
        alias = (
            PSEUDONYM_PREFIX + pseudonymize(hidden)
            if pseudonymize is not None
            else pl.Series([f"{PSEUDONYM_PREFIX}(withheld)"] * len(hidden))
        )
        updates.append(
            values.cast(pl.String).scatter(mask.arg_true(), alias).cast(values.dtype).alias(name)
        )
    if updates:
        rows = rows.with_columns(updates)
    bad = pl.Series([False] * len(rows), dtype=pl.Boolean)
    for name in number_columns:
        if name in rows.columns:
            bad = bad | card_like_numbers(rows[name])
    return rows, bad, replaced
