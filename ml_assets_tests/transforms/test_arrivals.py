"""The file sensors' cursor logic, without Dagster: settling, changes, limits, a small cursor."""

from __future__ import annotations

from datetime import date

import pytest

from ml_assets.transforms.arrivals import (
    CLOCK_MARGIN_NS,
    ArrivalCursor,
    CursorError,
    FileStat,
    day_of_file,
    next_tick,
)

S = 1_000_000_000
T0 = 1_800_000_000 * S


def ticks(listing, *, start=T0, every=10 * S, n=2, settle=5, cursor=None, **kw):
    cursor, out = cursor or ArrivalCursor(), []
    for i in range(n):
        tick = next_tick(cursor, listing, start + i * every, settle, **kw)
        out.append(tick)
        cursor = tick.cursor
    return out


def test_a_file_is_ready_on_the_second_tick_that_sees_it_unchanged_and_only_once():
    listing = {"a.csv": FileStat(100, T0 - 60 * S)}
    first, second, third = ticks(listing, n=3)
    assert (first.ready, first.waiting) == ([], ["a.csv"])
    assert second.ready == ["a.csv"]
    assert third.ready == [] and third.waiting == []


def test_a_file_still_growing_waits_until_it_holds_still_for_the_settle_time():
    cursor = ArrivalCursor()
    for size in (10, 20, 30):  # the writer appends between ticks
        tick = next_tick(cursor, {"a.csv": FileStat(size, T0 + size * S)}, T0 + 31 * S, 5)
        assert tick.ready == [] and tick.waiting == ["a.csv"]
        cursor = tick.cursor
    # same size and time as last tick, but changed only 2 s ago: still settling
    tick = next_tick(cursor, {"a.csv": FileStat(30, T0 + 30 * S)}, T0 + 32 * S, 5)
    assert tick.ready == []
    tick = next_tick(tick.cursor, {"a.csv": FileStat(30, T0 + 30 * S)}, T0 + 36 * S, 5)
    assert tick.ready == ["a.csv"]


def test_a_changed_file_is_ready_again_and_an_untouched_one_is_not():
    listing = {"a.csv": FileStat(100, T0), "b.csv": FileStat(100, T0)}
    *_, done = ticks(listing, start=T0 + 10 * S, n=2)
    assert sorted(done.ready) == ["a.csv", "b.csv"]
    changed = {**listing, "a.csv": FileStat(120, T0 + 40 * S)}
    later = ticks(changed, start=T0 + 50 * S, n=2, cursor=done.cursor)
    assert [t.ready for t in later] == [[], ["a.csv"]]


def test_a_late_file_for_an_old_day_is_ready_like_any_other():
    listing = {"t_2026-09-10.csv": FileStat(100, T0)}
    *_, done = ticks(listing, start=T0 + 10 * S)
    # copied in with `cp -p`: old mtime, but ctime (hence changed_ns) is now
    late = {**listing, "t_2026-09-02.csv": FileStat(50, T0 + 500 * S)}
    assert [t.ready for t in ticks(late, start=T0 + 510 * S, cursor=done.cursor)] == [
        [],
        ["t_2026-09-02.csv"],
    ]


def test_a_file_not_due_yet_keeps_settling_and_holds_the_watermark_below_it():
    listing = {"t_2026-12-01.csv": FileStat(100, T0)}
    due = {"value": False}
    cursor = ArrivalCursor()
    for i in range(5):
        tick = next_tick(
            cursor, listing, T0 + (100 + i * 100) * S, 5, is_due=lambda n: due["value"]
        )
        assert tick.ready == [] and tick.waiting == ["t_2026-12-01.csv"]
        assert tick.cursor.watermark_ns < T0
        cursor = tick.cursor
    due["value"] = True
    assert next_tick(cursor, listing, T0 + 700 * S, 5, is_due=lambda n: True).ready == [
        "t_2026-12-01.csv"
    ]


def test_many_files_are_taken_in_batches_and_the_cursor_stays_small():
    listing = {f"t_{i:05d}.csv": FileStat(1000, T0 + i) for i in range(5000)}
    cursor, seen = ArrivalCursor(), []
    now = T0 + 10 * S
    for _ in range(12):
        tick = next_tick(cursor, listing, now, 5, max_files=500)
        seen += tick.ready
        cursor, now = tick.cursor, now + 10 * S
    assert sorted(seen) == sorted(listing) and len(seen) == len(set(seen))
    # once the clock is past the margin, decided files fall below the watermark and leave the cursor
    quiet = next_tick(cursor, listing, now + CLOCK_MARGIN_NS, 5)
    assert quiet.ready == [] and quiet.cursor.decided == {} and len(quiet.cursor.to_json()) < 200


def test_the_byte_budget_defers_big_files_but_always_takes_one():
    listing = {"a.csv": FileStat(800, T0), "b.csv": FileStat(800, T0 + 1)}
    _, second, third = ticks(listing, start=T0 + 10 * S, n=3, max_bytes=1000)
    assert (second.ready, second.deferred) == (["a.csv"], ["b.csv"])
    assert third.ready == ["b.csv"]


def test_a_repeated_tick_returns_the_same_files_so_run_keys_deduplicate():
    listing = {"a.csv": FileStat(1, T0), "b.csv": FileStat(2, T0)}
    first = next_tick(ArrivalCursor(), listing, T0 + 10 * S, 5)
    again = next_tick(ArrivalCursor.from_json(first.cursor.to_json()), listing, T0 + 20 * S, 5)
    repeat = next_tick(ArrivalCursor.from_json(first.cursor.to_json()), listing, T0 + 21 * S, 5)
    assert again.ready == repeat.ready == ["a.csv", "b.csv"]


def test_an_unreadable_cursor_says_how_to_reset_it():
    with pytest.raises(CursorError, match="Set cursor value"):
        ArrivalCursor.from_json('{"files": ["a"]}')
    assert ArrivalCursor.from_json(None) == ArrivalCursor()


def test_the_day_comes_from_the_date_in_the_name():
    assert day_of_file("transactions_2026-09-02.csv", "transactions_{date}*.csv") == date(
        2026, 9, 2
    )
    assert day_of_file("transactions_2026-09-02_late.csv", "transactions_{date}*.csv") == date(
        2026, 9, 2
    )
    with pytest.raises(ValueError, match="not a calendar date"):
        day_of_file("transactions_2026-02-30.csv", "transactions_{date}*.csv")
    with pytest.raises(ValueError, match="does not match"):
        day_of_file("transactions_20260902.csv", "transactions_{date}*.csv")


def test_an_object_dated_by_its_upload_start_is_taken_within_the_store_margin():
    """S3 dates a multipart upload by its start: a 10-minute upload appears with a last-modified
    time 10 minutes old. With the local margin (60 s) the watermark would already be past it; the
    object store's margin (an hour) takes it."""
    uploaded = {"big.csv": FileStat(5 << 30, T0 + 30 * S, "etag1")}
    at = T0 + 630 * S  # it appears ten minutes after its last-modified time

    def seen(margin):
        cursor = ArrivalCursor()
        for now in range(T0, at, 30 * S):  # the sensor ticks every 30 s during the upload
            cursor = next_tick(cursor, {}, now, 5, clock_margin_ns=margin).cursor
        return [t.ready for t in ticks(uploaded, start=at, cursor=cursor, clock_margin_ns=margin)]

    assert seen(CLOCK_MARGIN_NS) == [[], []]  # missed: below the watermark from the start
    assert seen(3600 * S) == [[], ["big.csv"]]
