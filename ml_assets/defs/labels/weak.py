"""Labels: weak supervision, the labelling functions' votes combined by the label model."""

from datetime import timedelta

import dagster as dg
import duckdb
import numpy as np
import polars as pl

from ml_assets.metadata import (
    check_results,
    check_specs,
    checked_write,
    markdown_table,
    table_metadata,
)
from ml_assets.names import (
    FEATURES_ASSET,
    GROUND_TRUTH_ASSET,
    WEAK_LABELS_ASSET,
    Tables,
    asset_key,
    key_prefix,
)
from ml_assets.partitions import time_window
from ml_assets.policies import daily_asset_args, follow_parents
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec, LabelingFunction
from ml_assets.storage.interfaces import Warehouse
from ml_assets.transforms.quality import table_checks
from ml_assets.transforms.weak import fit_label_model, function_stats, majority_vote

VOTE = {"positive": 1, "negative": 0}


def votes_sql(functions: list[LabelingFunction], features: str, id_col: str) -> str:
    votes = ", ".join(
        f"CASE WHEN ({f.when}) THEN {VOTE[f.vote]} END::TINYINT AS {f.name}" for f in functions
    )
    return (
        f"SELECT CAST({id_col} AS VARCHAR) AS event_id, CAST(event_time AS TIMESTAMP) AS event_time, "
        f"{votes} FROM {features} WHERE event_time >= ? AND event_time < ? ORDER BY event_time, event_id"
    )


def read_votes(warehouse: Warehouse, spec: DatasetSpec, table: str, start, end) -> pl.DataFrame:
    functions = spec.weak_labels.functions
    try:
        return warehouse.read(votes_sql(functions, table, spec.id_column), [start, end])
    except duckdb.Error:
        # find the function whose condition DuckDB refuses, to name it
        for f in functions:
            try:
                warehouse.read(votes_sql([f], table, spec.id_column), [start, start])
            except duckdb.Error as one:
                raise dg.Failure(
                    f"labelling function {f.name!r}: its condition `{f.when}` does not run on {table}: {one}. "
                    f"Fix `weak_labels.functions` in {spec.source_path}; the columns are those of `features`"
                ) from None
        raise


def class_balance(
    spec: DatasetSpec, warehouse: Warehouse, labels_table: str
) -> tuple[float | None, str]:
    """(P(positive), where it came from); (None, why it waits) while no matured ground truth
    gives it and the spec sets none: a new deployment's first days."""
    if spec.weak_labels.class_balance is not None:
        return spec.weak_labels.class_balance, "weak_labels.class_balance in the spec"
    rate = warehouse.read_if_exists(
        labels_table,
        f"SELECT avg(label) AS rate, count(*) AS n FROM {labels_table} WHERE label IS NOT NULL",
    )
    if rate is None or not rate["n"][0] or not 0 < (rate["rate"][0] or 0) < 1:
        return None, (
            "waiting: the label model needs the class balance (P(positive)) and no matured ground "
            "truth gives it yet, so the votes and the majority vote are stored without a "
            "probability (no weak label); it is fitted once labels have matured. To start now, "
            f"set weak_labels.class_balance in {spec.source_path}"
        )
    return float(rate["rate"][0]), f"positive rate of {rate['n'][0]} matured labels"


def label_model(patterns: pl.DataFrame, names: list[str], balance: float | None):
    """The label model fitted on the vote patterns and their counts; None without a class
    balance (it waits for matured ground truth)."""
    if balance is None:
        return None
    return fit_label_model(
        patterns.select(names).to_numpy().astype(float), balance, counts=patterns["n"].to_numpy()
    )


def label_model_metadata(model, names, balance, balance_source: str, patterns) -> dict:
    """What the asset shows of the label model, or of what it waits for."""
    if model is None:
        return {
            "label_model": dg.MetadataValue.text(balance_source),
            "class_balance": dg.MetadataValue.null(),
            "class_balance_from": balance_source,
            "fitted_on_events": dg.MetadataValue.int(0),
            "label_model_converged": False,
        }
    return {
        "label_model": dg.MetadataValue.md(markdown_table(model.table(names), max_rows=100)),
        "class_balance": dg.MetadataValue.float(balance),
        "class_balance_from": balance_source,
        "fitted_on_events": dg.MetadataValue.int(int(patterns["n"].sum())),
        "label_model_converged": model.converged,
    }


def auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(truth)) < 2:
        return None
    return float(roc_auc_score(truth, score))


def apply_label_model(
    model, current: pl.DataFrame, names: list[str], truth: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """The window's events with their vote count, majority vote and label-model probability
    (null without a model: no class balance yet); each function's coverage and accuracy, and
    both combiners' AUC against the ground truth known so far (compared where both exist:
    events with ground truth and at least one vote)."""
    votes = current.select(names).to_numpy().astype(float)
    frame = current.with_columns(
        votes=pl.Series((~np.isnan(votes)).sum(axis=1), dtype=pl.Int16),
        majority_vote=pl.Series(majority_vote(votes), dtype=pl.Float64).fill_nan(None),
        probability=pl.Series(model.predict_proba(votes), dtype=pl.Float64)
        if model is not None
        else pl.lit(None, pl.Float64),
    )
    truth_values = (
        frame.join(truth, on="event_id", how="left")["truth"].fill_null(np.nan).to_numpy()
    )
    stats = function_stats(votes, names, truth_values)
    compared = ~np.isnan(truth_values) & (frame["votes"].to_numpy() > 0)
    agreement = {
        "events_compared": int(compared.sum()),
        "majority_vote_auc": auc(
            truth_values[compared], frame["majority_vote"].to_numpy()[compared]
        ),
        "label_model_auc": auc(truth_values[compared], frame["probability"].to_numpy()[compared])
        if model is not None
        else None,
    }
    return frame, stats, agreement


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    functions = spec.weak_labels.functions
    if not functions:
        return dg.Definitions()
    t = Tables(spec)
    names = [f.name for f in functions]
    fit_days = spec.weak_labels.fit_days

    @dg.asset(
        name=WEAK_LABELS_ASSET,
        description=(
            f"Weak supervision: {len(functions)} labelling functions ({', '.join(names)}) vote positive, negative or "
            "abstain on each event of `features`; a generative label model (Dawid-Skene, abstains included, class "
            f"balance given) fitted on the votes of the run's days and the {fit_days} days before combines them into "
            "a probability per event, next to the majority vote. Per function: coverage, overlap, conflict and, where "
            f"`{spec.labels.name}` labels have matured, empirical accuracy. The functions live in the spec's `weak_labels`."
        ),
        group_name="labels",
        key_prefix=key_prefix(spec),
        kinds={"duckdb", "polars"},
        **daily_asset_args(spec, settings),
        deps=[asset_key(spec, FEATURES_ASSET), asset_key(spec, GROUND_TRUTH_ASSET)],
        automation_condition=follow_parents(),
        check_specs=check_specs(asset_key(spec, WEAK_LABELS_ASSET)),
        metadata={"table": t.weak_votes},
    )
    def weak_labels(
        context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]
    ) -> dg.MaterializeResult:
        start, end = time_window(context)
        current = read_votes(warehouse, spec, t.features, start, end)
        # EM runs on the distinct vote patterns and their counts: a few hundred rows, however many days
        history = warehouse.read_if_exists(
            t.weak_votes,
            f"SELECT {', '.join(names)}, count(*) AS n FROM {t.weak_votes} "
            "WHERE event_time >= ? AND event_time < ? GROUP BY ALL",
            [start - timedelta(days=fit_days), start],
        )
        patterns = current.group_by(names).agg(n=pl.len())
        if history is not None and len(history):
            patterns = pl.concat([patterns, history.cast(patterns.schema)])
        balance, balance_source = class_balance(spec, warehouse, t.ground_truth)
        model = label_model(patterns, names, balance)
        if model is None:
            context.log.info(balance_source)
        truth = warehouse.read(
            f"SELECT event_id, CAST(label AS DOUBLE) AS truth FROM {t.ground_truth} "
            "WHERE event_time >= ? AND event_time < ? AND label IS NOT NULL",
            [start, end],
        )
        frame, stats, agreement = apply_label_model(model, current, names, truth)
        outcomes = table_checks(
            frame,
            {"event_id": pl.String, "probability": pl.Float64},
            {"event_id": 0.0, "probability": 0.0 if model is not None else 1.0},
            "event_id",
            {"probability": (0.0, 1.0), "majority_vote": (0.0, 1.0)},
        )
        checked_write(
            warehouse,
            WEAK_LABELS_ASSET,
            outcomes,
            [(t.weak_votes, frame, "event_time", start, end)],
        )
        return dg.MaterializeResult(
            metadata=table_metadata(
                frame,
                hide=spec.identifying_columns,
                functions=dg.MetadataValue.md(markdown_table(stats, max_rows=100)),
                **label_model_metadata(model, names, balance, balance_source, patterns),
                coverage=dg.MetadataValue.float(float((frame["votes"] > 0).mean() or 0.0)),
                agreement_with_ground_truth=dg.MetadataValue.json(agreement),
            ),
            check_results=check_results(outcomes),
        )

    return dg.Definitions(assets=[weak_labels])
