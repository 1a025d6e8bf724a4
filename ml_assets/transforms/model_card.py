"""The model card: what a version is for, what it was trained on, how good it is and where it
falls short, as Markdown. No Dagster here: it is written from the version's card (model.json)."""

from __future__ import annotations

from datetime import datetime, timedelta

from ml_assets.spec import DatasetSpec

INTERVAL_METRICS = [
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC"),
    ("brier", "Brier score"),
    ("log_loss", "log loss"),
    ("precision_at_threshold", "precision at the threshold"),
    ("recall_at_threshold", "recall at the threshold"),
]


def fmt_number(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if abs(value) < 0.1 else f"{value:.3f}"


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    if not rows:
        return ["(none)"]
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            cells.append(fmt_number(v) if isinstance(v, float) else "" if v is None else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return out


def label_text(spec: DatasetSpec) -> str:
    """Where the labels come from and what an event without one counts as, from the spec."""
    lab = spec.labels
    where = (
        f"the `{spec.label_column}` column of the events, treated as unknown until then"
        if lab.in_event_file
        else "label files reporting on the events"
    )
    return (
        f"Labels come from `{lab.name}` ({where}), known up to {lab.maturity_days} days after the "
        "event: an event without a label by then counts as a negative, so a positive that is "
        "never reported is one."
    )


def gap_text(split: dict, gap_days: int) -> str:
    if gap_days == 0:
        return (
            "- No days were left out between training and validation (training.gap_days: 0): a live "
            "model never has the newest labels, so its figures may be better here than in use."
        )
    return (
        "- Trained and tested on days whose labels had matured; the newest "
        f"{gap_days} days before validation ({split.get('gap', '')}) were left out, as a live "
        "model never has them."
    )


def window_text(card: dict) -> str:
    window = card.get("training_window") or "rolling"
    if window == "rolling":
        return (
            "Training window: rolling (the newest days whose labels have all matured; each "
            "retraining moves it forward)."
        )
    return (
        f"Training window: {window} (training.window: fixed). The model is applied to every day "
        "after it and not retrained on newer data; drift is measured against this period."
    )


def calibration_text(calibration: dict | None) -> str:
    """What the card says of the map the performance estimates (CBPE) apply to the scores."""
    if not calibration:
        return "No calibration map (a card from before the performance estimates)."
    before, after = calibration.get("ece_before"), calibration.get("ece_after")
    if calibration.get("method", "none") == "none":
        return (
            f"The performance estimates read the scores as they are: expected calibration error "
            f"{fmt_number(before)} on the test slice, which neither isotonic nor sigmoid "
            f"calibration on the validation slice lowered. {calibration.get('why', '')}".strip()
        )
    return (
        f"The performance estimates (CBPE) read the scores through a {calibration['method']} "
        f"calibration fitted on the validation slice: expected calibration error on the test "
        f"slice {fmt_number(before)} before, {fmt_number(after)} after. The model's own scores "
        "and threshold are unchanged."
    )


def sampled_text(sampled: dict | None) -> str:
    """What the card says of slices sampled down (training.max_train_rows, max_evaluation_rows)."""
    if not sampled:
        return ""
    parts = [
        f"{name} {share['kept_share']:.1%} of {share['available']:,} events"
        for name, share in sampled.items()
    ]
    evaluated = [name for name in sampled if name in ("validation", "test")]
    return f" Sampled by a seeded hash of the id: {', '.join(parts)}." + (
        f" The {' and '.join(evaluated)} metrics and their 95% intervals are those of the "
        "sample: the intervals are wider than the whole slice's would be."
        if evaluated
        else ""
    )


def model_card_markdown(card: dict, spec: DatasetSpec) -> str:
    dataset, description = spec.name, spec.description or f"the {spec.name} events"
    m = card["metrics"]
    intervals = m.get("intervals", {})
    split = card.get("time_split") or {}
    lines = [
        f"# Model card: {dataset} {card['version']}",
        "",
        f"**Kind:** {card.get('kind', 'gradient boosting')}. **Trained:** {card.get('trained_at')}. "
        f"**Artifact:** `{card.get('artifact')}`, SHA-256 `{card.get('sha256', '')[:16]}`. "
        f"**Code:** {card.get('code_version', 'unknown')}.",
        "",
        "## Intended use",
        "",
        f"Scores each event of the `{dataset}` dataset ({description.strip().rstrip('.')}) with the probability that "
        f"its label is positive; events scoring at least {fmt_number(m['threshold'])} raise an alert "
        f"({card.get('threshold_rule_text', 'threshold rule: see the spec')}). For ranking events for "
        "review, not for automated decisions about a person.",
        "",
        "## Training data",
        "",
        window_text(card),
        "",
        *_table(
            [
                {"slice": k, "days": split[k]}
                for k in ("train", "gap", "validation", "test")
                if k in split
            ],
            ["slice", "days"],
        ),
        "",
        f"Rows: {card.get('train_rows')} train, {card.get('validation_rows')} validation, "
        f"{card.get('test_rows')} test. Validation and test use ground truth only."
        + sampled_text(card.get("sampled_slices")),
        "",
        "Label sources of the rows:",
        "",
        *_table(card.get("label_sources") or [], ["split", "label_source", "rows"]),
        "",
        f"Data versions: `{card.get('input_data_versions')}`.",
        "",
        "## Metrics on the test slice",
        "",
        *_table(
            [
                {
                    "metric": name,
                    "value": m.get(key),
                    "95% interval": (
                        f"{intervals[key][0]:.3f} - {intervals[key][1]:.3f}"
                        if key in intervals
                        else "n/a"
                    ),
                }
                for key, name in INTERVAL_METRICS
            ],
            ["metric", "value", "95% interval"],
        ),
        "",
        f"Baseline (logistic regression) PR AUC {fmt_number((card.get('baseline_metrics') or {}).get('pr_auc'))}; "
        f"the gradient-boosted candidate {'beat' if card.get('beats_baseline') else 'did not beat'} it.",
        "",
        "## Calibration (test slice, equal-count score bins)",
        "",
        *_table(m.get("calibration", []), ["mean_score", "observed_rate", "events"]),
        "",
        calibration_text(card.get("score_calibration")),
        "",
        "## Slices and fairness",
        "",
        *_table(
            card.get("slices") or [],
            [
                "column",
                "group",
                "events",
                "positives",
                "selection_rate",
                "true_positive_rate",
                "false_positive_rate",
                "pr_auc",
            ],
        ),
        "",
    ]
    fairness = card.get("fairness") or {}
    for col, g in (fairness.get("gaps") or {}).items():
        iv = g.get("intervals") or {}
        lines.append(
            f"- `{col}`: demographic-parity difference {fmt_number(g['demographic_parity_difference'])}"
            f" (95% {iv.get('demographic_parity_difference')}), equalized-odds difference "
            f"{fmt_number(g['equalized_odds_difference'])} (95% {iv.get('equalized_odds_difference')}), "
            f"over {g['groups_compared']} groups."
        )
    lines += [
        f"- Fairness check: {'passed' if fairness.get('passed', True) else 'FAILED'}.",
        "",
        "## Feature importance (permutation, PR AUC drop on the test slice)",
        "",
        *_table(card.get("feature_importance") or [], ["feature", "pr_auc_drop", "spread"]),
        "",
        "## Promotion",
        "",
        (
            "Put in use: it passed the champion/challenger gate."
            if (card.get("promotion") or {}).get("promote")
            else "Not put in use."
        )
        + (
            f" Champion at the time: {card['promotion'].get('champion') or 'none'}."
            if card.get("promotion")
            else ""
        ),
        "",
        *[f"- {r}" for r in (card.get("promotion") or {}).get("reasons", [])],
        "",
        "## Drift at training time",
        "",
        card.get("drift_at_training") or "no drift report yet",
        "",
        "## Known limits",
        "",
        gap_text(split, spec.training.gap_days),
        f"- {label_text(spec)}",
        "- Metrics per group rest on few positives: read their intervals before their values.",
        "- A shift in the inputs (see the drift report) makes every figure above stale.",
    ]
    return "\n".join(lines) + "\n"


def card_data_end(card: dict) -> datetime | None:
    """The first day after the data the model was trained and tested on (from its test window)."""
    window = card.get("test_window")
    if not window:
        return None
    return datetime.fromisoformat(window.split(" .. ")[-1]) + timedelta(days=1)
