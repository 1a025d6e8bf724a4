"""Features are point-in-time correct: nothing from the event itself or after it."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_assets.spec import load_spec
from ml_assets.transforms.features import build_features, expected_schema

T0 = datetime(2026, 9, 8)


def history(rows):
    return pl.DataFrame(
        [
            {
                "transaction_id": f"t{i}",
                "event_time": t,
                "customer_id": c,
                "amount": a,
                "merchant_category": "grocery",
                "country": "DE",
                "channel": "pos",
                "device": "terminal",
                "age_band": "26-35",
            }
            for i, (t, c, a) in enumerate(rows)
        ]
    )


def test_rolling_windows_count_only_earlier_events():
    spec = load_spec()
    rows = [
        (T0 - timedelta(days=3), "c1", 10.0),  # inside 7d only
        (T0 + timedelta(hours=1), "c1", 20.0),
        (T0 + timedelta(hours=1, minutes=30), "c1", 40.0),  # 30 min after the previous
        (T0 + timedelta(hours=1, minutes=30), "c2", 99.0),  # other customer
        (T0 + timedelta(hours=5), "c1", 1.0),
    ]
    out = build_features(history(rows), spec, T0, T0 + timedelta(days=1))
    f = {r["transaction_id"]: r for r in out.iter_rows(named=True)}
    assert "t0" not in f  # history rows are read, not written
    assert (
        f["t1"]["customer_id_events_1h"],
        f["t1"]["customer_id_events_7d"],
        f["t1"]["customer_id_amount_sum_7d"],
    ) == (0, 1, 10.0)
    assert (
        f["t2"]["customer_id_events_1h"],
        f["t2"]["customer_id_amount_sum_1h"],
        f["t2"]["customer_id_seconds_since_previous"],
    ) == (1, 20.0, 1800.0)
    assert (f["t3"]["customer_id_events_7d"], f["t3"]["customer_id_seconds_since_previous"]) == (
        0,
        None,
    )
    assert (
        f["t4"]["customer_id_events_1h"],
        f["t4"]["customer_id_events_24h"],
        f["t4"]["customer_id_amount_sum_24h"],
    ) == (0, 2, 60.0)
    assert f["t1"]["event_hour"] == 1
    assert {c: out.schema[c] for c in expected_schema(spec)} == expected_schema(spec)


@settings(max_examples=30, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=86399), min_size=2, max_size=25),
    customers=st.lists(st.sampled_from(["a", "b"]), min_size=25, max_size=25),
    cut=st.integers(min_value=1, max_value=86399),
)
def test_later_events_never_change_earlier_features(offsets, customers, cut):
    """Point in time: features of events before `cut` are the same with or without what follows."""
    spec = load_spec()
    rows = [(T0 + timedelta(seconds=s), customers[i], float(i)) for i, s in enumerate(offsets)]
    everything = history(rows)
    full = build_features(everything, spec, T0, T0 + timedelta(days=1))
    before_cut = everything.filter(pl.col("event_time") < T0 + timedelta(seconds=cut))
    if before_cut.is_empty():
        return
    early = build_features(before_cut, spec, T0, T0 + timedelta(days=1))
    expected = full.filter(pl.col("event_time") < T0 + timedelta(seconds=cut)).sort(
        "transaction_id"
    )
    assert expected.equals(early.sort("transaction_id"))


def brute_force(rows, windows: dict[str, timedelta]):
    """Each event's windows counted one by one: the same entity's events in [t - w, t)."""
    out = {}
    for i, (t, c, _amount) in enumerate(rows):
        f = {}
        for name, w in windows.items():
            inside = [r for r in rows if r[1] == c and t - w <= r[0] < t]
            f[f"customer_id_events_{name}"] = len(inside)
            f[f"customer_id_amount_sum_{name}"] = sum(r[2] for r in inside)
        # the previous event is the last one at an earlier time (two at the same time are not
        # each other's previous)
        earlier = [r[0] for r in rows if r[1] == c and r[0] < t]
        f["customer_id_seconds_since_previous"] = (
            (t - max(earlier)).total_seconds() if earlier else None
        )
        out[f"t{i}"] = f
    return out


@settings(max_examples=60, deadline=None)
@given(
    # half hours over 9 days: events exactly on a window's edge (t - 1h, t - 24h, t - 7d), on
    # the day before the partition, and at the same time, all happen often
    slots=st.lists(st.integers(min_value=-8 * 48, max_value=47), min_size=1, max_size=40),
    customers=st.lists(st.sampled_from(["a", "b", "c"]), min_size=40, max_size=40),
    amounts=st.lists(st.integers(min_value=0, max_value=500), min_size=40, max_size=40),
)
def test_rolling_features_equal_counting_each_window_by_hand(slots, customers, amounts):
    """The sort-and-search rolling windows give what counting every event's window gives."""
    spec = load_spec()
    rows = [
        (T0 + timedelta(minutes=30 * m), customers[i], float(amounts[i]))
        for i, m in enumerate(slots)
    ]
    out = build_features(history(rows), spec, T0, T0 + timedelta(days=1))
    expected = brute_force(
        rows, {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
    )
    assert sorted(out["transaction_id"]) == sorted(
        f"t{i}" for i, r in enumerate(rows) if r[0] >= T0
    )
    for row in out.iter_rows(named=True):
        want = expected[row["transaction_id"]]
        for name, value in want.items():
            assert row[name] == (value if value is None else pytest.approx(value)), name
