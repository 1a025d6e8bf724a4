"""Predictions: each day's events scored with the current model."""

from collections.abc import Iterator

import dagster as dg
import numpy as np
import polars as pl

from ml_assets.contracts import ModelInputError, checked_model_input, combined_summary
from ml_assets.metadata import (
    DAYS_IN_METADATA,
    check_results,
    check_specs,
    checked_write,
    table_metadata,
    waiting,
)
from ml_assets.names import (
    FEATURES_ASSET,
    MODEL_ASSET,
    PREDICTIONS_ASSET,
    Tables,
    asset_key,
    key_prefix,
)
from ml_assets.partitions import days_in, time_window
from ml_assets.policies import daily_asset_args, follow_parents
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.storage.interfaces import ModelRegistry, Warehouse
from ml_assets.storage.registry import ModelRegistryError
from ml_assets.transforms.quality import table_checks

PREDICTION_SCHEMA = {
    "event_id": pl.String,
    "event_time": pl.Datetime("us"),
    "score": pl.Float64,
    "alert": pl.Boolean,
    "model_version": pl.String,
}


# scikit-learn needs a pandas copy of its input: score in slices so that copy stays small
SCORE_BATCH_ROWS = 200_000


def score_frame(
    features: pl.DataFrame, spec: DatasetSpec, model, version: str, what: str
) -> tuple[pl.DataFrame, dict]:
    """Each event's score, batch by batch (memory stays that of one batch); each batch is
    checked against the model's input contract in the form the model reads it. Returns the
    scored rows and the contract check's summary."""
    scores, summaries = [], []
    for part in features.iter_slices(SCORE_BATCH_ROWS) if len(features) else [features]:
        model_input, summary = checked_model_input(spec, part, labelled=False, what=what)
        summaries.append(summary)
        if len(part):
            scores.append(model.score_input(model_input))
    frame = features.select(
        event_id=pl.col(spec.id_column).cast(pl.String),
        event_time=pl.col("event_time"),
        score=pl.Series(np.concatenate(scores) if scores else [], dtype=pl.Float64),
    ).with_columns(alert=pl.col("score") >= model.threshold, model_version=pl.lit(version))
    return frame, combined_summary(summaries)


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    t = Tables(spec)

    @dg.asset(
        name=PREDICTIONS_ASSET,
        description=(
            "The model score of every event of the day from the champion (the version in use, see `model`), whether "
            "it passes that version's alert threshold, and the version that scored it, per event and per day. A new "
            "champion scores the days that come after it; `python -m ml_assets.cli.models rollback VERSION` puts an "
            "earlier one back."
        ),
        group_name="predict",
        key_prefix=key_prefix(spec),
        kinds={"duckdb", "scikitlearn"},
        **daily_asset_args(spec, settings),
        deps=[asset_key(spec, FEATURES_ASSET), asset_key(spec, MODEL_ASSET)],
        automation_condition=follow_parents(ignore_updates_of=(asset_key(spec, MODEL_ASSET),)),
        check_specs=check_specs(asset_key(spec, PREDICTIONS_ASSET)),
        metadata={"table": t.predictions},
        output_required=False,  # waits, without failing the run, until a model is in use
    )
    def predictions(
        context: dg.AssetExecutionContext,
        warehouse: dg.ResourceParam[Warehouse],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> Iterator:
        start, end = time_window(context)
        models = registry.for_dataset(spec)
        if models.in_use() is None:
            yield from waiting(
                context,
                "no model in use yet: `model` trains once days with matured labels give a "
                "training set, and a version is put in use by the gate",
            )
            return
        try:
            version = models.current_version()
            model, _ = models.load_model(version)
        except ModelRegistryError as err:
            raise dg.Failure(str(err)) from None
        features = warehouse.read(
            f"SELECT * FROM {t.features} WHERE event_time >= ? AND event_time < ?", [start, end]
        )
        try:
            frame, contract = score_frame(features, spec, model, version, t.features)
        except ModelInputError as err:
            raise dg.Failure(str(err)) from None
        outcomes = table_checks(
            frame,
            PREDICTION_SCHEMA,
            {c: 0.0 for c in PREDICTION_SCHEMA},
            "event_id",
            {"score": (0.0, 1.0)},
        )
        checked_write(
            warehouse,
            PREDICTIONS_ASSET,
            outcomes,
            [(t.predictions, frame, "event_time", start, end)],
        )
        yield dg.MaterializeResult(
            metadata=table_metadata(
                frame,
                hide=spec.identifying_columns,
                model_version=version,
                # which version scored each day (the column model_version says it per event)
                model_version_by_day=dg.MetadataValue.json(
                    {day.isoformat(): version for day in days_in(start, end)[-DAYS_IN_METADATA:]}
                ),
                alert_rate=float(frame["alert"].mean()) if len(frame) else 0.0,
                mean_score=float(frame["score"].mean()) if len(frame) else 0.0,
                **contract,
            ),
            check_results=check_results(outcomes),
        )

    return dg.Definitions(assets=[predictions])
