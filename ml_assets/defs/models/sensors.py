"""Models: the retraining policy, as a sensor that requests training_set and model."""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from ml_assets.names import (
    ALERT_REASON,
    ALERT_VERSION,
    DRIFT_REPORT_ASSET,
    DRIFTED_SINCE_TRAINING,
    IMPORTANT_DRIFTED,
    LABELLED_TOTAL,
    LABELS_ASSET,
    MODEL_ASSET,
    MODEL_PERFORMANCE_ASSET,
    PERFORMANCE_ALERT,
    TRAINING_SET_ASSET,
    asset_key,
    dataset_folder,
    instigator,
)
from ml_assets.registry import load_card
from ml_assets.resources import LocalFiles
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.transforms.retraining import (
    DriftState,
    ModelState,
    PerformanceState,
    reasons_to_retrain,
)

RETRAINING_TAG = "ml_assets/retraining"
REASON_TAG = "ml_assets/retrain_reason"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def latest(instance: dg.DagsterInstance, asset: dg.AssetKey):
    """(metadata values by name, timestamp) of the newest materialization, or ({}, None)."""
    event = instance.get_latest_materialization_event(asset)
    if event is None or event.asset_materialization is None:
        return {}, None
    meta = {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}
    return meta, datetime.fromtimestamp(event.timestamp, UTC)


def retraining_tags(reasons: list[str]) -> dict[str, str]:
    """The tags of a retraining run: marked as one, with its reasons (within a tag's length)."""
    return {RETRAINING_TAG: "true", REASON_TAG: "; ".join(reasons)[:4000]}


def erased_rows(models_dir: Path, version: str | None) -> int:
    """Rows of erased people that the version's windows held (its card keeps each erasure)."""
    if not version or not (models_dir / version / "model.json").exists():
        return 0
    return sum(
        e.get("rows_in_windows", 0) for e in load_card(models_dir, version).get("erasures", [])
    )


def current_state(
    instance: dg.DagsterInstance, models_dir: Path, spec: DatasetSpec
) -> tuple[ModelState, DriftState | None, int | None, PerformanceState | None]:
    """What the retraining policy needs, from the newest materializations' metadata."""
    model, trained_at = latest(instance, asset_key(spec, MODEL_ASSET))
    training, _ = latest(instance, asset_key(spec, TRAINING_SET_ASSET))
    labels, _ = latest(instance, asset_key(spec, LABELS_ASSET))
    drift, _ = latest(instance, asset_key(spec, DRIFT_REPORT_ASSET))
    performance, _ = latest(instance, asset_key(spec, MODEL_PERFORMANCE_ASSET))
    state = ModelState(
        version=model.get("model_version"),
        trained_at=trained_at,
        labelled_at_training=training.get(LABELLED_TOTAL),
        erased_rows=erased_rows(models_dir, model.get("model_version")),
    )
    drift_state = None
    if "model_version" in drift and DRIFTED_SINCE_TRAINING in drift:
        drift_state = DriftState(
            drift["model_version"],
            int(drift[DRIFTED_SINCE_TRAINING]),
            drift.get(IMPORTANT_DRIFTED) or "",
        )
    performance_state = None
    if performance.get(ALERT_VERSION):
        performance_state = PerformanceState(
            performance[ALERT_VERSION],
            bool(performance.get(PERFORMANCE_ALERT)),
            performance.get(ALERT_REASON) or "",
        )
    return state, drift_state, labels.get(LABELLED_TOTAL), performance_state


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    policy = spec.retraining
    targets = [asset_key(spec, TRAINING_SET_ASSET), asset_key(spec, MODEL_ASSET)]

    @dg.sensor(
        name=instigator(spec, "retraining"),
        description=(
            "The retraining policy: requests training_set and model when any one holds: there is no model "
            f"yet and {policy.new_labels} events are labelled; the model is {policy.every_days:g} days old; "
            f"{policy.drifted_days} days after its training data drifted (drift_report); its realised performance "
            f"dropped (model_performance's alert); {policy.new_labels} "
            f"events gained a label since its training set; {policy.erased_since_training} rows of its data "
            f"belonged to people erased since it was trained. Never within {policy.cooldown_hours:g} h of the "
            "last training or request, never while a retraining run is queued or running. The reasons are "
            f"the run's `{REASON_TAG}` tag. Thresholds: `retraining` in the dataset spec."
        ),
        target=targets,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def retraining(context: dg.SensorEvaluationContext, files: LocalFiles) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        last = cursor.get("last_requested_at")
        in_flight = context.instance.get_runs_count(
            dg.RunsFilter(statuses=IN_FLIGHT, tags={RETRAINING_TAG: "true"})
        )
        if in_flight:
            return dg.SensorResult(skip_reason="a retraining run is queued or running")
        model, drift, labelled_now, performance = current_state(
            context.instance, files.folder(*dataset_folder(spec, "models")), spec
        )
        now = datetime.now(UTC)
        reasons = reasons_to_retrain(
            policy,
            now,
            model,
            drift,
            labelled_now,
            datetime.fromisoformat(last) if last else None,
            performance,
        )
        if not reasons:
            trained = f"{model.trained_at:%Y-%m-%d %H:%M} UTC" if model.trained_at else "never"
            drifted = drift.drifted_days_since_training if drift else "no drift report"
            return dg.SensorResult(
                skip_reason=(
                    f"no reason to retrain: model {model.version or '(none)'} trained {trained}; "
                    f"{labelled_now} events labelled now, {model.labelled_at_training} at training; "
                    f"drifted days since training: {drifted}; realised performance: "
                    f"{(performance.reason or 'no alert') if performance else 'no matured day judged'}"
                ),
                cursor=context.cursor,
            )
        context.log.info(f"retraining model {model.version}: {'; '.join(reasons)}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"retrain:{now.isoformat()}",
                    asset_selection=targets,
                    tags=retraining_tags(reasons),
                )
            ],
            cursor=json.dumps({"last_requested_at": now.isoformat()}),
        )

    return dg.Definitions(sensors=[retraining])
