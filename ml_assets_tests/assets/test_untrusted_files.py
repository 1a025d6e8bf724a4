"""Landing files and their names come from outside: no header becomes SQL, no name a glob, no
file past the landing's limits is read, and one bad file never stops the others."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.names import annotation_columns
from ml_assets.spec import Column, LandingLimits, load_spec
from ml_assets.storage.base import fitting_name
from ml_assets.transforms.ingest import LandingFileError, days_in_file, read_landing_file
from ml_assets_tests.conftest import Daemon, materialize
from ml_assets_tests.conftest import requested_days as days

COLUMNS = [
    Column(name="id", type="int", role="id", nullable=False),
    Column(name="at", type="timestamp", role="event_time", nullable=False),
    Column(name="x", type="float", role="numeric"),
]
SECRET = "the-secret-contents-of-another-file"


def injection(secret_path) -> str:
    """An extra header column that, pasted into `read_csv(columns={...})`, reads another file
    into `annotator` (it did on 9ab9dbc)."""
    return (
        "z': 'VARCHAR'}) AS t(event_id, event_time, label, a2, z), "
        "(SELECT trim(content) AS annotator FROM "
        f"read_text('{secret_path}')) AS h, read_csv('{secret_path}', columns={{'q"
    )


def test_a_header_column_cannot_run_sql_or_read_another_file(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\n")
    spec = load_spec()
    extra = injection(secret).replace('"', '""')
    batch = tmp_path / "batch_1.csv"
    batch.write_text(
        f'event_id,{spec.event_time_column},label,annotator,"{extra}"\n'
        "T1,2026-09-01 10:00:00,fraud,ann,x\nT2,2026-09-01 11:00:00,ok,bob,y\n"
    )
    try:
        read = read_landing_file(batch, annotation_columns(spec), allow_extra_columns=True)
    except LandingFileError as err:  # refusing the file is as good as reading it safely
        assert SECRET not in str(err)
        return
    values = {str(v) for row in read.rows.iter_rows() for v in row}
    assert SECRET not in " ".join(values)
    assert read.rows["annotator"].to_list() == ["ann", "bob"]
    assert len(read.rows) == 2 and read.rejects.is_empty()


def test_the_reader_opens_the_landing_file_and_nothing_else(tmp_path):
    """Even a query written by hand on the landing connection cannot read another file."""
    from ml_assets.transforms.ingest import landing_connection

    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    path = tmp_path / "events.csv"
    path.write_text("id,at,x\n1,2018-01-02 00:00:00,1\n")
    with landing_connection(path) as (con, readable):
        assert con.sql("SELECT count(*) FROM read_csv(?)", params=[readable]).fetchall() == [(1,)]
        with pytest.raises(duckdb.PermissionException):
            con.sql("SELECT * FROM read_text(?)", params=[str(secret)]).fetchall()
        with pytest.raises(duckdb.Error):
            con.execute("SET enable_external_access = true")


def test_a_file_name_is_never_a_glob(tmp_path):
    """`x_[b].csv` beside `x_b.csv`: each is read as itself (DuckDB took `[b]` as a glob and
    read `x_b.csv` in its place)."""
    bracket = tmp_path / "events_[b].csv"
    bracket.write_text("id,at,x\n1,2018-01-02 00:00:00,1\n2,2018-01-02 01:00:00,2\n")
    plain = tmp_path / "events_b.csv"
    plain.write_text("id,at,x\n3,2018-01-03 00:00:00,3\n")
    star = tmp_path / "events_*?.csv"
    star.write_text("id,at,x\n4,2018-01-04 00:00:00,4\n")
    assert read_landing_file(bracket, COLUMNS).rows["id"].to_list() == [1, 2]
    assert read_landing_file(star, COLUMNS).rows["id"].to_list() == [4]
    assert [d.isoformat() for d in days_in_file(bracket, COLUMNS[1])] == ["2018-01-02"]
    assert [d.isoformat() for d in days_in_file(star, COLUMNS[1])] == ["2018-01-04"]


@pytest.mark.parametrize(
    "body, limit",
    [
        # one header field of 200 KB (csv's field limit is 128 KB: the sensor crashed)
        (b"id,at,x" + b"y" * 200_000 + b"\n1,2018-01-02 00:00:00,1\n", "max_header_bytes"),
        # 3 MB without a newline: the whole file is its "header"
        (b"id,at,x," + b"7" * 3_000_000, "max_header_bytes"),
        # an annotation batch of 100k columns took 225 s in the sensor: past the header's
        # bytes; 5,000 short ones fit in them, past the columns
        (b"id,at,x," + b",".join(b"c%d" % i for i in range(100_000)) + b"\n", "max_header_bytes"),
        (b"id,at,x," + b",".join(b"c%d" % i for i in range(5_000)) + b"\n", "max_columns"),
    ],
    ids=["long-header-field", "no-newline", "100k-columns", "5k-columns"],
)
def test_a_file_past_a_limit_is_refused_unread_naming_the_limit(tmp_path, body, limit):
    path = tmp_path / "events.csv"
    path.write_bytes(body)
    for reader in (
        lambda: read_landing_file(path, COLUMNS),
        lambda: days_in_file(path, COLUMNS[1]),
    ):
        with pytest.raises(LandingFileError, match=f"landing.limits.{limit}"):
            reader()


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("id,at,x\n" + "1,2018-01-02 00:00:00,1\n" * 100)
    with pytest.raises(LandingFileError, match="max_file_bytes"):
        read_landing_file(path, COLUMNS, limits=LandingLimits(max_file_bytes=1024))


def test_long_names_get_short_distinct_copies_that_keep_their_extension():
    a, b = "t_2026-09-02_" + "a" * 240 + ".csv", "t_2026-09-02_" + "a" * 239 + "b.csv"
    short = {fitting_name(a), fitting_name(b)}
    assert len(short) == 2
    assert all(len(n.encode()) <= 200 and n.endswith(".csv") for n in short)
    assert fitting_name("transactions_2026-09-02.csv") == "transactions_2026-09-02.csv"
    assert len(fitting_name("ü" * 200 + ".csv").encode()) <= 200


@pytest.fixture
def odd_landing(example_env):
    """Day 2026-09-02's rows split over files with odd names, next to files a sensor must set
    aside; returns (data folder, {file: data lines}) of the good ones."""
    folder = example_env / "landing/transactions"
    for path in folder.iterdir():
        if "2026-09-01" not in path.name and "2026-09-02" not in path.name:
            path.unlink()
    day = folder / "transactions_2026-09-02.csv"
    header, *lines = day.read_text().splitlines()
    names = [
        "transactions_2026-09-02_b.csv",
        "transactions_2026-09-02_[b].csv",
        "transactions_2026-09-02_*?.csv",
        "transactions_2026-09-02_" + "x" * 220 + ".csv",  # 248 bytes
    ]
    assert len(names[-1].encode()) == 248
    share = len(lines) // len(names)
    good = {}
    for i, name in enumerate(names):
        part = lines[i * share : (i + 1) * share if i < len(names) - 1 else len(lines)]
        (folder / name).write_text("\n".join([header, *part]) + "\n")
        good[name] = len(part)
    day.unlink()
    return example_env, good


def test_a_tick_sets_each_bad_file_aside_and_requests_the_good_days(odd_landing):
    data, good = odd_landing
    folder = data / "landing/transactions"
    header = (folder / next(iter(good))).read_text().splitlines()[0]
    bad = {
        "transactions_2026-09-02_field.csv": header + "y" * 200_000 + "\n",
        "transactions_2026-09-02_nonewline.csv": "7" * 3_000_000,
        "transactions_2026-09-02_wide.csv": header + "," * 100_000 + "\n",
    }
    for name, text in bad.items():
        (folder / name).write_text(text)
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        result = Daemon(defs, instance).settle()
        assert days(result) == ["2026-09-01", "2026-09-02"]
        requested = result.run_requests[0].tags["ml_assets/landing_files"]
        assert all(name[:60] in requested for name in good)
        quarantine = data / "quarantine/transactions"
        reasons = {
            p.name.removesuffix(".reason.json"): json.loads(p.read_text())["reason"]
            for p in quarantine.glob("*.reason.json")
        }
        assert set(reasons) == set(bad), reasons
        assert all("landing.limits." in r for r in reasons.values()), reasons
        # the run of the day reads every good file as itself: lines in = rows stored
        assert materialize(defs, "key:raw_transactions", instance, "2026-09-02").success
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        stored = dict(
            con.sql("SELECT _source_file, count(*) FROM raw.transactions GROUP BY ALL").fetchall()
        )
        rejected = dict(
            con.sql(
                "SELECT source_file, count(*) FROM raw.transactions_rejected_rows GROUP BY ALL"
            ).fetchall()
        )
        logged = con.sql(
            "SELECT file, rows, duplicate_of FROM raw.transactions_files "
            "WHERE CAST(day AS DATE) = DATE '2026-09-02'"
        ).fetchall()
    finally:
        con.close()
    for name, lines in good.items():
        assert stored.get(name, 0) + rejected.get(name, 0) == lines, (name, stored, rejected)
    assert len(logged) == len(good) and all(dup is None for _, _, dup in logged), logged
    archived = list((data / "archive/transactions/2026-09-02").iterdir())
    assert len(archived) == len(good) and all(len(a.name.encode()) <= 255 for a in archived)


def test_a_one_letter_value_is_redacted_as_a_whole_never_inside_words():
    from ml_assets.transforms.privacy import replace_whole_values

    reason = 'Error when converting column "n": value n, n@x.org stays'
    assert replace_whole_values(reason, {"n": "9bd784"}) == (
        'Error when converting column "9bd784": value 9bd784, n@x.org stays'
    )
