"""Fuzzing the landing: generated files and names (quotes and braces in headers, long fields,
glob and unicode characters, swapped columns, no final newline) through the reader and the
file sensor's tick. The properties: nothing raises but a `LandingFileError` naming the file;
every line is stored or set aside; no clear personal value in what is stored; no other file
read."""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import polars as pl
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ml_assets.definitions import build_definitions
from ml_assets.spec import load_spec
from ml_assets.transforms.ingest import LandingFileError, read_landing_file
from ml_assets.transforms.privacy import keyed_pseudonymizer
from ml_assets_tests.conftest import TEST_KEY, Daemon

SPEC = load_spec()
COLUMNS = SPEC.columns
NAMES = [c.name for c in COLUMNS]
PERSONAL = set(SPEC.personal_columns)
SECRET = "contents-of-a-file-nobody-may-read"
GOOD = {
    "transaction_id": "T1",
    "event_time": "2026-09-02 10:00:00",
    "customer_id": "C1",
    "card_id": "K1",
    "amount": "12.5",
    "merchant_category": "grocery",
    "country": "DE",
    "channel": "pos",
    "device": "terminal",
    "customer_name": "Ada Quxworth",
    "customer_email": "ada.quxworth@example.org",
    "card_number": "4000000000000002",
    "age_band": "26-35",
}
# what a person's values look like in the generated lines (none of them may be stored clear)
CLEAR = ["quxworth@example.org", "4000000000000002", "4000 0000 0000 0010"]

odd_text = st.text(
    alphabet=st.sampled_from(list("ab'\"{}[]*?,;\\()\u00fc\u200b\u202e$%\n ")),
    min_size=0,
    max_size=12,
)


@st.composite
def landing_line(draw, serial: int) -> str:
    row = dict(GOOD, transaction_id=f"T{serial}")
    kind = draw(st.sampled_from(["good", "swapped", "odd", "long", "short"]))
    if kind == "swapped":  # a personal value under a non-personal column, and back
        column = draw(st.sampled_from([n for n in NAMES if n not in PERSONAL]))
        personal = draw(st.sampled_from(sorted(PERSONAL)))
        value = draw(st.sampled_from(CLEAR))
        row[column], row[personal] = value, row[column]
    elif kind == "odd":
        column = draw(st.sampled_from(NAMES))
        row[column] = draw(odd_text)
    elif kind == "long":
        row["merchant_category"] = "g" * draw(st.integers(1000, 200_000))
    fields = [row[n] for n in NAMES]
    if kind == "short":
        fields = fields[: draw(st.integers(1, len(fields) - 1))]
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


@st.composite
def landing_file(draw) -> tuple[str, bytes]:
    header = list(NAMES)
    if draw(st.booleans()):  # an extra column whose name is SQL, quotes and braces
        header.append(
            draw(
                st.sampled_from(
                    [
                        "z': 'VARCHAR'}) AS t(a), read_text('{s}') AS q(",
                        '""',
                        "{x}",
                        "a'b",
                        "\u00fc*?",
                    ]
                )
            )
        )
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(header)
    lines = [draw(landing_line(i)) for i in range(draw(st.integers(0, 12)))]
    if len(header) > len(NAMES):
        lines = [line + ",x" for line in lines]
    body = buffer.getvalue() + "\n".join(lines)
    if lines and draw(st.booleans()):
        body += "\n"  # else: no final newline
    name = (
        "transactions_2026-09-02"
        + draw(odd_text.filter(lambda t: "/" not in t and "\n" not in t))
        + ".csv"
    )
    return name, body.encode("utf-8")


def stored_text(frame: pl.DataFrame) -> str:
    return " ".join(str(v) for row in frame.iter_rows() for v in row)


CUT_QUOTED_NEWLINE = (  # found by CI: the cut last record begins with a quoted newline
    "transactions_2026-09-02.csv",
    (",".join(NAMES) + '\n"""\n",' + ",".join(list(GOOD.values())[1:])).encode(),
)


# `make fuzz` raises this to explore far more files than a test run has time for
EXAMPLES = int(os.environ.get("ML_ASSETS_FUZZ_EXAMPLES", "60"))

_ROW = ",".join(list(GOOD.values())[1:])
OFF_BY_ONE = (  # DuckDB numbered line 2's cast error as line 3 beside a short line 3
    "transactions_2026-09-02.csv",
    (
        ",".join(NAMES)
        + "\nT0,;,"
        + _ROW.split(",", 1)[1]
        + "\nT1,\n\n,"
        + _ROW.split(",", 1)[1]
        + "\nT2,"
        + _ROW
    ).encode(),
)

STRAY_QUOTE = (  # a quote inside an unquoted value, no final newline: only the cut line goes
    "transactions_2026-09-02.csv",
    (
        ",".join(NAMES)
        + "".join(f"\nT{i}," + _ROW for i in range(6))
        + "\nT6,"
        + _ROW.replace("grocery", '5"x')
        + "".join(f"\nT{i}," + _ROW for i in range(7, 10))
    ).encode(),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(landing_file())
@example(CUT_QUOTED_NEWLINE)
@example(OFF_BY_ONE)
@example(STRAY_QUOTE)
def test_a_generated_file_is_read_whole_or_refused_and_keeps_no_clear_value(generated):
    name, body = generated
    with tempfile.TemporaryDirectory() as folder:
        secret = Path(folder) / "s"
        secret.write_text(SECRET)
        path = Path(folder) / name.replace("{s}", str(secret))
        path.write_bytes(body.replace(b"{s}", str(secret).encode()))
        try:
            read = read_landing_file(
                path,
                COLUMNS,
                max_rejected_fraction=1.0,
                allow_extra_columns=True,
                pseudonymize=keyed_pseudonymizer(TEST_KEY),
            )
        except LandingFileError as err:
            message = str(err)
            assert str(path) in message and "Fix:" in message
            assert not any(v in message for v in CLEAR) and SECRET not in message
            return
    text = stored_text(read.rows) + " " + stored_text(read.rejects)
    assert SECRET not in text
    assert not [v for v in CLEAR if v in text], text[:500]
    # lines in = rows stored + rows set aside (a record with a quoted newline is one row)
    csv.field_size_limit(1 << 30)
    records = [r for r in csv.reader(io.StringIO(body.decode())) if r][1:]
    assert read.lines_read == len(records), (read.lines_read, len(records))


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(landing_file(), min_size=1, max_size=4, unique_by=lambda f: f[0]))
def test_a_tick_over_generated_files_never_raises_and_sets_each_bad_one_aside(
    example_env, generated
):
    landing = example_env / "landing/transactions"
    quarantine = example_env / "quarantine"
    shutil.rmtree(quarantine, ignore_errors=True)
    for path in landing.iterdir():
        if "2026-09-01" not in path.name:
            path.unlink()
    for name, body in generated:
        (landing / name.replace("{s}", "x")).write_bytes(body)
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        result = Daemon(defs, instance).settle()
    taken = " ".join(r.tags["ml_assets/landing_files"] for r in result.run_requests)
    set_aside = {p.name.removesuffix(".reason.json") for p in quarantine.rglob("*.reason.json")}
    for name, _ in generated:
        name = name.replace("{s}", "x")
        # after two ticks every file held still and its day has ended: taken or set aside
        assert name in taken or any(name[:150] in q for q in set_aside), (name, taken, set_aside)
