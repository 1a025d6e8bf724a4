"""Landing values in the layouts common exports write: timestamps with fractional seconds, a `T`,
offsets or a date alone; explicit per-column formats; booleans as categories."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from ml_assets.names import annotation_columns
from ml_assets.spec import Column, SpecError, load_spec
from ml_assets.transforms.ingest import days_in_file, read_landing_file
from ml_assets.transforms.privacy import keyed_pseudonymizer
from ml_assets_tests.conftest import TEST_KEY

COLUMNS = [
    Column(name="id", type="int", role="id", nullable=False),
    Column(name="at", type="timestamp", role="event_time", nullable=False),
    Column(name="x", type="float", role="numeric"),
]


def write(tmp_path, text: str, name="events.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_common_timestamp_layouts_are_read_and_offsets_converted_to_the_partitions_timezone(
    tmp_path,
):
    path = write(
        tmp_path,
        "id,at,x\n"
        "1,2018-01-02 00:07:23.232,1\n"  # fractional seconds
        "2,2018-01-02T00:07:23,1\n"  # T separator, no offset: a Berlin time
        "3,2018-01-02T00:07:23Z,1\n"  # UTC
        "4,2018-01-02T00:07:23.5+02:00,1\n"  # an offset
        "5,2018-01-02,1\n"  # a date alone: midnight
        "6,2018-01-01T23:30:00-02:00,1\n",  # another day in UTC, the next one in Berlin
    )
    read = read_landing_file(path, COLUMNS, timezone="Europe/Berlin")
    assert read.rejects.is_empty()
    assert read.rows["at"].to_list() == [
        datetime(2018, 1, 2, 0, 7, 23, 232000),
        datetime(2018, 1, 2, 0, 7, 23),
        datetime(2018, 1, 2, 1, 7, 23),  # 00:07 UTC is 01:07 in Berlin in winter
        datetime(2018, 1, 1, 23, 7, 23, 500000),
        datetime(2018, 1, 2),
        datetime(2018, 1, 2, 2, 30),
    ]
    # the days a file is partitioned into are read the same way
    assert days_in_file(path, COLUMNS[1], timezone="Europe/Berlin") == [
        date(2018, 1, 1),
        date(2018, 1, 2),
    ]
    assert days_in_file(path, COLUMNS[1], timezone="UTC") == [date(2018, 1, 1), date(2018, 1, 2)]
    in_utc = read_landing_file(path, COLUMNS, timezone="UTC").rows["at"].to_list()
    assert in_utc[2] == datetime(2018, 1, 2, 0, 7, 23) and in_utc[5] == datetime(2018, 1, 2, 1, 30)


def test_an_unreadable_timestamp_is_rejected_with_its_line_and_what_layouts_are_read(tmp_path):
    path = write(tmp_path, "id,at,x\n1,2018-01-02 10:00:00,1\n2,02.01.2018 10:00,1\n")
    read = read_landing_file(path, COLUMNS, max_rejected_fraction=1.0)
    assert read.rows["id"].to_list() == [1]
    reject = read.rejects.row(0, named=True)
    assert reject["line"] == 3 and reject["column"] == "at"
    assert "'TIMESTAMP'" in reject["reason"] and "TIME ZONE" not in reject["reason"]
    assert "set the column's `format` in the spec" in reject["reason"]


def test_explicit_formats_per_column_parse_their_column_and_reject_other_layouts(tmp_path):
    columns = [
        Column(name="id", type="int", role="id", nullable=False),
        Column(name="at", type="timestamp", role="event_time", format="%d/%m/%Y %H:%M:%S.%g"),
        Column(name="seen", type="timestamp", role="attribute", format="%Y%m%d %H%M %z"),
        Column(name="due", type="date", role="attribute", format="%d.%m.%Y"),
        Column(name="email", type="string", role="personal"),
    ]
    path = write(
        tmp_path,
        "id,at,seen,due,email\n"
        "1,02/01/2018 10:00:00.250,20180102 0930 +0100,31.01.2018,a@example.com\n"
        "2,2018-01-02 10:00:00,20180102 0930 +0100,31.01.2018,secret@example.com\n"
        "3,02/01/2018 11:00:00.000,,01.02.2018,c@example.com\n",
    )
    read = read_landing_file(
        path,
        columns,
        max_rejected_fraction=1.0,
        pseudonymize=keyed_pseudonymizer(TEST_KEY),
        timezone="UTC",
    )
    assert read.rows["id"].to_list() == [1, 3]
    assert read.rows["at"].to_list() == [
        datetime(2018, 1, 2, 10, 0, 0, 250000),
        datetime(2018, 1, 2, 11),
    ]
    assert read.rows["seen"].to_list() == [datetime(2018, 1, 2, 8, 30), None]
    assert read.rows["due"].to_list() == [date(2018, 1, 31), date(2018, 2, 1)]
    reject = read.rejects.row(0, named=True)
    assert reject["column"] == "at" and "format '%d/%m/%Y %H:%M:%S.%g'" in reject["reason"]
    assert (
        "secret@example.com" not in reject["raw_line"]
        and "2018-01-02 10:00:00" in reject["raw_line"]
    )
    assert read.lines_read == 3
    assert days_in_file(path, columns[1]) == [date(2018, 1, 2)]


def test_the_spec_refuses_a_format_it_cannot_use(tmp_path):
    with pytest.raises(ValueError, match="not a strptime format"):
        Column(name="at", type="timestamp", role="event_time", format="%Q")
    with pytest.raises(ValueError, match="only allowed on timestamp and date"):
        Column(name="x", type="float", role="numeric", format="%Y")
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: bad\npartitions: {start: 2026-01-01, timezone: Mars/Olympus}\n"
        "landing: {path: l, pattern: 'x_{date}.csv'}\n"
        "columns: [{name: i, type: int, role: id}, {name: t, type: timestamp, role: event_time},"
        " {name: x, type: float, role: numeric}]\n"
        "labels: {name: y, landing: {path: y, pattern: 'y_{date}.csv'}, columns: ["
        "{name: e, type: int, role: attribute}, {name: r, type: date, role: event_time}],"
        " event_id_column: e, reported_time_column: r}\n"
    )
    with pytest.raises(SpecError, match="partitions.timezone: .*'Mars/Olympus' is not an IANA"):
        load_spec(spec)


def test_a_boolean_column_can_be_a_category_and_reads_what_exports_write(tmp_path):
    flag = Column(
        name="flag", type="bool", role="categorical", categories=[True, False], nullable=True
    )
    assert flag.categories == ["true", "false"] and flag.table_type == "string"
    with pytest.raises(ValueError, match="categories are true and false"):
        Column(name="flag", type="bool", role="categorical", categories=["maybe"])
    path = write(
        tmp_path,
        "id,at,x,flag\n1,2018-01-02,1,true\n2,2018-01-02,1,0\n3,2018-01-02,1,yes\n"
        "4,2018-01-02,1,No\n5,2018-01-02,1,\n6,2018-01-02,1,perhaps\n",
    )
    read = read_landing_file(path, [*COLUMNS, flag], max_rejected_fraction=1.0)
    assert read.rows["flag"].to_list() == ["true", "false", "true", "false", None]
    assert read.rejects["line"].to_list() == [7] and read.rejects["column"][0] == "flag"


def test_annotation_batches_from_labelling_tools_with_iso_times_are_read(tmp_path):
    """Labelling tools write ISO 8601 with a T and a Z; a completed batch is read as it comes."""
    spec = load_spec()
    path = write(
        tmp_path,
        f"event_id,{spec.event_time_column},label,annotator,tool_note\n"
        "T1,2026-09-01T10:00:00.123Z,fraud,ann,x\nT2,2026-09-01T11:00:00+00:00,ok,ann,y\n",
        "batch_1.csv",
    )
    read = read_landing_file(path, annotation_columns(spec), allow_extra_columns=True)
    assert read.rejects.is_empty()
    assert read.rows[spec.event_time_column].to_list() == [
        datetime(2026, 9, 1, 10, 0, 0, 123000),
        datetime(2026, 9, 1, 11),
    ]


def test_yaml_booleans_as_categories_of_a_text_column_are_refused_not_turned_into_words():
    with pytest.raises(ValueError, match="quote them"):
        Column(name="answer", type="string", role="categorical", categories=[True, False])
    quoted = Column(name="answer", type="string", role="categorical", categories=["yes", "no"])
    assert quoted.categories == ["yes", "no"]


def test_a_format_reject_keeps_its_line_in_the_files_delimiter_for_erasure_to_search(tmp_path):
    columns = [
        Column(name="id", type="int", role="id", nullable=False),
        Column(name="at", type="timestamp", role="event_time", format="%d/%m/%Y %H:%M"),
    ]
    path = write(tmp_path, "id;at\n1;02/01/2018 10:00\n2;2018-01-02 10:00\n")
    read = read_landing_file(path, columns, delimiter=";", max_rejected_fraction=1.0)
    assert read.rejects["raw_line"].to_list() == ["2;2018-01-02 10:00"]
