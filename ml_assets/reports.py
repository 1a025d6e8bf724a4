"""The drift and performance reports a person reads: plots as PNG, Markdown for the Dagster UI,
a standalone HTML page per day. No Dagster here.

Plots are small palette PNGs embedded as base64 data URIs, so one string renders both in the
UI's Markdown metadata and in an HTML file opened from disk, with nothing else to fetch. Only
what a person looks at is drawn (`drift.plots` in the spec), and a run over several days keeps
its images out of the metadata, which Dagster copies onto every day's event.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime

import matplotlib

matplotlib.use("Agg")  # no display: figures are only ever written to PNG

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from PIL import Image  # noqa: E402

from ml_assets.metadata import markdown_table  # noqa: E402
from ml_assets.transforms.drift import category_counts  # noqa: E402

REFERENCE_COLOR, CURRENT_COLOR = "#8a8f98", "#d1495b"
MAX_BARS = 12
TABLE_COLUMNS = [
    "column",
    "drifted",
    "why",
    "test",
    "statistic",
    "p_value",
    "psi",
    "importance",
    "missing_rate_reference",
    "missing_rate_current",
    "new_categories",
    "unknown_raw_values",
    "vanished_categories",
    "rows",
]


PALETTE_COLORS = 16


def png_data_uri(fig) -> str:
    """The figure as a data URI of a 16-colour palette PNG: the plots are a few flat colours, so
    this looks the same as matplotlib's RGBA PNG at a third to a seventh of its bytes (every
    byte of an image in metadata is stored in the event log, three times)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
    plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        small = image.convert("RGB").quantize(PALETTE_COLORS, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    small.save(out, format="png", optimize=True)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def distribution_plot(name: str, profile: dict, current: pl.Series, why: str = "") -> str:
    """Reference vs today for one column: shared-bin histograms (numeric, the 1st-99th
    percentile range of both) or category shares side by side (categorical)."""
    fig, ax = plt.subplots(figsize=(5.2, 2.6))
    if profile["kind"] == "numeric":
        reference = np.asarray(profile["sample"], dtype=float)
        values = current.cast(pl.Float64).to_numpy()
        values = values[np.isfinite(values)]
        both = np.concatenate([reference, values]) if len(values) else reference
        low, high = np.quantile(both, [0.01, 0.99]) if len(both) else (0.0, 1.0)
        bins = np.linspace(low, high if high > low else low + 1, 40)
        ax.hist(
            reference, bins=bins, density=True, color=REFERENCE_COLOR, alpha=0.6, label="reference"
        )
        if len(values):
            ax.hist(
                values,
                bins=bins,
                density=True,
                histtype="step",
                color=CURRENT_COLOR,
                lw=1.8,
                label="today",
            )
        ax.set_ylabel("density")
    else:
        counts = category_counts(current, profile.get("from_numeric", False))
        total = max(1, sum(counts.values()))
        shares = {k: v / total for k, v in counts.items()}
        ref = profile["proportions"]
        cats = sorted(set(ref) | set(shares), key=lambda c: -max(ref.get(c, 0), shares.get(c, 0)))
        cats = cats[:MAX_BARS]
        x = np.arange(len(cats))
        ax.bar(
            x - 0.2, [ref.get(c, 0) for c in cats], 0.4, color=REFERENCE_COLOR, label="reference"
        )
        ax.bar(x + 0.2, [shares.get(c, 0) for c in cats], 0.4, color=CURRENT_COLOR, label="today")
        ax.set_xticks(x, cats, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("share")
    ax.set_title(f"{name}" + (f": {why}" if why else ""), fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    return png_data_uri(fig)


def trend_plot(
    days: pl.DataFrame,
    threshold: float,
    performance: pl.DataFrame | None = None,
    estimates: pl.DataFrame | None = None,
) -> str:
    """Drift score per day against the threshold (drifted days marked) and, when given, the
    realised PR AUC per day with the model's test PR AUC on a second axis, and the PR AUC that
    CBPE estimated for each scored day before its labels came (`estimates`: day, est_pr_auc)."""
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    if len(days):
        days = days.sort("day")
        ax.plot(
            days["day"].to_list(),
            days["drift_score"].to_list(),
            color="#30638e",
            lw=1.5,
            label="drift score",
        )
        drifted = days.filter(pl.col("dataset_drifted"))
        ax.scatter(
            drifted["day"].to_list(),
            drifted["drift_score"].to_list(),
            color=CURRENT_COLOR,
            zorder=3,
            s=14,
            label="drifted day",
        )
    ax.axhline(threshold, color=CURRENT_COLOR, ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("drift score")
    handles, labels = ax.get_legend_handles_labels()
    has_estimates = estimates is not None and len(estimates.drop_nulls("est_pr_auc"))
    has_realised = performance is not None and len(performance.drop_nulls("pr_auc"))
    right = ax.twinx() if has_estimates or has_realised else None
    if has_estimates:
        est = estimates.drop_nulls("est_pr_auc").sort("day")
        right.plot(
            est["day"].to_list(),
            est["est_pr_auc"].to_list(),
            color="#00798c",
            ls="--",
            lw=1.2,
            label="estimated PR AUC (CBPE, before labels)",
        )
    if has_realised:
        perf = performance.drop_nulls("pr_auc").sort("day")
        right.plot(
            perf["day"].to_list(),
            perf["pr_auc"].to_list(),
            color="#edae49",
            lw=1.5,
            marker=".",
            label="realised PR AUC (new days)",
        )
        if "test_pr_auc" in perf.columns:
            right.plot(
                perf["day"].to_list(),
                perf["test_pr_auc"].to_list(),
                color="#edae49",
                ls=":",
                lw=1,
                label="PR AUC on the test slice",
            )
    if right is not None:
        right.set_ylim(0, 1.02)
        right.set_ylabel("PR AUC")
        more_h, more_l = right.get_legend_handles_labels()
        handles, labels = handles + more_h, labels + more_l
    ax.legend(handles, labels, fontsize=7, frameon=False, loc="upper left", ncol=2)
    fig.autofmt_xdate()
    return png_data_uri(fig)


def summary_line(day: datetime, version: str, verdict: dict, threshold: float) -> str:
    state = "DRIFT" if verdict["dataset_drifted"] else "no drift"
    important = verdict.get("important_drifted") or ""
    return (
        f"**{day:%Y-%m-%d}: {state}**: drift score {verdict['drift_score']:.2f} (threshold {threshold:g}); "
        f"{verdict['drifted_columns']} of {verdict['columns']} columns drifted on {verdict['rows']:,} rows, "
        f"against the {verdict.get('reference', 'training slice')} of model `{version}`. "
        + (f"Important inputs drifted: {important}. " if important else "")
        + (
            "The prediction score drifted."
            if verdict.get("prediction_drifted")
            else "The prediction score is stable."
        )
    )


def report_markdown(
    summary: str,
    table: pl.DataFrame,
    plots: dict[str, str],
    html_path: str | None,
    plots_elsewhere: bool = False,
) -> str:
    """The UI's report: summary, plots, columns by severity. `plots_elsewhere`: a range run,
    whose plots are in each day's HTML report only (its metadata is copied onto every day)."""
    images = "\n\n".join(f"![{name}]({uri})" for name, uri in plots.items())
    link = f"\n\nStandalone report: `{html_path}`" if html_path else ""
    if plots_elsewhere:
        link += " (this run covered several days: each day's plots are in its own HTML report)"
    return (
        summary
        + link
        + "\n\n"
        + images
        + "\n\n### Columns by severity\n\n"
        + markdown_table(
            table.select([c for c in TABLE_COLUMNS if c in table.columns]), max_rows=100
        )
    )


def html_table(frame: pl.DataFrame) -> str:
    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows(named=True):
        cls = ' class="drifted"' if row.get("drifted") or row.get("alert") else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{cell(v)}</td>" for v in row.values()) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; }
tr.drifted td { background: #fbe9eb; }
img { margin: 0.5em 1em 0.5em 0; vertical-align: top; }
.summary { font-size: 15px; background: #f4f6f8; padding: 0.8em 1em; border-radius: 4px; }
"""


def report_html(
    title: str, summary: str, sections: list[tuple[str, str]], plots: dict[str, str]
) -> str:
    """A page that opens from disk: summary, embedded plots, then titled HTML sections."""
    summary_html = html.escape(summary).replace("**", "")
    images = "".join(
        f'<img alt="{html.escape(n)}" title="{html.escape(n)}" src="{uri}">'
        for n, uri in plots.items()
    )
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class='summary'>{summary_html}</p><div>{images}</div>{body}</body></html>"
    )
