"""Models: the retraining policy, as a sensor that requests training_set and model."""

import json
from datetime import UTC, datetime

import dagster as dg

from ml_assets.names import (
    MODEL_ASSET,
    TRAINING_SET_ASSET,
    Tables,
    asset_key,
    instigator,
)
from ml_assets.policies import model_search_executor
from ml_assets.queries import (
    drifted_days_since,
    labelled_events,
    matured_days,
    newest_drift_day,
    newest_estimated_day,
    newest_matured_day,
)
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.storage.base import WarehouseBusy
from ml_assets.storage.interfaces import ModelRegistry, Warehouse, WarehouseReader
from ml_assets.storage.registry import Registry
from ml_assets.transforms.model_card import card_data_end
from ml_assets.transforms.retraining import (
    DriftState,
    FixedWindow,
    ModelState,
    PerformanceState,
    reasons_to_retrain,
)
from ml_assets.transforms.train import TrainingDataError, choose_split

RETRAINING_TAG = "ml_assets/retraining"
# which dataset a retraining run is for: one dataset's run does not hold up another's sensor
DATASET_TAG = "ml_assets/dataset"
REASON_TAG = "ml_assets/retrain_reason"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def retraining_tags(reasons: list[str]) -> dict[str, str]:
    """The tags of a retraining run: marked as one, with its reasons (within a tag's length)."""
    return {RETRAINING_TAG: "true", REASON_TAG: "; ".join(reasons)[:4000]}


def erased_rows(card: dict) -> int:
    """Rows of erased people that the version's windows held (its card keeps each erasure)."""
    return sum(e.get("rows_in_windows", 0) for e in card.get("erasures", []))


def current_state(
    warehouse: Warehouse | WarehouseReader, models: Registry, spec: DatasetSpec
) -> tuple[ModelState, DriftState | None, int | None, PerformanceState | None]:
    """What the retraining policy needs, from the registry and the tables each stage writes in
    its own transaction (never from another asset's metadata): the newest trained version and
    what its training set held, labelled events now, the drift report's newest day, the newest
    day whose realised performance was judged."""
    t = Tables(spec)
    versions = models.list_versions()
    newest = versions[-1] if versions else {}
    version = newest.get("version")
    labelled_at_training = newest.get("labelled_events_total")
    if version and labelled_at_training is None:  # a card from before the count was on it
        info = warehouse.read_if_exists(
            t.training_set_info, f"SELECT labelled_events_total FROM {t.training_set_info}"
        )
        labelled_at_training = int(info.item()) if info is not None and len(info) else None
    state = ModelState(
        version=version,
        # a version is named by its UTC training time (the card's trained_at is local time)
        trained_at=datetime.strptime(version[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if version
        else None,
        labelled_at_training=labelled_at_training,
        erased_rows=erased_rows(newest),
        window=newest.get("training_window"),
    )
    drift_state = None
    drift = newest_drift_day(warehouse, t.drift_days)
    if drift is not None:
        version = drift["model_version"]
        card = models.card_or_empty(version)
        since = drifted_days_since(warehouse, t.drift_days, version, card_data_end(card))
        drift_state = DriftState(version, since, drift["important_drifted"] or "")
    performance_state = None
    judged = newest_matured_day(warehouse, t.performance_days)
    if judged is not None and judged["model_version"]:
        performance_state = PerformanceState(
            judged["model_version"],
            bool(judged["alert"]),
            f"{judged['day']:%Y-%m-%d}: {judged['why']}",
        )
    labelled_now = labelled_events(warehouse, t.labels) if warehouse.exists(t.labels) else None
    return state, drift_state, labelled_now, performance_state


def estimated_state(
    warehouse: Warehouse | WarehouseReader, spec: DatasetSpec
) -> PerformanceState | None:
    """The newest CBPE estimate of model_performance, as the retraining policy reads it."""
    row = newest_estimated_day(warehouse, Tables(spec).performance_days)
    if row is None or not row["model_version"]:
        return None
    return PerformanceState(
        row["model_version"],
        bool(row["estimated_alert"]),
        f"{row['day']:%Y-%m-%d}: {row['estimated_why']}",
    )


def fixed_window(warehouse: Warehouse | WarehouseReader, spec: DatasetSpec) -> FixedWindow | None:
    """With training.window: fixed, the period and whether a training on it can succeed now."""
    cfg = spec.training
    if cfg.window != "fixed":
        return None
    t = Tables(spec)
    ready = False
    if warehouse.exists(t.labels):
        try:
            choose_split(matured_days(warehouse, t.labels), cfg)
            ready = True
        except TrainingDataError:
            pass
    return FixedWindow(cfg.describe_window(), ready)


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    policy = spec.retraining
    targets = [asset_key(spec, TRAINING_SET_ASSET), asset_key(spec, MODEL_ASSET)]
    search = model_search_executor(settings)
    jobs = []
    if search is not None:
        # the requests of this sensor run as this job, with its own executor (a pod per step)
        jobs = [
            dg.define_asset_job(
                instigator(spec, "model_search"),
                selection=targets,
                executor_def=search,
                description="training_set, then model: each step in a Kubernetes pod of its own.",
            )
        ]

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
        target=jobs[0] if jobs else targets,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def retraining(
        context: dg.SensorEvaluationContext,
        registry: dg.ResourceParam[ModelRegistry],
        warehouse: dg.ResourceParam[Warehouse],
    ) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        last = cursor.get("last_requested_at")
        in_flight = context.instance.get_runs_count(
            dg.RunsFilter(statuses=IN_FLIGHT, tags={RETRAINING_TAG: "true", DATASET_TAG: spec.name})
        )
        if in_flight:
            return dg.SensorResult(skip_reason="a retraining run is queued or running")
        try:
            with warehouse.read_only_now() as tables:
                model, drift, labelled_now, performance = current_state(
                    tables, registry.for_dataset(spec), spec
                )
                fixed = fixed_window(tables, spec)
                estimated = estimated_state(tables, spec)
        except WarehouseBusy as err:
            return dg.SensorResult(
                skip_reason=f"a run is writing the warehouse ({err}): deciding on the next tick",
                cursor=context.cursor,
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
            fixed,
            estimated,
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
                    + (
                        f"; training.window is {fixed.period}: only a changed period or an erasure "
                        "retrains"
                        + ("" if fixed.ready else " (its labels have not all matured yet)")
                        if fixed
                        else ""
                    )
                ),
                cursor=context.cursor,
            )
        context.log.info(f"retraining model {model.version}: {'; '.join(reasons)}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"retrain:{now.isoformat()}",
                    asset_selection=targets,
                    tags=retraining_tags(reasons) | {DATASET_TAG: spec.name},
                )
            ],
            cursor=json.dumps({"last_requested_at": now.isoformat()}),
        )

    return dg.Definitions(sensors=[retraining], jobs=jobs)
