"""Bad input: every way a landing file can be wrong gets a clear error or quarantined rows."""

from __future__ import annotations

import json
from datetime import datetime

import dagster as dg
import duckdb
import polars as pl
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.spec import load_spec
from ml_assets.transforms.ingest import (
    REJECT_SCHEMA,
    LandingFileError,
    check_row_rules,
    checked_rows,
    duplicate_files,
    files_sharing_ids,
    read_landing_file,
)
from ml_assets.transforms.privacy import keyed_pseudonymizer
from ml_assets_tests.conftest import TEST_KEY, materialize

HEADER = "transaction_id,event_time,customer_id,card_id,amount,merchant_category,country,channel,device,customer_name,customer_email,card_number,age_band"
GOOD = "T1,2026-09-01 10:00:00,C1,K1,12.50,grocery,DE,pos,terminal,Anna Müller,anna@example.com,4000000000000001,26-35"
PERSONAL = ["Anna Müller", "anna@example.com", "4000000000000001"]
GOOD2 = "T2,2026-09-01 11:00:00,C2,K2,99.00,travel,FR,online,mobile,José García,jose@example.com,4000000000000002,36-50"


@pytest.fixture
def columns():
    return load_spec().columns


def write(tmp_path, body: bytes | str, name="transactions_2026-09-01.csv"):
    path = tmp_path / name
    path.write_bytes(body.encode("utf-8") if isinstance(body, str) else body)
    return path


def test_good_file_is_typed_and_checksummed(tmp_path, columns):
    read = read_landing_file(write(tmp_path, f"{HEADER}\n{GOOD}\n{GOOD2}\n"), columns)
    assert len(read.rows) == 2 and read.rejects.is_empty()
    assert read.rows.schema["event_time"].__class__.__name__ == "Datetime"
    assert read.rows["amount"].to_list() == [12.5, 99.0]
    assert read.rows["customer_name"][0] == "Anna Müller"
    assert len(read.sha256) == 64


def test_header_order_may_differ(tmp_path, columns):
    cols = HEADER.split(",")
    order = list(reversed(range(len(cols))))
    line = ",".join(GOOD.split(",")[i] for i in order)
    read = read_landing_file(
        write(tmp_path, ",".join(cols[i] for i in order) + "\n" + line + "\n"), columns
    )
    assert read.rows["transaction_id"][0] == "T1" and read.rows["amount"][0] == 12.5


def test_empty_file_fails_naming_the_file(tmp_path, columns):
    with pytest.raises(
        LandingFileError, match=r"transactions_2026-09-01.csv: the file is empty \(0 bytes\).*Fix:"
    ):
        read_landing_file(write(tmp_path, b""), columns)


def test_wrong_encoding_fails_with_line_and_fix(tmp_path, columns):
    body = f"{HEADER}\n{GOOD}\n{GOOD2}\n".encode("latin-1")
    with pytest.raises(LandingFileError, match=r"not UTF-8: first invalid byte at line 2.*iconv"):
        read_landing_file(write(tmp_path, body), columns)


def test_missing_column_fails_naming_it(tmp_path, columns):
    header = HEADER.replace(",device", "")
    line = GOOD.replace(",terminal", "")
    with pytest.raises(
        LandingFileError, match=r"line 1 \(header\): missing column\(s\) \['device'\]"
    ):
        read_landing_file(write(tmp_path, f"{header}\n{line}\n"), columns)


def test_extra_column_fails_naming_it(tmp_path, columns):
    with pytest.raises(
        LandingFileError, match=r"unexpected column\(s\) \['loyalty_tier'\].*change the spec"
    ):
        read_landing_file(write(tmp_path, f"{HEADER},loyalty_tier\n{GOOD},gold\n"), columns)


def test_extra_columns_are_read_past_when_the_spec_says_so(tmp_path, columns):
    path = write(tmp_path, f"loyalty_tier,{HEADER}\ngold,{GOOD}\n")
    read = read_landing_file(path, columns, allow_extra_columns=True)
    assert len(read.rows) == 1 and "loyalty_tier" not in read.rows.columns
    assert read.rejects.is_empty()


def test_unparseable_values_quarantine_the_row_with_line_and_column(tmp_path, columns):
    bad_amount = GOOD2.replace("99.00", "9x9")
    bad_time = GOOD.replace("T1", "T3").replace("2026-09-01 10:00:00", "noon")
    lines = [GOOD] * 40 + [bad_amount, bad_time]
    pseudonymize = keyed_pseudonymizer(TEST_KEY)
    read = read_landing_file(
        write(tmp_path, HEADER + "\n" + "\n".join(lines) + "\n"), columns, pseudonymize=pseudonymize
    )
    assert len(read.rows) == 40
    rejects = {r["line"]: r for r in read.rejects.iter_rows(named=True)}
    # the reason names the column and the problem, never the value (it may be anyone's name,
    # out of place)
    assert rejects[42]["column"] == "amount" and "9x9" not in rejects[42]["reason"]
    assert 'converting column "amount"' in rejects[42]["reason"]
    # the rejected line is kept as it came, but with the pseudonyms of its personal fields and
    # of the value that did not parse
    hidden = [*PERSONAL, "noon"]
    alias = dict(zip(hidden, pseudonymize(pl.Series(hidden)).to_list(), strict=True))
    expected = bad_time
    for clear, pseudo in alias.items():
        expected = expected.replace(clear, pseudo)
    assert rejects[43]["column"] == "event_time" and rejects[43]["raw_line"] == expected


def test_truncated_file_quarantines_the_cut_line(tmp_path, columns):
    body = HEADER + "\n" + "\n".join([GOOD] * 30) + "\n" + GOOD2[:60]
    read = read_landing_file(write(tmp_path, body), columns)
    assert len(read.rows) == 30
    assert "truncated" in read.rejects["reason"][0] and read.rejects["line"][0] == 32


@pytest.mark.parametrize("body", [HEADER, HEADER + "\n", HEADER + "\r\n"])
def test_header_only_file_is_a_day_without_rows(tmp_path, columns, body):
    read = read_landing_file(write(tmp_path, body), columns)
    assert read.rows.is_empty() and read.rejects.is_empty()


def test_too_many_bad_rows_fail_the_file(tmp_path, columns):
    body = (
        HEADER
        + "\n"
        + "\n".join([GOOD, GOOD2.replace("99.00", "abc"), GOOD.replace("12.50", "x")])
        + "\n"
    )
    with pytest.raises(
        LandingFileError, match=r"2 of 3 rows are bad.*line 3 column amount.*max_rejected_fraction"
    ):
        read_landing_file(write(tmp_path, body), columns)


def test_row_rules_reject_required_nulls_and_other_days(tmp_path, columns):
    other_day = GOOD2.replace("2026-09-01", "2026-09-02")
    no_customer = GOOD.replace(",C1,", ",,").replace("T1", "T9")
    read = read_landing_file(
        write(tmp_path, HEADER + "\n" + "\n".join([GOOD] * 50 + [other_day, no_customer]) + "\n"),
        columns,
    )
    kept, rejects = check_row_rules(
        read.rows, columns, "event_time", datetime(2026, 9, 1), datetime(2026, 9, 2)
    )
    assert len(kept) == 50
    assert sorted(rejects["column"].to_list()) == ["customer_id", "event_time"]
    assert rejects.filter(rejects["column"] == "event_time")["reason"][0].startswith(
        "event_time is outside the file's day"
    )


def test_rows_that_break_no_rule_come_back_uncopied(tmp_path, columns):
    """The usual file breaks no row rule: its rows are returned as they are, not copied once per
    rule (at 5M rows a day those copies were 1.1 GB of the raw step's peak)."""
    read = read_landing_file(write(tmp_path, HEADER + "\n" + GOOD + "\n" + GOOD2 + "\n"), columns)
    kept, rejects = check_row_rules(
        read.rows, columns, "event_time", datetime(2026, 9, 1), datetime(2026, 9, 2)
    )
    assert kept is read.rows
    assert rejects.is_empty() and dict(rejects.schema) == REJECT_SCHEMA


@pytest.mark.integration
def test_bad_file_fails_the_run_is_quarantined_and_good_data_stays(example_env):
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        materialize(defs, "raw_transactions", instance, "2026-09-01", "2026-09-03")
        con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
        before = con.sql("SELECT count(*) FROM raw.transactions").fetchall()[0][0]
        con.close()
        bad = example_env / "landing/transactions/transactions_2026-09-02.csv"
        original = bad.read_bytes()
        bad.write_bytes(
            original[:300] + "é".encode("latin-1") + original[300:]
        )  # a latin-1 byte inside
        result = materialize(
            defs, "raw_transactions", instance, "2026-09-01", "2026-09-03", raise_on_error=False
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        message = failure.event_specific_data.error.message + str(
            failure.event_specific_data.user_failure_data
        )
        assert "transactions_2026-09-02.csv" in message and "not UTF-8" in message
    # the original stays in landing, a copy and its reason are in quarantine
    assert bad.exists()
    sidecar = example_env / "quarantine/transactions/transactions_2026-09-02.csv.reason.json"
    assert "not UTF-8" in json.loads(sidecar.read_text())["reason"]
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    assert con.sql("SELECT count(*) FROM raw.transactions").fetchall()[0][0] == before
    con.close()


@pytest.mark.integration
def test_missing_landing_file_names_the_expected_path(example_env):
    (example_env / "landing/transactions/transactions_2026-09-04.csv").unlink()
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(defs, "raw_transactions", instance, "2026-09-04", raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no landing file for 2026-09-04" in str(
        failure.event_specific_data.user_failure_data.description
    )


def data_lines(read) -> int:
    return len(read.rows) + read.rejects["line"].n_unique()


@pytest.mark.parametrize("mib", [3, 16, 33])
def test_an_over_long_line_is_rejected_with_its_number_and_no_line_vanishes(tmp_path, columns, mib):
    # DuckDB's reader dropped a 31 MiB line without a word, and a 16 MiB one with 158 lines after it
    long_line = GOOD.replace("T1", "T999").replace("26-35", "x" * (mib << 20))
    lines = [GOOD.replace("T1", f"T{i}") for i in range(40)]
    lines += [long_line] + [GOOD.replace("T1", f"U{i}") for i in range(158)]
    read = read_landing_file(write(tmp_path, HEADER + "\n" + "\n".join(lines) + "\n"), columns)
    assert len(read.rows) == 198 and data_lines(read) == 199
    reject = read.rejects.row(0, named=True)
    assert reject["line"] == 42 and "bytes long, over the" in reject["reason"]
    assert len(reject["raw_line"]) <= 10_000  # kept as a bounded, redacted excerpt


def test_a_cut_last_line_over_1_mib_is_rejected_only(tmp_path, columns):
    cut = GOOD2.replace("36-50", "y" * (2 << 20))  # no newline: an interrupted copy
    read = read_landing_file(
        write(tmp_path, HEADER + "\n" + "\n".join([GOOD] * 30) + "\n" + cut), columns
    )
    assert len(read.rows) == 30 and read.rows["age_band"].str.len_chars().max() == 5
    assert read.rejects["line"].to_list() == [32]
    assert "truncated" in read.rejects["reason"][0]


def test_a_stray_quote_fails_the_file_instead_of_losing_the_lines_after_it(tmp_path, columns):
    # the reader takes everything after an opening quote as one value and returns 40 rows of 199
    stray = GOOD.replace("Anna Müller", '"Anna Müller')
    lines = [GOOD] * 40 + [stray] + [GOOD2] * 158
    with pytest.raises(LandingFileError, match=r"199 data lines were counted.*lines would be lost"):
        read_landing_file(write(tmp_path, HEADER + "\n" + "\n".join(lines) + "\n"), columns)


def test_a_quoted_newline_is_one_row_of_two_lines(tmp_path, columns):
    multi = GOOD.replace("Anna Müller", '"Anna\nMüller"')
    read = read_landing_file(
        write(tmp_path, HEADER + "\n" + "\n".join([GOOD2, multi]) + "\n"), columns
    )
    assert len(read.rows) == 2 and read.rejects.is_empty()


def test_rows_all_for_another_day_fail_the_file_naming_both_days(tmp_path, columns):
    other_day = [
        GOOD.replace("T1", f"T{i}").replace("2026-09-01", "2026-09-16") for i in range(199)
    ]
    path = write(
        tmp_path, HEADER + "\n" + "\n".join(other_day) + "\n", "transactions_2026-09-15.csv"
    )
    read = read_landing_file(path, columns)
    with pytest.raises(LandingFileError) as err:
        checked_rows(
            read, columns, "event_time", datetime(2026, 9, 15), datetime(2026, 9, 16), 0.05
        )
    message = str(err.value)
    assert "199 of 199 rows are bad" in message
    assert "file's day 2026-09-15" in message and "2026-09-16 (199 rows)" in message


def test_a_data_line_in_place_of_the_header_is_not_echoed(tmp_path, columns):
    with pytest.raises(LandingFileError, match="does not look like a header") as err:
        read_landing_file(write(tmp_path, f"{GOOD}\n{GOOD2}\n"), columns)
    assert not any(value in str(err.value) for value in PERSONAL)


def test_rejected_lines_never_hold_a_clear_personal_value(tmp_path, columns):
    ragged = GOOD.replace("T1", "T7") + ",extra"  # a field too many: whose is which is unknown
    bad_amount = GOOD.replace("T1", "T8").replace("12.50", "1,2")
    cut = GOOD2[:90]
    body = HEADER + "\n" + "\n".join([GOOD2] * 60 + [ragged, bad_amount]) + "\n" + cut
    read = read_landing_file(
        write(tmp_path, body), columns, pseudonymize=keyed_pseudonymizer(TEST_KEY)
    )
    assert read.rejects["line"].to_list() == [62, 63, 64]
    stored = " ".join(read.rejects["raw_line"].to_list() + read.rejects["reason"].to_list())
    stored += " ".join(str(v) for v in read.rows.to_dict(as_series=False).values())
    clear = PERSONAL + ["José García", "jose@example.com", "4000000000000002"]
    assert not [v for v in clear if v in stored]
    assert "withheld" in read.rejects["raw_line"][0] and "T7" not in read.rejects["raw_line"][0]


@pytest.mark.integration
def test_a_desktop_copy_of_a_days_file_is_not_stored_twice_and_the_check_names_it(example_env):
    folder = example_env / "landing/transactions"
    original = folder / "transactions_2026-09-03.csv"
    (folder / "transactions_2026-09-03 copy (1).csv").write_bytes(original.read_bytes())
    # a late file that repeats part of the day under other ids is stored: it is new data
    lines = original.read_text().splitlines()
    (folder / "transactions_2026-09-03_late.csv").write_text(
        "\n".join([lines[0], *[line.replace("T2026", "L2026", 1) for line in lines[1:11]]]) + "\n"
    )
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(defs, "raw_transactions", instance, "2026-09-03")
    con = duckdb.connect(str(example_env / "warehouse.duckdb"), read_only=True)
    stored = dict(
        con.sql("SELECT _source_file, count(*) FROM raw.transactions GROUP BY 1").fetchall()
    )
    logged = con.sql(
        "SELECT file, rows, duplicate_of FROM raw.transactions_files ORDER BY file"
    ).fetchall()
    con.close()
    assert set(stored) == {"transactions_2026-09-03.csv", "transactions_2026-09-03_late.csv"}
    assert stored["transactions_2026-09-03_late.csv"] == 10
    copy = next(r for r in logged if "copy (1)" in r[0])
    assert copy[1] == 0 and copy[2] == "transactions_2026-09-03.csv"
    check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "unique_id")
    assert not check.passed and "copy (1).csv repeats transactions_2026-09-03.csv" in (
        check.description
    )


def test_files_whose_ids_collide_are_named_and_only_whole_repeats_are_skipped():
    a = pl.DataFrame({"id": ["1", "2", "3"], "_source_file": ["a.csv"] * 3})
    partial = pl.DataFrame({"id": ["3", "4"], "_source_file": ["a_late.csv"] * 2})
    copy = a.with_columns(_source_file=pl.lit("a copy.csv"))
    assert duplicate_files([("a copy.csv", copy), ("a.csv", a), ("a_late.csv", partial)], "id") == {
        "a copy.csv": "a.csv"
    }
    assert files_sharing_ids(pl.concat([a, partial]), "id") == ["a.csv and a_late.csv share 1 ids"]
    # without an id column whole rows decide
    no_id = a.drop("_source_file").rename({"id": "v"})
    assert duplicate_files([("x.csv", no_id), ("x2.csv", no_id.head(2))], None) == {
        "x2.csv": "x.csv"
    }


@pytest.mark.integration
def test_the_raw_asset_runs_when_invoked_directly_as_the_benchmark_does(example_env):
    defs = build_definitions()
    r = defs.resources
    out = defs.resolve_assets_def("raw_transactions")(
        dg.build_asset_context(partition_key="2026-09-01"),
        files=r["files"],
        warehouse=r["warehouse"],
        pseudonymizer=r["pseudonymizer"],
    )
    assert out.metadata["dagster/row_count"].value > 250


def test_blanks_after_the_last_newline_are_no_line(tmp_path, columns):
    read = read_landing_file(write(tmp_path, f"{HEADER}\n{GOOD}\n  "), columns)
    assert len(read.rows) == 1 and read.rejects.is_empty()
