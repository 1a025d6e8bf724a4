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
    """Rejected lines as they may be stored: personal fields replaced by their pseudonyms.

    A line with as many fields as the header has its personal fields pseudonymized in place. A
    line with another number of fields (ragged, cut, over-long) cannot say which field is whose,
    so its text is withheld: the reject keeps its file and line, and the archived copy of the
    file keeps the line itself. Reasons never quote a value of a line that is not well-formed.
    """
    if rejects.is_empty():
        return rejects
    personal_at = [i for i, h in enumerate(header) if h in set(personal)]
    lines = rejects["raw_line"].to_list()
    reasons = rejects["reason"].to_list()
    fields_per_line = []
    for line in lines:
        try:
            fields = next(csv.reader(io.StringIO(line or ""), delimiter=delimiter), [])
        except csv.Error:
            fields = None
        fields_per_line.append(fields)
    clear = [
        f[i]
        for f in fields_per_line
        if f is not None and len(f) == len(header)
        for i in personal_at
        if f[i]
    ]
    mapping = {}
    if clear and pseudonymize is not None:
        mapping = dict(
            zip(clear, pseudonymize(pl.Series(clear, dtype=pl.String)).to_list(), strict=True)
        )
    out_lines, out_reasons = [], []
    for line, reason, fields in zip(lines, reasons, fields_per_line, strict=True):
        if fields is not None and len(fields) == len(header):
            mine = {
                fields[i]: mapping.get(fields[i], "(withheld)") for i in personal_at if fields[i]
            }
            if mine:
                buffer = io.StringIO()
                csv.writer(buffer, delimiter=delimiter, lineterminator="").writerow(
                    [mine.get(f, f) if i in personal_at else f for i, f in enumerate(fields)]
                )
                line = buffer.getvalue()
            reason = _first_line(reason)
            for value, alias in mine.items():
                reason = reason.replace(value, alias) if reason else reason
            out_lines.append(line)
            out_reasons.append(reason)
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
