"""`drift.plots` decides which plots a day's drift report draws."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest

from ml_assets.defs.monitor.assets import day_report
from ml_assets.spec.modelling import Drift

DAY = datetime(2026, 10, 20)


def a_day(drifted: list[bool]):
    """A day's drift table over numeric columns c0.., those marked drifted, and its data; the
    model's importance grows with the column number and its 5 most important are c_n..c_n-4."""
    rng = np.random.default_rng(1)
    names = [f"c{i}" for i in range(len(drifted))]
    table = pl.DataFrame(
        {
            "column": names,
            "drifted": drifted,
            "why": ["shifted" if d else "" for d in drifted],
            "importance": [0.1 * (i + 1) for i in range(len(names))],
            "severity": [1.0 if d else 0.0 for d in drifted],
        }
    )
    reference = {c: {"kind": "numeric", "sample": rng.normal(size=300).tolist()} for c in names}
    data = pl.DataFrame({c: rng.normal(size=300) for c in names})
    verdict = {
        "dataset_drifted": any(drifted),
        "drift_score": 0.5,
        "drifted_columns": sum(drifted),
        "columns": len(drifted),
        "rows": 300,
        "important_drifted": ", ".join(c for c in reversed(names[-5:]) if drifted[names.index(c)]),
    }
    return table, reference, data, verdict


@pytest.mark.parametrize(
    ("mode", "drifted", "plotted"),
    [
        # the default: a stable day draws nothing, a drifted day its drifted columns among the
        # model's 5 most important, the most important first, three at most
        ("drifted", [False] * 7, []),
        ("drifted", [False, False, True, False, True, False, False], ["c4", "c2"]),
        ("drifted", [True] * 7, ["c6", "c5", "c4"]),
        # drifted, but among the least important inputs: no picture
        ("drifted", [True, True] + [False] * 5, []),
        # every day its three worst columns (drifted first)
        ("all", [False] * 7, ["c6", "c5", "c4"]),
        ("all", [True] + [False] * 6, ["c0", "c6", "c5"]),
        # off, for a long backfill: the tables are the same, no picture is drawn
        ("none", [True] * 7, []),
    ],
)
def test_the_spec_chooses_the_plots_a_day_draws(tmp_path, mode, drifted, plotted):
    table, reference, data, verdict = a_day(drifted)
    html = tmp_path / "drift.html"
    _, plots = day_report(DAY, "v1", verdict, table, reference, data, Drift(plots=mode), html)
    assert [name.split(":")[0] for name in plots] == plotted
    page = html.read_text()
    assert page.count("<img ") == len(plotted) and "Columns by severity" in page
    assert all(uri.startswith("data:image/png;base64,") for uri in plots.values())
