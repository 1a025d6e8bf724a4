"""Models: the training set from matured labels, and the model trained and tested on it."""

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl

from ml_assets.contracts import ModelInputError, check_model_input
from ml_assets.metadata import (
    BLOCKING,
    check_results,
    check_specs,
    markdown_table,
    refuse_if_blocking_failed,
    table_metadata,
    waiting,
)
from ml_assets.names import (
    FEATURES_ASSET,
    LABELLED_TOTAL,
    LABELS_ASSET,
    MODEL_ASSET,
    SCORE_COLUMN,
    TRAINING_SET_ASSET,
    Tables,
    asset_key,
    key_prefix,
)
from ml_assets.policies import WEEKLY_FRESHNESS, whole_table_pool
from ml_assets.queries import (
    drift_status,
    fingerprint,
    keep_per_million,
    labelled_events,
    labelled_in,
    matured_days,
    missing_before_cleaning,
    recent_unlabelled_features,
    training_rows,
)
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec, ThresholdRule, Training
from ml_assets.storage.interfaces import ModelRegistry, Warehouse
from ml_assets.storage.mlflow_mirror import MLflowMirror
from ml_assets.storage.registry import ModelRegistryError, Registry, code_version
from ml_assets.transforms import train as training
from ml_assets.transforms.drift import reference_profiles
from ml_assets.transforms.estimation import calibrate, estimate, fit_calibration
from ml_assets.transforms.fairness import FAIRNESS_CHECK
from ml_assets.transforms.features import feature_columns
from ml_assets.transforms.model_card import model_card_markdown
from ml_assets.transforms.promotion import Decision, decide
from ml_assets.transforms.quality import CheckOutcome, table_checks


class TrainingWindowConfig(dg.Config):
    """Which days to train on; by default the newest days whose labels have all matured."""

    as_of: str | None = None  # YYYY-MM-DD: train as if this were the newest matured day


SPLIT_CHECK = "time_split"


def champion_on(models: Registry, test: pl.DataFrame) -> tuple[str | None, dict | None]:
    """The version in use and its metrics on this test slice; (None, None) without one, or when
    it cannot score today's inputs (then the challenger has nothing to be compared with)."""
    try:
        version = models.current_version()
        champion, _ = models.load_model(version)
        return version, training.evaluate(champion, test)
    except (ModelRegistryError, FileNotFoundError, KeyError, ValueError, pl.exceptions.PolarsError):
        return None, None


def training_warnings(
    outcome: training.TrainingOutcome,
    candidate_version: str,
    version: str,
    decision: Decision,
    champion_version: str | None,
    mirror_warning: str | None,
) -> list[str]:
    """What a person should know of a training: the baseline won, the gate held the version
    back, MLflow was not updated."""
    out = [mirror_warning] if mirror_warning else []
    if not outcome.beats_baseline:
        out.append(
            f"the gradient-boosted candidate {candidate_version} does not beat the baseline on the test slice "
            f"(PR AUC {outcome.candidate_metrics['pr_auc']:.4f} vs {outcome.baseline_metrics['pr_auc']:.4f}): "
            f"the baseline, {version}, is the challenger"
        )
    if not decision.promote:
        out.append(
            f"{version} is not promoted; {champion_version} stays in use: "
            + "; ".join(decision.reasons)
        )
    return out


def train_window_missing(warehouse: Warehouse, t: Tables, info: dict) -> dict[str, float]:
    """The inputs' missing shares over the training window as delivered, before imputation:
    drift compares each day's with them."""
    if not info.get("train_window"):
        return {}
    first, last = (datetime.fromisoformat(d) for d in info["train_window"].split(" .. "))
    return missing_before_cleaning(warehouse, t.cleaning_days, first, last + timedelta(days=1)).get(
        "all", {}
    )


def run_gate(
    models: Registry, outcome: training.TrainingOutcome, warehouse: Warehouse, spec: DatasetSpec
) -> tuple[Decision, str | None, dict, dict[str, dict]]:
    """The champion/challenger gate: the challenger replaces the champion only when, on the same
    test slice, it is as good within tolerances, fair and calibrated. Returns the decision, the
    champion, the record the cards keep and the saved models' calibration maps."""
    champion_version, champion_metrics = champion_on(models, outcome.test)
    decision = decide(
        outcome.challenger_metrics, champion_metrics, outcome.fairness.passed, spec.promotion
    )
    calibrations = score_calibrations(outcome)
    promotion = gate_record(
        decision, champion_version, champion_metrics, models, outcome, calibrations, warehouse, spec
    )
    return decision, champion_version, promotion, calibrations


def score_calibrations(outcome: training.TrainingOutcome) -> dict[str, dict]:
    """The map CBPE applies to each saved model's scores (model_performance's estimates), once
    per training: the candidate's, and the baseline's when the baseline is the challenger."""
    models = {"candidate": outcome.candidate}
    if not outcome.beats_baseline:
        models["baseline"] = outcome.baseline
    return {
        name: fit_calibration(
            outcome.validation["label"].to_numpy(),
            model.score(outcome.validation),
            outcome.test["label"].to_numpy(),
            outcome.test_scores(model),
        )
        for name, model in models.items()
    }


def calibration_of(calibrations: dict[str, dict], outcome, model) -> dict:
    return calibrations["candidate" if model is outcome.candidate else "baseline"]


def gate_record(
    decision: Decision,
    champion_version: str | None,
    champion_metrics: dict | None,
    models: Registry,
    outcome: training.TrainingOutcome,
    calibrations: dict[str, dict],
    warehouse: Warehouse,
    spec: DatasetSpec,
) -> dict:
    """The gate's decision as the cards keep it, with both models' CBPE estimates on the newest
    unlabelled events as one more reason (beside the test-slice comparison, never in its place)."""
    promotion = {
        **decision.as_dict(),
        "champion": champion_version,
        "champion_metrics": champion_metrics,
    }
    if champion_version is not None:
        recent = recent_unlabelled_features(
            warehouse, Tables(spec), spec.id_column, spec.performance.window_days
        )
        compared = estimates_on_recent_days(
            models,
            outcome,
            calibration_of(calibrations, outcome, outcome.challenger),
            champion_version,
            recent,
        )
        if compared:
            promotion["reasons"] = [*promotion["reasons"], compared["text"]]
            promotion["estimated_on_recent_days"] = compared
    return promotion


def estimates_on_recent_days(
    models: Registry,
    outcome: training.TrainingOutcome,
    calibration: dict,
    champion: str,
    recent: pl.DataFrame,
) -> dict | None:
    """Challenger and champion on the newest unlabelled events, by their CBPE estimates (each
    through its own calibration): what the test slice cannot say about the days since."""
    if recent.is_empty():
        return None
    try:
        old, old_card = models.load_model(champion)
        old_scores = old.score(recent)
    except (ModelRegistryError, FileNotFoundError, KeyError, ValueError, pl.exceptions.PolarsError):
        return None
    new = outcome.challenger
    new_scores = new.score(recent)
    ours = estimate(calibrate(calibration, new_scores), new_scores, new.threshold)
    theirs = estimate(
        calibrate(old_card.get("score_calibration"), old_scores),
        old_scores,
        old_card.get("metrics", {}).get("threshold", 0.5),
    )
    if ours["est_roc_auc"] is None or theirs["est_roc_auc"] is None:
        return None
    days = recent["event_time"].dt.date()
    text = (
        f"estimated on the {len(recent)} unlabelled events of {days.min()} .. {days.max()} (CBPE, "
        f"a reason beside the test slice, not a decision): ROC AUC {ours['est_roc_auc']:.3f} for "
        f"the challenger vs {theirs['est_roc_auc']:.3f} for the champion, PR AUC "
        f"{ours['est_pr_auc']:.3f} vs {theirs['est_pr_auc']:.3f}"
    )
    return {
        "text": text,
        "events": len(recent),
        "challenger": {k: ours[k] for k in ("est_roc_auc", "est_pr_auc")},
        "champion": {k: theirs[k] for k in ("est_roc_auc", "est_pr_auc")},
    }


def versions_markdown(models: Registry, newest: int = 20) -> str:
    """The newest versions side by side: kind, when, test metrics, the gate's decision, in use."""
    in_use = models.in_use()
    rows = [
        {
            "version": v["version"],
            "kind": v.get("kind", ""),
            "test": v.get("test_window"),
            "pr_auc": v.get("metrics", {}).get("pr_auc"),
            "roc_auc": v.get("metrics", {}).get("roc_auc"),
            "brier": v.get("metrics", {}).get("brier"),
            "promoted": (v.get("promotion") or {}).get("promote"),
            "in_use": v["version"] == in_use,
        }
        for v in models.list_versions()[-newest:]
    ]
    return markdown_table(pl.DataFrame(rows), max_rows=newest) if rows else "(none)"


def labelled_per_slice(warehouse: Warehouse, labels: str, split) -> dict[str, int]:
    """Labelled events in each slice: any source to train on, ground truth to validate and
    test on."""
    return {
        "train": labelled_in(warehouse, labels, split.train_start, split.train_end),
        "validation": labelled_in(
            warehouse, labels, split.validation_start, split.test_start, "ground_truth"
        ),
        "test": labelled_in(warehouse, labels, split.test_start, split.test_end, "ground_truth"),
    }


def describe_rule(rule: ThresholdRule) -> str:
    if rule.rule == "alert_rate":
        return f"alert on the top {rule.alert_rate:.1%} of validation scores"
    return (
        f"lowest cost on the validation slice, a false positive costing {rule.false_positive_cost:g} "
        f"and a false negative {rule.false_negative_cost:g}"
    )


def training_set_info(
    slices: dict,
    versions: dict,
    label_mix: pl.DataFrame,
    labelled_total: int,
    available: dict[str, int],
    keep: dict[str, int],
) -> pl.DataFrame:
    """The one row of the training set's info table: what the model's card records of its data
    (`sampled`: each sampled slice's events available, and the share kept)."""
    return pl.DataFrame(
        {
            "train_window": [slices["train"]],
            "test_window": [slices["test"]],
            "time_split": [json.dumps(slices)],
            "input_data_versions": [json.dumps(versions)],
            "label_source_counts": [json.dumps(label_mix.rename({"len": "rows"}).to_dicts())],
            "labelled_events_total": [labelled_total],
            "train_rows_available": [available["train"]],
            "sampled": [
                json.dumps(
                    {
                        k: {"available": n, "kept_share": keep[k] / 1_000_000}
                        for k, n in available.items()
                        if keep[k] < 1_000_000
                    }
                )
            ],
        }
    )


def split_outcomes(
    frame: pl.DataFrame, split: training.TimeSplit, id_col: str
) -> list[CheckOutcome]:
    """The training set's table checks and its time-split check."""
    outcomes = table_checks(
        frame,
        {"label": pl.Int8, "split": pl.String, "event_time": pl.Datetime("us")},
        {"label": 0.0, "event_time": 0.0},
        id_col,
        {"label": (0, 1)},
        {"split": ["train", "validation", "test"]},
    )
    leaks = training.split_leaks(frame, split, id_col)
    outcomes.append(
        CheckOutcome(
            SPLIT_CHECK,
            not leaks,
            "; ".join(leaks) if leaks else "slices ordered in time and disjoint",
            {"slices": split.describe()},
        )
    )
    return outcomes


def card_basis(info: dict, outcome: training.TrainingOutcome, cfg: Training, drift: str) -> dict:
    """What every version's card of one training shares: code, data windows and versions, both
    models' test metrics."""
    return {
        "trained_at": datetime.now().isoformat(timespec="seconds"),
        "code_version": code_version(),
        "numeric_features": outcome.candidate.numeric,
        "categorical_features": outcome.candidate.categorical,
        "threshold_rule": cfg.threshold.model_dump(),
        "training_window": cfg.describe_window(),
        "time_split": json.loads(info["time_split"]) if info else None,
        "train_rows": len(outcome.train),
        "validation_rows": len(outcome.validation),
        "test_rows": len(outcome.test),
        # slices sampled by training.max_train_rows / max_evaluation_rows: {slice: available, share}
        "sampled_slices": json.loads(info.get("sampled") or "{}") if info else {},
        "train_window": info.get("train_window"),
        "test_window": info.get("test_window"),
        "input_data_versions": json.loads(info["input_data_versions"]) if info else None,
        "candidate_metrics": outcome.candidate_metrics,
        "baseline_metrics": outcome.baseline_metrics,
        "beats_baseline": outcome.beats_baseline,
        "label_sources": json.loads(info["label_source_counts"]) if info else None,
        # the retraining sensor compares it with the labelled events of today
        "labelled_events_total": info.get("labelled_events_total"),
        "threshold_rule_text": describe_rule(cfg.threshold),
        "drift_at_training": drift,
    }


def save_versions(
    models: Registry,
    outcome: training.TrainingOutcome,
    shared: dict,
    decision: Decision,
    promotion: dict,
    seed: int,
    spec: DatasetSpec,
    calibrations: dict[str, dict],
) -> tuple[str, str]:
    """Save the candidate, and the baseline when it is the challenger, each with its card and
    model_card.md; only the challenger may be put in use, and only when the gate said so.
    Returns (candidate version, challenger version)."""

    def card(model: training.TrainedModel, kind: str, metrics: dict, **extra) -> dict:
        reference = reference_profiles(
            outcome.train,
            outcome.test,
            outcome.test_scores(model),
            model.numeric,
            model.categorical,
            SCORE_COLUMN,
            seed,
        )
        params = model.pipeline.named_steps["model"].get_params()
        return {
            **shared,
            "kind": kind,
            "params": params,
            "metrics": metrics,
            "reference": reference,
            "score_calibration": calibration_of(calibrations, outcome, model),
            **extra,
        }

    beats = outcome.beats_baseline
    candidate_version = models.save_version(
        outcome.candidate,
        card(
            outcome.candidate,
            "gradient boosting",
            outcome.candidate_metrics,
            tuned_params=outcome.params,
            tuning_trials=outcome.trials.to_dicts(),
            **(outcome.explained if beats else {}),
            promotion=promotion
            if beats
            else {"promote": False, "reasons": ["did not beat the baseline"]},
        ),
        promote=beats and decision.promote,
    )
    version = candidate_version
    if not beats:
        version = models.save_version(
            outcome.baseline,
            card(
                outcome.baseline,
                "logistic regression baseline",
                outcome.baseline_metrics,
                **outcome.explained,
                promotion=promotion,
            ),
            promote=decision.promote,
        )
    # every version gets its card; the challenger's is the one shown in the UI
    for saved in {candidate_version, version}:
        markdown = model_card_markdown(models.load_card(saved), spec)
        models.card_markdown_path(saved).write_text(markdown)
    return candidate_version, version


def model_metadata(
    models: Registry,
    outcome: training.TrainingOutcome,
    version: str,
    candidate_version: str,
    decision: Decision,
    shared: dict,
    cfg: Training,
) -> dict:
    """What the UI shows of a training: the version, the gate, metrics, card and explanations."""
    metrics = outcome.challenger_metrics
    headline = {k: metrics[k] for k in training.HEADLINE_METRICS}
    intervals = pl.DataFrame(
        [
            {"metric": k, "value": metrics[k], "low": lo, "high": hi}
            for k, (lo, hi) in metrics["intervals"].items()
        ]
    )
    return {
        "model_version": version,
        "promoted": dg.MetadataValue.bool(decision.promote),
        "in_use": models.in_use() or "none: no version passed the gate yet",
        "promotion_reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons)),
        "versions": dg.MetadataValue.md(versions_markdown(models)),
        "model_kind": outcome.challenger_kind,
        "candidate_version": candidate_version,
        "model_card": dg.MetadataValue.md(models.card_markdown_path(version).read_text()),
        "model_card_file": dg.MetadataValue.path(str(models.card_markdown_path(version))),
        "artifact": dg.MetadataValue.path(str(models.artifact_path(version))),
        **{k: dg.MetadataValue.float(float(np.round(v, 6))) for k, v in headline.items()},
        "threshold": dg.MetadataValue.float(metrics["threshold"]),
        "threshold_rule": describe_rule(cfg.threshold),
        "confidence_intervals_95": dg.MetadataValue.md(markdown_table(intervals, max_rows=20)),
        "tuned_params": dg.MetadataValue.json(outcome.params),
        "tuning_trials": dg.MetadataValue.md(markdown_table(outcome.trials, max_rows=50)),
        "candidate_pr_auc": dg.MetadataValue.float(outcome.candidate_metrics["pr_auc"]),
        "baseline_pr_auc": dg.MetadataValue.float(outcome.baseline_metrics["pr_auc"]),
        "baseline_roc_auc": dg.MetadataValue.float(outcome.baseline_metrics["roc_auc"]),
        "beats_baseline": dg.MetadataValue.bool(outcome.beats_baseline),
        "calibration": dg.MetadataValue.md(
            markdown_table(pl.DataFrame(metrics["calibration"]), max_rows=20)
        ),
        "feature_importance": dg.MetadataValue.md(markdown_table(outcome.importance, max_rows=50)),
        "slices": dg.MetadataValue.md(markdown_table(outcome.slices, max_rows=100)),
        "fairness_gaps": dg.MetadataValue.json(outcome.gaps),
        "train_rows": dg.MetadataValue.int(len(outcome.train)),
        "test_rows": dg.MetadataValue.int(len(outcome.test)),
        "trained_on": dg.MetadataValue.json(
            {
                "train_window": shared["train_window"],
                "test_window": shared["test_window"],
                "data_versions": shared["input_data_versions"],
            }
        ),
    }


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    t = Tables(spec)
    numeric, categorical = feature_columns(spec)
    id_col = spec.id_column
    cfg = spec.training
    fair = spec.fairness

    @dg.asset(
        description=(
            "Labelled feature rows (from `labels`, each with its label source), split by time on the days whose labels "
            f"have all matured, newest last: {cfg.train_days} days to train on (any label source, sampled down to "
            f"training.max_train_rows), {cfg.gap_days} unused days (the labels a live model never had), "
            f"{cfg.validation_days} days to tune the hyperparameters and the alert threshold on, and the last "
            f"{cfg.test_days} days to test on once; validation and test use ground truth only. No random split over "
            "time-ordered events. Not partitioned: it is one window over many days, rebuilt when the model retrains."
        ),
        group_name="models",
        key_prefix=key_prefix(spec),
        kinds={"duckdb", "polars"},
        freshness_policy=WEEKLY_FRESHNESS,
        pool=whole_table_pool(settings),
        deps=[asset_key(spec, FEATURES_ASSET), asset_key(spec, LABELS_ASSET)],
        check_specs=[
            *check_specs(asset_key(spec, TRAINING_SET_ASSET)),
            dg.AssetCheckSpec(
                name=SPLIT_CHECK,
                asset=asset_key(spec, TRAINING_SET_ASSET),
                blocking=True,
                description=(
                    "Every row is inside its slice's days (nothing later in an earlier slice), nothing from the "
                    "gap, no event in two slices, validation and test labelled by ground truth only."
                ),
            ),
        ],
        metadata={"table": t.training_set},
        output_required=False,  # waits, without failing the run, until labels have matured
    )
    def training_set(
        context: dg.AssetExecutionContext,
        config: TrainingWindowConfig,
        warehouse: dg.ResourceParam[Warehouse],
    ) -> Iterator:
        as_of = datetime.fromisoformat(config.as_of) if config.as_of else None
        try:
            split = training.choose_split(matured_days(warehouse, t.labels), cfg, as_of)
        except training.TrainingDataNotReady as err:
            yield from waiting(context, str(err))
            return
        except training.TrainingDataError as err:
            raise dg.Failure(str(err)) from None
        available = labelled_per_slice(warehouse, t.labels, split)
        total_train = available["train"]
        wanted = {"train": cfg.max_train_rows} | dict.fromkeys(
            ("validation", "test"), cfg.max_evaluation_rows
        )
        keep = {k: keep_per_million(wanted[k], n) for k, n in available.items()}
        frame = training_rows(warehouse, t, id_col, split, cfg.seed, keep)
        outcomes = split_outcomes(frame, split, id_col)
        refuse_if_blocking_failed(TRAINING_SET_ASSET, outcomes, {*BLOCKING, SPLIT_CHECK})
        start, end = split.train_start, split.test_end
        versions = {
            "features": fingerprint(warehouse, t.features, id_col, "event_time", start, end),
            "labels": fingerprint(warehouse, t.labels, "event_id", "event_time", start, end),
        }
        slices = split.describe()
        label_mix = frame.group_by("split", "label_source").len().sort("split", "label_source")
        labelled_total = labelled_events(warehouse, t.labels)
        info = training_set_info(slices, versions, label_mix, labelled_total, available, keep)
        warehouse.replace_tables({t.training_set: frame, t.training_set_info: info})
        split_counts = (
            frame.group_by("split")
            .agg(rows=pl.len(), positive_rate=pl.col("label").mean())
            .sort("split")
        )
        yield dg.MaterializeResult(
            metadata=table_metadata(
                frame,
                hide=spec.identifying_columns,
                train_window=slices["train"],
                test_window=slices["test"],
                slices=dg.MetadataValue.json(slices),
                splits=dg.MetadataValue.md(markdown_table(split_counts)),
                label_sources=dg.MetadataValue.md(markdown_table(label_mix)),
                label_source_counts=dg.MetadataValue.json(
                    label_mix.rename({"len": "rows"}).to_dicts()
                ),
                train_rows_available=dg.MetadataValue.int(int(total_train)),
                input_data_versions=dg.MetadataValue.json(versions),
                **{LABELLED_TOTAL: dg.MetadataValue.int(labelled_total)},
            ),
            data_version=dg.DataVersion(f"{versions['features']}|{versions['labels']}|{cfg.seed}"),
            check_results=check_results(outcomes),
        )

    @dg.asset(
        description=(
            "The model: a scikit-learn pipeline (ordinal-encoded categoricals into a histogram gradient-boosted "
            f"classifier) fitted on the training slice of training_set, its hyperparameters the best of up to "
            f"{cfg.tuning_candidates} candidates by validation PR AUC (search stops after {cfg.tuning_seconds:g} s), its "
            "alert threshold chosen on the validation slice by `training.threshold` in the spec, tested once on the test "
            "slice (ROC AUC, PR AUC, Brier, log loss, precision and recall at the threshold, with bootstrap 95% "
            "intervals; calibration table; metrics per group and fairness gaps; permutation importance). A "
            "logistic-regression baseline is trained alongside: when the candidate does not beat it on test PR AUC "
            "the baseline is the challenger. Every version is saved in data/models (skops artifact, card with code "
            "and data versions, model_card.md); the challenger is put in use only through the champion/challenger "
            f"gate: PR AUC and ROC AUC within {spec.promotion.pr_auc_tolerance:g} / {spec.promotion.roc_auc_tolerance:g} "
            f"of the champion's on the same test slice, calibration error at most {spec.promotion.max_calibration_error:g}, "
            "the fairness check passed (`promotion` in the spec). `python -m ml_assets.cli.models rollback VERSION` puts "
            "an earlier version back. Not partitioned: a model spans many days. "
            f"Retrained by the `retraining` sensor when any one holds: the model is {spec.retraining.every_days:g} days "
            f"old; {spec.retraining.drifted_days} days after its training data drifted; {spec.retraining.new_labels} "
            f"events gained a label since its training set; at most once per {spec.retraining.cooldown_hours:g} h "
            "(thresholds: `retraining` in the spec)."
        ),
        group_name="models",
        key_prefix=key_prefix(spec),
        kinds={"scikitlearn"},
        freshness_policy=WEEKLY_FRESHNESS,
        pool=whole_table_pool(settings),
        deps=[training_set],
        check_specs=[
            dg.AssetCheckSpec(
                name=FAIRNESS_CHECK,
                asset=asset_key(spec, MODEL_ASSET),
                description=(
                    f"On the test slice, for each sensitive column ({', '.join(spec.sensitive_columns) or 'none declared'}), "
                    f"the demographic-parity difference is at most {fair.max_demographic_parity_difference} and the "
                    f"equalized-odds difference at most {fair.max_equalized_odds_difference} between groups of at least "
                    f"{fair.min_group_events} events (`fairness` in the spec)."
                ),
            )
        ],
        output_required=False,  # waits, without failing the run, for a training set
    )
    def model(
        context: dg.AssetExecutionContext,
        warehouse: dg.ResourceParam[Warehouse],
        registry: dg.ResourceParam[ModelRegistry],
        mlflow: MLflowMirror,
    ) -> Iterator:
        frame = warehouse.read_if_exists(t.training_set, f"SELECT * FROM {t.training_set}")
        if frame is None:
            yield from waiting(
                context, "no training set yet: training_set waits for days with matured labels"
            )
            return
        info_rows = warehouse.read_if_exists(
            t.training_set_info, f"SELECT * FROM {t.training_set_info}"
        )
        info = info_rows.row(0, named=True) if info_rows is not None and len(info_rows) else {}
        try:
            contract = check_model_input(spec, frame, labelled=True, what=t.training_set)
            outcome = training.train_challenger(
                frame, numeric, categorical, cfg, fair, spec.sensitive_columns
            )
        except (training.TrainingDataError, ModelInputError) as err:
            raise dg.Failure(str(err)) from None
        shared = card_basis(info, outcome, cfg, drift_status(warehouse, t.drift_days))
        shared["missing_before_imputation"] = train_window_missing(warehouse, t, info)
        models = registry.for_dataset(spec)
        decision, champion_version, promotion, calibrations = run_gate(
            models, outcome, warehouse, spec
        )
        candidate_version, version = save_versions(
            models, outcome, shared, decision, promotion, cfg.seed, spec, calibrations
        )
        mirrored = mlflow.log_versions(
            spec,
            models,
            sorted({candidate_version, version}),
            version if decision.promote else None,
        )
        for warning in training_warnings(
            outcome, candidate_version, version, decision, champion_version, mirrored.warning
        ):
            context.log.warning(warning)
        yield dg.MaterializeResult(
            metadata=model_metadata(
                models, outcome, version, candidate_version, decision, shared, cfg
            )
            | contract
            | mirrored.metadata(),
            data_version=dg.DataVersion(version),
            check_results=[
                dg.AssetCheckResult(
                    check_name=FAIRNESS_CHECK,
                    passed=outcome.fairness.passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=outcome.fairness.description,
                    metadata=outcome.fairness.metadata,
                )
            ],
        )

    return dg.Definitions(assets=[training_set, model])
