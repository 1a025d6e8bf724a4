"""Personal data lives only in landing files and their archive and quarantine copies."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.spec import load_spec
from ml_assets.transforms.privacy import key_fingerprint, keyed_pseudonymizer
from ml_assets_tests.conftest import TEST_KEY, materialize
from ml_assets_tests.integration.test_pipeline import run_everything

# where clear values may be: the files as they came, and the generator's own record
CLEAR_ALLOWED = ("landing", "archive", "quarantine")


@pytest.mark.parametrize("key", [" " * 16, "k" * 32, "abababababababab", "short-key", "", None])
def test_a_guessable_key_is_refused_with_the_fix(key):
    with pytest.raises(ValueError, match="ML_ASSETS_PSEUDONYM_KEY.*secrets.token_hex"):
        keyed_pseudonymizer(key)


def test_the_key_fingerprint_tells_keys_apart_without_revealing_them():
    other = "another-key-with-entropy-0123456789"
    assert key_fingerprint(TEST_KEY) == key_fingerprint(TEST_KEY)
    assert key_fingerprint(TEST_KEY) != key_fingerprint(other)
    assert key_fingerprint(TEST_KEY) not in keyed_pseudonymizer(TEST_KEY)(pl.Series([TEST_KEY]))[0]
    assert TEST_KEY not in key_fingerprint(TEST_KEY)


def personal_values(landing: Path) -> list[str]:
    """Every clear personal value of the generated landing files."""
    personal = load_spec().personal_columns
    values: set[str] = set()
    for path in sorted(landing.glob("transactions/*.csv")):
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                # (malformed lines shift fields: keep what looks like a name, email or card)
                values.update(row[c] for c in personal if len(row.get(c) or "") >= 6)
    return sorted(values)


def leaks_in_files(roots: list[Path], values: list[str], data: Path) -> dict[str, list[str]]:
    """{file: clear values found in it}, for every file under `roots` but the allowed folders.
    Each value is also looked for as JSON writes it (Dagster's event log stores `ü` as `\\u00fc`)."""
    escaped = {json.dumps(v)[1:-1]: v for v in values}
    values = sorted(set(values) | set(escaped))
    found = {}
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file() or path.suffix in (".duckdb", ".wal"):
                continue
            rel = path.relative_to(data) if path.is_relative_to(data) else path
            if rel.parts and rel.parts[0] in CLEAR_ALLOWED:
                continue
            text = path.read_bytes().decode("utf-8", errors="ignore")
            hits = pl.Series([text]).str.extract_many(values, overlapping=True)[0].to_list()
            if hits:
                found[str(rel)] = sorted({escaped.get(h, h) for h in hits})[:5]
    return found


def leaks_in_tables(database: Path, values: list[str]) -> dict[str, list[str]]:
    """{table.column: clear values found in it}, over every text column of every table."""
    found = {}
    con = duckdb.connect(str(database), read_only=True)
    try:
        columns = con.sql(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'VARCHAR'"
        ).fetchall()
        for schema, table, column in columns:
            text = con.sql(f'SELECT "{column}" AS v FROM "{schema}"."{table}"').pl()["v"]
            hits = text.drop_nulls().str.extract_many(values).explode().drop_nulls()
            if len(hits):
                found[f"{schema}.{table}.{column}"] = sorted(set(hits.to_list()))[:5]
    finally:
        con.close()
    return found


@pytest.mark.integration
def test_no_clear_personal_value_outside_landing_archive_and_quarantine(example_env, tmp_path):
    values = personal_values(example_env / "landing")
    assert len(values) > 500
    # bad input too: a file whose first line is a person's row, and one with a ragged line
    # holding a name out of place, both for a day of their own
    landing = example_env / "landing/transactions"
    day = (landing / "transactions_2026-09-05.csv").read_text(encoding="utf-8").splitlines()
    (landing / "transactions_2026-09-05_noheader.csv").write_text("\n".join(day[1:4]) + "\n")
    ragged = day[5].replace(",", ",,", 3)
    late = [line.replace("T2026", "L2026", 1) for line in day[6:70]]
    (landing / "transactions_2026-09-05_late.csv").write_text(
        "\n".join([day[0], ragged, *late]) + "\n"
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    defs = build_definitions()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        (landing / "transactions_2026-09-05_noheader.csv").rename(tmp_path / "held_back.csv")
        run_everything(defs, instance, "2026-09-01", "2026-09-20")
        (tmp_path / "held_back.csv").rename(landing / "transactions_2026-09-05_noheader.csv")
        failed = materialize(defs, "raw_transactions", instance, "2026-09-05", raise_on_error=False)
        assert not failed.success  # quarantined, with an error in the event log
    assert (example_env / "quarantine/transactions").exists()
    assert leaks_in_files([home, example_env], values, example_env) == {}
    assert leaks_in_tables(example_env / "warehouse.duckdb", values) == {}
    # and the test can see a leak: the archive holds the clear files
    assert leaks_in_files([example_env / "archive"], values, tmp_path)
    # every file with clear personal data, and every folder made, is its owner's only
    personal_files = [
        p
        for area in ("archive", "quarantine")
        for p in (example_env / area).rglob("*")
        if p.is_file()
    ]
    assert personal_files and not [p for p in personal_files if p.stat().st_mode & 0o077]
    made = [
        p
        for p in example_env.rglob("*")
        if p.is_dir() and not {"landing", "example_truth"} & set(p.parts)
    ]
    assert not [p for p in made if p.stat().st_mode & 0o077]


def test_the_generator_writes_personal_data_for_its_owner_only(tmp_path):
    from datetime import date

    from ml_assets.example_data import generate

    generate(tmp_path / "data/landing", start=date(2026, 9, 1), days=1, rows_per_day=50)
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert files and not [p for p in files if p.stat().st_mode & 0o077]
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_make_creates_the_key_for_its_owner_only(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parents[2]
    key = tmp_path / "keys/.pseudonym_key"
    subprocess.run(
        ["make", "-s", "-C", str(root), f"KEY={key}", str(key)],
        check=True,
        env={**os.environ, "MAKEFLAGS": ""},
        capture_output=True,
    )
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text().strip()) == 64


@pytest.mark.integration
def test_a_different_key_is_refused_before_anything_is_written(example_env, monkeypatch):
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        first = materialize(defs, "raw_transactions", instance, "2026-09-01")
        stored = first.asset_materializations_for_node("raw_transactions")[0].metadata
        assert stored["pseudonym_key_fingerprint"].value == key_fingerprint(TEST_KEY)
        monkeypatch.setenv("ML_ASSETS_PSEUDONYM_KEY", "another-key-with-entropy-0123456789")
        result = materialize(
            build_definitions(), "raw_transactions", instance, "2026-09-02", raise_on_error=False
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.user_failure_data.description)
    assert "not the one the stored days were pseudonymized with" in message
    assert "rotate-key" in message and "another-key" not in message
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    days = con.sql("SELECT DISTINCT CAST(event_time AS DATE) FROM raw.transactions").fetchall()
    con.close()
    assert [str(d[0]) for d in days] == ["2026-09-01"]


@pytest.mark.integration
def test_a_key_rotation_repseudonymizes_every_stored_day_in_one_run(
    example_env, tmp_path, monkeypatch
):
    from ml_assets.governance import audit
    from ml_assets.governance.__main__ import main as governance

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    new_key = "another-key-with-entropy-0123456789"
    with dg.DagsterInstance.get() as instance:
        materialize(
            build_definitions(),
            "key:raw_transactions or key:cleaned_transactions",
            instance,
            "2026-09-01",
            "2026-09-03",
        )
    monkeypatch.setenv("ML_ASSETS_NEW_PSEUDONYM_KEY", new_key)
    assert governance(["rotate-key"]) == 0
    with dg.DagsterInstance.get() as instance:
        rotations = [
            r
            for r in instance.get_run_records()
            if r.dagster_run.tags.get("ml_assets/rotate_key_from")
        ]
    assert len(rotations) == 1  # every stored day in one run

    emails = [
        r["customer_email"]
        for day in ("2026-09-01", "2026-09-02", "2026-09-03")
        for r in csv.DictReader(
            open(example_env / f"landing/transactions/transactions_{day}.csv", encoding="utf-8")
        )
        if r.get("customer_email") and len(r) == 13
    ]
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    stored = {
        table: set(con.sql(f"SELECT DISTINCT customer_email FROM {table}").pl()["customer_email"])
        for table in ("raw.transactions", "cleaned.transactions")
    }
    con.close()
    expected = set(keyed_pseudonymizer(new_key)(pl.Series(emails)).to_list())
    old = set(keyed_pseudonymizer(TEST_KEY)(pl.Series(emails)).to_list())
    for table, values in stored.items():
        assert values - {None} <= expected and not old & values and len(values) > 100, table
    # from now on the new key is the one: the old key is refused, the new one runs
    with dg.DagsterInstance.ephemeral() as instance:
        refused = materialize(
            build_definitions(), "raw_transactions", instance, "2026-09-04", raise_on_error=False
        )
        assert not refused.success
        monkeypatch.setenv("ML_ASSETS_PSEUDONYM_KEY", new_key)
        assert materialize(build_definitions(), "raw_transactions", instance, "2026-09-04").success
    (entry,) = audit.read(example_env)
    assert entry["action"] == "key_rotation" and entry["counts"]["days"] == 3
    assert new_key not in json.dumps(entry) and TEST_KEY not in json.dumps(entry)


def luhn_number(seed: int) -> str:
    """A 16-digit number with a valid card check digit."""
    from ml_assets.transforms.privacy import luhn_valid

    body = f"4{seed:014d}"
    return next(body + str(d) for d in range(10) if luhn_valid(body + str(d)))


@pytest.mark.integration
def test_personal_values_in_swapped_columns_stay_out_of_every_table_and_log(example_env, tmp_path):
    """A well-formed line whose columns are swapped: an email, a card number or a name under a
    non-personal column (it put the clear email in raw, the rejected rows, the unknown values,
    the event log and the quarantine reason on 9ab9dbc)."""
    landing = example_env / "landing/transactions"
    for path in landing.iterdir():
        if "2026-09-02" not in path.name:
            path.unlink()
    day = landing / "transactions_2026-09-02.csv"
    header, *lines = day.read_text().splitlines()
    names = header.split(",")
    text_columns = ["transaction_id", "customer_id", "card_id"]
    categories = ["merchant_category", "country", "channel", "device", "age_band"]
    parsed = ["amount", "event_time"]
    planted, swapped = [], []
    for i, column in enumerate(text_columns + categories + parsed):
        kinds = {"customer_email": f"swapped.person{i}@example.org"}
        kinds["card_number"] = luhn_number(1000 + i)
        if column not in text_columns:  # a name is told from an id by nothing in the value
            kinds["customer_name"] = f"Zelda Quxworth{'abcdefghijklmnop'[i]}"
        for kind, value in kinds.items():
            fields = lines[len(swapped) % len(lines)].split(",")
            at, other = names.index(column), names.index(kind)
            fields[at], fields[other] = value, fields[at]
            if column == "transaction_id":
                fields[other] = f"X{len(swapped)}"
            swapped.append(",".join(fields))
            planted.append(value)
    day.write_text("\n".join([header, *lines, *swapped]) + "\n")
    home = tmp_path / "dagster_home"
    home.mkdir()
    defs = build_definitions()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = materialize(
            defs, "key:raw_transactions or key:cleaned_transactions", instance, "2026-09-02"
        )
        assert result.success
    assert leaks_in_tables(example_env / "warehouse.duckdb", planted) == {}
    assert leaks_in_files([home, example_env], planted, example_env) == {}
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    try:
        stored = con.sql("SELECT count(*) FROM raw.transactions").fetchall()[0][0]
        rejected = con.sql(
            "SELECT count(*), count(*) FILTER (WHERE reason LIKE '%value withheld%') "
            "FROM raw.transactions_rejected_rows"
        ).fetchall()[0]
        hidden = con.sql(
            "SELECT count(*) FROM raw.transactions WHERE merchant_category LIKE 'pseudonym:%'"
        ).fetchall()[0][0]
    finally:
        con.close()
    # nothing lost: every line is stored or set aside
    assert stored + rejected[0] == len(lines) + len(swapped)
    assert hidden == 3  # the email, the card number and the name under merchant_category
    # the values that did not parse are set aside, their reasons without the value
    assert rejected[0] >= 6 and rejected[1] >= 4, rejected
    # and the test can see a leak: the archive holds the planted values
    assert (
        len(next(iter(leaks_in_files([example_env / "archive"], planted, tmp_path).values()))) == 5
    )
