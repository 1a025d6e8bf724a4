"""Models: the training set from matured labels, and the model trained and tested on it."""

from datetime import datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from ml_assets.metadata import (
    BLOCKING,
    check_results,
    check_specs,
    markdown_table,
    refuse_if_blocking_failed,
    table_metadata,
)
from ml_assets.names import LABELLED_TOTAL, SCORE_COLUMN, Tables
from ml_assets.policies import WAREHOUSE_POOL, WEEKLY_FRESHNESS
from ml_assets.queries import labelled_events
from ml_assets.registry import (
    ARTIFACT,
    ModelRegistryError,
    code_version,
    current_version,
    list_versions,
    load_card,
    load_model,
    save_version,
)
from ml_assets.resources import LocalFiles, Warehouse
from ml_assets.spec import DatasetSpec, Fairness, ThresholdRule, load_spec
from ml_assets.transforms import train as training
from ml_assets.transforms.drift import reference_profiles
from ml_assets.transforms.fairness import (
    SLICE_SCHEMA,
    fairness_gaps,
    gap_intervals,
    slice_metrics,
)
from ml_assets.transforms.features import feature_columns
from ml_assets.transforms.model_card import model_card_markdown
from ml_assets.transforms.promotion import decide
from ml_assets.transforms.quality import CheckOutcome, table_checks


class TrainingWindowConfig(dg.Config):
    """Which days to train on; by default the newest days whose labels have all matured."""

    as_of: str | None = None  # YYYY-MM-DD: train as if this were the newest matured day


def matured_days(warehouse: Warehouse, labels_table: str) -> pl.DataFrame:
    return warehouse.read(
        f"""SELECT CAST(date_trunc('day', event_time) AS TIMESTAMP) AS day, count(*) AS events,
                   count(*) FILTER (WHERE label_status = 'unlabelled') AS unlabelled
            FROM {labels_table} GROUP BY 1 ORDER BY 1"""
    )


FAIRNESS_CHECK = "fairness"
SPLIT_CHECK = "time_split"
# permutation importance shuffles each input a few times over at most this many test events
IMPORTANCE_ROWS = 20_000


SHORT = {"demographic_parity_difference": "parity", "equalized_odds_difference": "odds"}


def judge_fairness(gaps: dict[str, dict], fair: Fairness) -> CheckOutcome:
    """Fail when a sensitive column's gap is over its limit beyond sampling noise.

    Each gap may carry a 95% bootstrap interval (`intervals`); a gap fails when even the
    interval's low end is over the limit. A point estimate over the limit whose interval reaches
    below it is named in the description but does not fail (a few dozen positives per group
    make gaps of 0.2 by chance). Without an interval the point estimate decides.
    """
    limits = {
        "demographic_parity_difference": fair.max_demographic_parity_difference,
        "equalized_odds_difference": fair.max_equalized_odds_difference,
    }
    over, noisy, described = [], [], []
    for col, g in gaps.items():
        parts = []
        for name, limit in limits.items():
            value = g[name]
            if value is None:
                parts.append(f"{SHORT[name]} n/a")
                continue
            interval = (g.get("intervals") or {}).get(name)
            low = interval[0] if interval else value
            shown = f"{value:.3f}" + (
                f" (95% {interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
            )
            parts.append(f"{SHORT[name]} {shown}")
            if low > limit:
                over.append(f"{col}: {name.replace('_', ' ')} {shown} > {limit}")
            elif value > limit:
                noisy.append(f"{col}: {name.replace('_', ' ')} {shown}")
        described.append(f"{col}: " + ", ".join(parts) + f" over {g['groups_compared']} groups")
    if over:
        description = (
            "over the limits: "
            + "; ".join(over)
            + ". Fix: compare the groups in the `slices` metadata and the training data they "
            "come from; the limits are `fairness` in the spec"
        )
    else:
        description = (
            f"within the limits ({'; '.join(described) or 'no sensitive column declared'})"
        )
        if noisy:
            description += ". Over the limit as measured but within sampling noise: " + "; ".join(
                noisy
            )
    return CheckOutcome(FAIRNESS_CHECK, not over, description, {"gaps": gaps})


def champion_on(models: Path, test: pl.DataFrame) -> tuple[str | None, dict | None]:
    """The version in use and its metrics on this test slice; (None, None) without one, or when
    it cannot score today's inputs (then the challenger has nothing to be compared with)."""
    try:
        version = current_version(models)
        champion, _ = load_model(models, version)
        return version, training.evaluate(champion, test)
    except (ModelRegistryError, FileNotFoundError, KeyError, ValueError, pl.exceptions.PolarsError):
        return None, None


def versions_markdown(models: Path, newest: int = 20) -> str:
    """The newest versions side by side: kind, when, test metrics, the gate's decision, in use."""
    in_use = current_version(models) if (models / "current.json").exists() else None
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
        for v in list_versions(models)[-newest:]
    ]
    return markdown_table(pl.DataFrame(rows), max_rows=newest) if rows else "(none)"


def drift_status(warehouse: Warehouse, drift_days_table: str) -> str:
    """The drift verdicts of the newest 7 reported days when the model was trained."""
    days = warehouse.read_if_exists(
        drift_days_table,
        f"SELECT day, dataset_drifted FROM {drift_days_table} ORDER BY day DESC LIMIT 7",
    )
    if days is None or days.is_empty():
        return "no drift report yet"
    drifted = days.filter(pl.col("dataset_drifted"))["day"].sort()
    return (
        f"{len(drifted)} of the newest {len(days)} reported days drifted"
        + (f" ({', '.join(f'{d:%Y-%m-%d}' for d in drifted)})" if len(drifted) else "")
        + f", as of {days['day'].max():%Y-%m-%d} (against the previous model's reference)"
    )


def describe_rule(rule: ThresholdRule) -> str:
    if rule.rule == "alert_rate":
        return f"alert on the top {rule.alert_rate:.1%} of validation scores"
    return (
        f"lowest cost on the validation slice, a false positive costing {rule.false_positive_cost:g} "
        f"and a false negative {rule.false_negative_cost:g}"
    )


def fingerprint(warehouse: Warehouse, table: str, id_col: str, time_col: str, start, end) -> str:
    """A content version of the rows in a window: row count and an order-free hash of all values."""
    n, h = warehouse.read(
        f"SELECT count(*) AS n, coalesce(bit_xor(hash(t)), 0) AS h "
        f"FROM {table} t WHERE {time_col} >= ? AND {time_col} < ?",
        [start, end],
    ).row(0)
    return f"{n}-{int(h):x}"


def build(spec: DatasetSpec) -> dg.Definitions:
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
        kinds={"duckdb", "polars"},
        freshness_policy=WEEKLY_FRESHNESS,
        pool=WAREHOUSE_POOL,
        deps=["features", "labels"],
        check_specs=[
            *check_specs("training_set"),
            dg.AssetCheckSpec(
                name=SPLIT_CHECK,
                asset="training_set",
                blocking=True,
                description=(
                    "Every row is inside its slice's days (nothing later in an earlier slice), nothing from the "
                    "gap, no event in two slices, validation and test labelled by ground truth only."
                ),
            ),
        ],
        metadata={"table": t.training_set},
    )
    def training_set(
        context: dg.AssetExecutionContext, config: TrainingWindowConfig, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        as_of = datetime.fromisoformat(config.as_of) if config.as_of else None
        try:
            split = training.choose_split(matured_days(warehouse, t.labels), cfg, as_of)
        except training.TrainingDataError as err:
            raise dg.Failure(str(err)) from None
        total_train = warehouse.read(
            f"SELECT count(*) AS n FROM {t.labels} WHERE event_time >= ? AND event_time < ? AND label IS NOT NULL",
            [split.train_start, split.train_end],
        ).item()
        keep_per_million = min(1_000_000, int(1_000_000 * cfg.max_train_rows / max(1, total_train)))
        frame = warehouse.read(
            f"""SELECT f.*, l.label, l.label_source,
                       CASE WHEN f.event_time < $train_end THEN 'train'
                            WHEN f.event_time < $test_start THEN 'validation'
                            ELSE 'test' END AS split
                FROM {t.features} f JOIN {t.labels} l ON CAST(f.{id_col} AS VARCHAR) = l.event_id
                WHERE l.label IS NOT NULL AND f.event_time >= $train_start AND f.event_time < $test_end
                  -- the gap between training and validation is not used
                  AND (f.event_time < $train_end OR f.event_time >= $validation_start)
                  -- validated and tested on ground truth only; it may train on any source
                  AND (f.event_time < $train_end OR l.label_source = 'ground_truth')
                  AND (f.event_time >= $train_end OR hash(f.{id_col}, $seed) % 1000000 < $keep)
                ORDER BY f.event_time, f.{id_col}""",
            {
                "train_start": split.train_start,
                "train_end": split.train_end,
                "validation_start": split.validation_start,
                "test_start": split.test_start,
                "test_end": split.test_end,
                "seed": cfg.seed,
                "keep": keep_per_million,
            },
        )
        train_start, test_end = split.train_start, split.test_end
        slices = split.describe()
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
                {"slices": slices},
            )
        )
        refuse_if_blocking_failed("training_set", outcomes, {*BLOCKING, SPLIT_CHECK})
        warehouse.replace_table(t.training_set, frame)
        versions = {
            "features": fingerprint(
                warehouse, t.features, id_col, "event_time", train_start, test_end
            ),
            "labels": fingerprint(
                warehouse, t.labels, "event_id", "event_time", train_start, test_end
            ),
        }
        label_mix = frame.group_by("split", "label_source").len().sort("split", "label_source")
        split_counts = (
            frame.group_by("split")
            .agg(rows=pl.len(), positive_rate=pl.col("label").mean())
            .sort("split")
        )
        return dg.MaterializeResult(
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
                **{LABELLED_TOTAL: dg.MetadataValue.int(labelled_events(warehouse, t.labels))},
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
            "the fairness check passed (`promotion` in the spec). `python -m ml_assets.registry rollback VERSION` puts "
            "an earlier version back. Not partitioned: a model spans many days. "
            f"Retrained by the `retraining` sensor when any one holds: the model is {spec.retraining.every_days:g} days "
            f"old; {spec.retraining.drifted_days} days after its training data drifted; {spec.retraining.new_labels} "
            f"events gained a label since its training set; at most once per {spec.retraining.cooldown_hours:g} h "
            "(thresholds: `retraining` in the spec)."
        ),
        group_name="models",
        kinds={"scikitlearn"},
        freshness_policy=WEEKLY_FRESHNESS,
        pool=WAREHOUSE_POOL,
        deps=[training_set],
        check_specs=[
            dg.AssetCheckSpec(
                name=FAIRNESS_CHECK,
                asset="model",
                description=(
                    f"On the test slice, for each sensitive column ({', '.join(spec.sensitive_columns) or 'none declared'}), "
                    f"the demographic-parity difference is at most {fair.max_demographic_parity_difference} and the "
                    f"equalized-odds difference at most {fair.max_equalized_odds_difference} between groups of at least "
                    f"{fair.min_group_events} events (`fairness` in the spec)."
                ),
            )
        ],
    )
    def model(
        context: dg.AssetExecutionContext, warehouse: Warehouse, files: LocalFiles
    ) -> dg.MaterializeResult:
        frame = warehouse.read(f"SELECT * FROM {t.training_set}")
        train, validation, test = (
            frame.filter(pl.col("split") == name) for name in ("train", "validation", "test")
        )
        if not len(train) or not len(validation) or not len(test):
            raise dg.Failure(
                f"training_set has {len(train)} train, {len(validation)} validation and {len(test)} test rows; "
                "all three are needed. Fix: re-materialize training_set"
            )
        try:
            params, trials = training.tune(
                train,
                validation,
                numeric,
                categorical,
                cfg.seed,
                cfg.tuning_candidates,
                cfg.tuning_seconds,
            )
            candidate = training.fit(train, numeric, categorical, cfg.seed, params=params)
            baseline = training.fit_baseline(train, numeric, categorical, cfg.seed)
        except training.TrainingDataError as err:
            raise dg.Failure(str(err)) from None
        y_validation = validation["label"].to_numpy()
        trained = training.with_threshold(
            candidate,
            training.choose_threshold(y_validation, candidate.score(validation), cfg.threshold),
        )
        baseline = training.with_threshold(
            baseline,
            training.choose_threshold(y_validation, baseline.score(validation), cfg.threshold),
        )
        # each model scores the test slice once: metrics, slices and fairness all read these
        test_scores = {"candidate": trained.score(test), "baseline": baseline.score(test)}
        metrics = training.evaluate(
            trained, test, cfg.bootstrap_samples, cfg.seed, test_scores["candidate"]
        )
        baseline_metrics = training.evaluate(
            baseline, test, cfg.bootstrap_samples, cfg.seed, test_scores["baseline"]
        )
        beats_baseline = metrics["pr_auc"] > baseline_metrics["pr_auc"]
        # the challenger: the gradient-boosted candidate when it beats the baseline, else the
        # baseline (never worse than the simple model); its card explains it: importance,
        # metrics per group, fairness
        challenger = trained if beats_baseline else baseline
        scores = test_scores["candidate" if beats_baseline else "baseline"]
        y_test = test["label"].to_numpy()
        importance = training.feature_importance(challenger, test, IMPORTANCE_ROWS, cfg.seed)
        slices = pl.concat(
            [
                slice_metrics(y_test, scores, challenger.threshold, test[col])
                for col in [*spec.sensitive_columns, *fair.segments]
            ]
            or [pl.DataFrame(schema=SLICE_SCHEMA)]
        )
        gaps = {
            col: {
                **fairness_gaps(slices.filter(pl.col("column") == col), fair.min_group_events),
                "intervals": gap_intervals(
                    y_test,
                    scores,
                    challenger.threshold,
                    test[col],
                    fair.min_group_events,
                    cfg.bootstrap_samples,
                    cfg.seed,
                ),
            }
            for col in spec.sensitive_columns
        }
        fairness_outcome = judge_fairness(gaps, fair)
        explained = {
            "feature_importance": importance.to_dicts(),
            "slices": slices.to_dicts(),
            "fairness": {"gaps": gaps, "passed": fairness_outcome.passed},
        }
        upstream = context.instance.get_latest_materialization_event(dg.AssetKey("training_set"))
        training_meta = upstream.asset_materialization.metadata if upstream else {}
        shared = {
            "trained_at": datetime.now().isoformat(timespec="seconds"),
            "code_version": code_version(),
            "numeric_features": numeric,
            "categorical_features": categorical,
            "threshold_rule": cfg.threshold.model_dump(),
            "time_split": getattr(training_meta.get("slices"), "data", None),
            "train_rows": len(train),
            "validation_rows": len(validation),
            "test_rows": len(test),
            "train_window": getattr(training_meta.get("train_window"), "value", None),
            "test_window": getattr(training_meta.get("test_window"), "value", None),
            "input_data_versions": getattr(training_meta.get("input_data_versions"), "data", None),
            "candidate_metrics": metrics,
            "baseline_metrics": baseline_metrics,
            "beats_baseline": beats_baseline,
            "label_sources": getattr(training_meta.get("label_source_counts"), "data", None),
            "threshold_rule_text": describe_rule(cfg.threshold),
            "drift_at_training": drift_status(warehouse, t.drift_days),
        }
        models = files.folder("models")
        # the challenger replaces the champion only through the gate: as good on this test slice
        # within tolerances, fair, calibrated
        challenger_metrics = metrics if beats_baseline else baseline_metrics
        champion_version, champion_metrics = champion_on(models, test)
        decision = decide(
            challenger_metrics, champion_metrics, fairness_outcome.passed, spec.promotion
        )
        promotion = {
            **decision.as_dict(),
            "champion": champion_version,
            "champion_metrics": champion_metrics,
        }

        def version_card(model: training.TrainedModel, kind: str, metrics: dict, **extra) -> dict:
            return {
                **shared,
                "kind": kind,
                "params": model.pipeline.named_steps["model"].get_params(),
                "metrics": metrics,
                "reference": reference_profiles(
                    train,
                    test,
                    test_scores["candidate" if model is trained else "baseline"],
                    numeric,
                    categorical,
                    SCORE_COLUMN,
                    cfg.seed,
                ),
                **extra,
            }

        candidate_version = save_version(
            models,
            trained,
            version_card(
                trained,
                "gradient boosting",
                metrics,
                tuned_params=params,
                tuning_trials=trials.to_dicts(),
                **(explained if beats_baseline else {}),
                promotion=promotion
                if beats_baseline
                else {"promote": False, "reasons": ["did not beat the baseline"]},
            ),
            promote=beats_baseline and decision.promote,
        )
        version, used_metrics = candidate_version, metrics
        if not beats_baseline:
            version = save_version(
                models,
                baseline,
                version_card(
                    baseline,
                    "logistic regression baseline",
                    baseline_metrics,
                    **explained,
                    promotion=promotion,
                ),
                promote=decision.promote,
            )
            used_metrics = baseline_metrics
            context.log.warning(
                f"the gradient-boosted candidate {candidate_version} does not beat the baseline on the test slice "
                f"(PR AUC {metrics['pr_auc']:.4f} vs {baseline_metrics['pr_auc']:.4f}): the baseline, {version}, "
                "is the challenger"
            )
        if not decision.promote:
            context.log.warning(
                f"{version} is not promoted; {champion_version} stays in use: "
                + "; ".join(decision.reasons)
            )
        card = {**shared, "metrics": used_metrics}
        # every version gets its card; the challenger's is the one shown in the UI
        for saved in {candidate_version, version}:
            markdown = model_card_markdown(load_card(models, saved), spec.name, spec.description)
            (models / saved / "model_card.md").write_text(markdown)
        model_card = (models / version / "model_card.md").read_text()
        metrics = used_metrics
        calibration = pl.DataFrame(metrics["calibration"])
        headline = {k: metrics[k] for k in training.HEADLINE_METRICS}
        return dg.MaterializeResult(
            metadata={
                "model_version": version,
                "promoted": dg.MetadataValue.bool(decision.promote),
                "in_use": current_version(models)
                if (models / "current.json").exists()
                else "none: no version passed the gate yet",
                "promotion_reasons": dg.MetadataValue.md(
                    "\n".join(f"- {r}" for r in decision.reasons)
                ),
                "versions": dg.MetadataValue.md(versions_markdown(models)),
                "model_kind": "gradient boosting"
                if beats_baseline
                else "logistic regression baseline",
                "candidate_version": candidate_version,
                "model_card": dg.MetadataValue.md(model_card),
                "model_card_file": dg.MetadataValue.path(str(models / version / "model_card.md")),
                "artifact": dg.MetadataValue.path(str(models / version / ARTIFACT)),
                **{k: dg.MetadataValue.float(float(np.round(v, 6))) for k, v in headline.items()},
                "threshold": dg.MetadataValue.float(metrics["threshold"]),
                "threshold_rule": describe_rule(cfg.threshold),
                "confidence_intervals_95": dg.MetadataValue.md(
                    markdown_table(
                        pl.DataFrame(
                            [
                                {"metric": k, "value": metrics[k], "low": lo, "high": hi}
                                for k, (lo, hi) in metrics["intervals"].items()
                            ]
                        ),
                        max_rows=20,
                    )
                ),
                "tuned_params": dg.MetadataValue.json(params),
                "tuning_trials": dg.MetadataValue.md(markdown_table(trials, max_rows=50)),
                "candidate_pr_auc": dg.MetadataValue.float(card["candidate_metrics"]["pr_auc"]),
                "baseline_pr_auc": dg.MetadataValue.float(baseline_metrics["pr_auc"]),
                "baseline_roc_auc": dg.MetadataValue.float(baseline_metrics["roc_auc"]),
                "beats_baseline": dg.MetadataValue.bool(beats_baseline),
                "calibration": dg.MetadataValue.md(markdown_table(calibration, max_rows=20)),
                "feature_importance": dg.MetadataValue.md(markdown_table(importance, max_rows=50)),
                "slices": dg.MetadataValue.md(markdown_table(slices, max_rows=100)),
                "fairness_gaps": dg.MetadataValue.json(gaps),
                "train_rows": dg.MetadataValue.int(len(train)),
                "test_rows": dg.MetadataValue.int(len(test)),
                "trained_on": dg.MetadataValue.json(
                    {
                        "train_window": card["train_window"],
                        "test_window": card["test_window"],
                        "data_versions": card["input_data_versions"],
                    }
                ),
            },
            data_version=dg.DataVersion(version),
            check_results=[
                dg.AssetCheckResult(
                    check_name=FAIRNESS_CHECK,
                    passed=fairness_outcome.passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=fairness_outcome.description,
                    metadata=fairness_outcome.metadata,
                )
            ],
        )

    return dg.Definitions(assets=[training_set, model])


@dg.definitions
def defs() -> dg.Definitions:
    return build(load_spec())
