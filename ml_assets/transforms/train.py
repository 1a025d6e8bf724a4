"""Training and evaluating the model on time-ordered data. No Dagster here.

The split is by time only: train on earlier days, test on the later days; never a random split
over time-ordered events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

import numpy as np
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import ParameterSampler
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from ml_assets.spec import Fairness, ThresholdRule, Training
from ml_assets.transforms.fairness import fairness_report
from ml_assets.transforms.quality import CheckOutcome


class TrainingDataError(ValueError):
    """Not enough (or the wrong) labelled data to train or test on; the message says the fix."""


class TrainingDataNotReady(TrainingDataError):
    """The labelled days a split needs have not all matured or landed yet: a state a new
    deployment passes through, which time or more days resolve (the asset waits)."""


@dataclass(frozen=True)
class TimeSplit:
    """Day boundaries of the slices, each [start, end): train, (gap), validation, test."""

    train_start: datetime
    train_end: datetime
    validation_start: datetime
    test_start: datetime
    test_end: datetime

    def describe(self) -> dict[str, str]:
        def span(a: datetime, b: datetime) -> str:
            return f"{a:%Y-%m-%d} .. {b - timedelta(days=1):%Y-%m-%d}" if b > a else "none"

        return {
            "train": span(self.train_start, self.train_end),
            "gap": span(self.train_end, self.validation_start),
            "validation": span(self.validation_start, self.test_start),
            "test": span(self.test_start, self.test_end),
        }


def choose_split(days: pl.DataFrame, cfg: Training, as_of: datetime | None = None) -> TimeSplit:
    """Slices on the days whose labels have all matured, the test slice the newest of them; with
    `training.window: fixed`, the slices of the spec's period (its labels must all have matured).

    days: day, events, unlabelled (one row per day of the labels table). `as_of` trains as if
    that were the newest matured day (rolling window only). Slices shrink at the far end when
    history is short (the training slice first); each keeps at least one day, or the split is
    refused.
    """
    one = timedelta(days=1)
    if cfg.window == "fixed":
        return _fixed_split(days, cfg, as_of)
    full = days.filter((pl.col("unlabelled") == 0) & (pl.col("events") > 0))
    if as_of is not None:
        full = full.filter(pl.col("day") <= as_of)
    if full.is_empty():
        raise TrainingDataNotReady(
            "no day has fully matured labels yet. Fix: materialize more days of labels, or wait "
            "for the label maturity window to pass"
        )
    first, last = days["day"].min(), full["day"].max()
    test_end = last + one
    train_end = test_end - one * (cfg.test_days + cfg.validation_days + cfg.gap_days)
    train_start = max(train_end - one * cfg.train_days, first)
    return _slices(train_start, test_end, cfg, f"up to the newest matured day {last:%Y-%m-%d}")


def _fixed_split(days: pl.DataFrame, cfg: Training, as_of: datetime | None) -> TimeSplit:
    window = f"the fixed training window {cfg.describe_window().removeprefix('fixed ')}"
    if as_of is not None:
        raise TrainingDataError(
            f"as_of is for the rolling window; the spec sets {window}. Fix: drop as_of from the "
            "run config, or change training.start / training.end in the spec"
        )
    start = datetime.combine(cfg.start, datetime.min.time())
    end = datetime.combine(cfg.end, datetime.min.time())
    inside = days.filter(
        (pl.col("day") >= start) & (pl.col("day") < end) & (pl.col("events") > 0)
    ).sort("day")
    if inside.is_empty():
        raise TrainingDataNotReady(
            f"{window} has no labelled events yet. Fix: materialize its days (features and "
            "labels), or move training.start / training.end to days that have data"
        )
    last_day = end - timedelta(days=1)
    if days["day"].max() < last_day:
        raise TrainingDataNotReady(
            f"{window}: its days have not all landed (labels reach {days['day'].max():%Y-%m-%d}, the "
            f"window's last day is {last_day:%Y-%m-%d}). Fix: materialize its days, or move "
            "training.end"
        )
    pending = inside.filter(pl.col("unlabelled") > 0)
    if len(pending):
        raise TrainingDataNotReady(
            f"{window}: {len(pending)} day(s) still have events whose labels have not matured, the "
            f"first {pending['day'][0]:%Y-%m-%d}. Fix: wait until labels.maturity_days have passed "
            "after the window's last day and its label files have landed"
        )
    return _slices(max(start, inside["day"].min()), end, cfg, window)


def _slices(train_start: datetime, test_end: datetime, cfg: Training, where: str) -> TimeSplit:
    one = timedelta(days=1)
    test_start = test_end - one * cfg.test_days
    validation_start = test_start - one * cfg.validation_days
    train_end = validation_start - one * cfg.gap_days
    if train_end - train_start < one:
        have = (test_end - train_start) // one
        need = cfg.test_days + cfg.validation_days + cfg.gap_days + 1
        raise TrainingDataNotReady(
            f"{have} day(s) of labels {where}; the split needs at least {need} (test "
            f"{cfg.test_days} + validation {cfg.validation_days} + gap {cfg.gap_days} + 1 to "
            "train on). Fix: wait for more days, or shorten training.test_days / validation_days / gap_days"
        )
    return TimeSplit(train_start, train_end, validation_start, test_start, test_end)


@dataclass(frozen=True)
class TrainedModel:
    pipeline: Pipeline
    numeric: list[str]
    categorical: list[str]
    threshold: float

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        return self.score_input(to_model_input(frame, self.numeric, self.categorical))

    def score_input(self, model_input) -> np.ndarray:
        """Scores of a frame already in the model's input form (to_model_input's)."""
        return self.pipeline.predict_proba(model_input)[:, 1]


# what the model sees for a categorical input with no value
MISSING_CATEGORY = "__missing__"


def to_model_input(frame: pl.DataFrame, numeric: list[str], categorical: list[str]):
    # scikit-learn's ColumnTransformer takes pandas by column name; the one place pandas is needed
    return frame.select(
        [pl.col(c).cast(pl.Float64) for c in numeric]
        + [pl.col(c).cast(pl.String).fill_null(MISSING_CATEGORY) for c in categorical]
    ).to_pandas()


def split_leaks(frame: pl.DataFrame, split: TimeSplit, id_col: str) -> list[str]:
    """What in a training set breaks the time split: a row outside its slice's days (a later
    day in an earlier slice is the future leaking into training), a row in the unused gap, an
    event in two slices, a validation or test label that is not ground truth."""
    when = pl.col("event_time")
    bounds = {
        "train": (split.train_start, split.train_end),
        "validation": (split.validation_start, split.test_start),
        "test": (split.test_start, split.test_end),
    }
    problems = []
    for name, (start, end) in bounds.items():
        outside = frame.filter((pl.col("split") == name) & ((when < start) | (when >= end)))
        if len(outside):
            problems.append(
                f"{len(outside)} {name} row(s) outside {start:%Y-%m-%d} .. {end - timedelta(days=1):%Y-%m-%d}"
            )
    if len(frame):
        shared = frame.group_by(id_col).agg(pl.col("split").n_unique()).filter(pl.col("split") > 1)
        if len(shared):
            problems.append(f"{len(shared)} event(s) in more than one slice")
    if "label_source" in frame.columns:
        weak = frame.filter(
            (pl.col("split") != "train") & (pl.col("label_source") != "ground_truth")
        )
        if len(weak):
            problems.append(f"{len(weak)} validation/test row(s) not labelled by ground truth")
    return problems


# the model's hyperparameters by default, and where the search looks for better ones
DEFAULT_PARAMS = {
    "learning_rate": 0.08,
    "max_leaf_nodes": 31,
    "l2_regularization": 1.0,
    "min_samples_leaf": 20,
}
SEARCH_SPACE = {
    "learning_rate": [0.03, 0.05, 0.08, 0.12, 0.2],
    "max_leaf_nodes": [15, 31, 63],
    "l2_regularization": [0.0, 0.1, 1.0, 10.0],
    "min_samples_leaf": [10, 20, 50, 100],
}


def build_pipeline(
    numeric: list[str], categorical: list[str], seed: int, params: dict | None = None
) -> Pipeline:
    encoder = ColumnTransformer(
        [
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
                ),
                categorical,
            ),
            ("numeric", "passthrough", numeric),
        ],
        verbose_feature_names_out=False,
    )
    model = HistGradientBoostingClassifier(
        max_iter=200,
        **{**DEFAULT_PARAMS, **(params or {})},
        categorical_features=list(range(len(categorical))) or None,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=15,
        random_state=seed,
    )
    return Pipeline([("encode", encoder), ("model", model)])


def _both_classes(labels: np.ndarray) -> None:
    if not len(labels) or labels.min() == labels.max():
        raise TrainingDataError(
            f"the training window has only one class ({int(labels[0]) if len(labels) else 'none'}) in "
            f"{len(labels)} rows; widen training.train_days or wait for labels to mature"
        )


def fit(
    train: pl.DataFrame,
    numeric: list[str],
    categorical: list[str],
    seed: int,
    alert_rate: float = 0.02,
    params: dict | None = None,
) -> TrainedModel:
    """The gradient-boosted model; its threshold alerts on `alert_rate` of the training events
    until `choose_threshold` sets one from the validation slice."""
    labels = train["label"].to_numpy()
    _both_classes(labels)
    pipeline = build_pipeline(numeric, categorical, seed, params)
    pipeline.fit(to_model_input(train, numeric, categorical), labels)
    scores = pipeline.predict_proba(to_model_input(train, numeric, categorical))[:, 1]
    # operating threshold: the score above which `alert_rate` of training events would alert
    threshold = float(np.quantile(scores, 1 - alert_rate))
    return TrainedModel(pipeline, numeric, categorical, threshold)


def fit_baseline(
    train: pl.DataFrame, numeric: list[str], categorical: list[str], seed: int
) -> TrainedModel:
    """The baseline a candidate must beat: a logistic regression on standardized numeric inputs
    (median-imputed) and one-hot categories."""
    labels = train["label"].to_numpy()
    _both_classes(labels)
    encoder = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore", min_frequency=20), categorical),
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                numeric,
            ),
        ],
        verbose_feature_names_out=False,
    )
    pipeline = Pipeline(
        [("encode", encoder), ("model", LogisticRegression(max_iter=1000, random_state=seed))]
    )
    pipeline.fit(to_model_input(train, numeric, categorical), labels)
    return TrainedModel(pipeline, numeric, categorical, threshold=0.5)


def tune(
    train: pl.DataFrame,
    validation: pl.DataFrame,
    numeric: list[str],
    categorical: list[str],
    seed: int,
    candidates: int,
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict, pl.DataFrame]:
    """Hyperparameters with the best PR AUC on the validation slice, and every trial.

    The defaults first, then candidates drawn from SEARCH_SPACE (scikit-learn's
    ParameterSampler, seeded); no new candidate starts once `seconds` have passed.
    """
    y = validation["label"].to_numpy()
    if y.min() == y.max():
        raise TrainingDataError(
            f"the validation slice has only one class in {len(y)} rows: nothing to tune on. "
            "Fix: lengthen training.validation_days"
        )
    drawn = ParameterSampler(SEARCH_SPACE, n_iter=max(0, candidates - 1), random_state=seed)
    trials, started = [], clock()
    for params in [DEFAULT_PARAMS, *drawn]:
        if trials and clock() - started >= seconds:
            break
        t0 = clock()
        model = fit(train, numeric, categorical, seed, params=params)
        trials.append(
            {
                **params,
                "validation_pr_auc": float(average_precision_score(y, model.score(validation))),
                "seconds": clock() - t0,
            }
        )
    table = pl.DataFrame(trials).with_row_index("trial")
    best = table.sort(["validation_pr_auc", "trial"], descending=[True, False]).row(0, named=True)
    return {k: best[k] for k in DEFAULT_PARAMS}, table


def choose_threshold(y: np.ndarray, p: np.ndarray, rule: ThresholdRule) -> float:
    """The alert threshold by the configured rule, on validation labels `y` and scores `p`.

    alert_rate: the score above which `alert_rate` of the events fall. cost: the candidate
    threshold (each distinct score, alerting on scores >= it) with the lowest
    false_positive_cost * FP + false_negative_cost * FN; ties go to the higher threshold.
    """
    if rule.rule == "alert_rate":
        return float(np.quantile(p, 1 - rule.alert_rate))
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    # alerting on the top k events, for every k: FP and FN counts
    tp = np.concatenate([[0], np.cumsum(y_sorted == 1)])
    fp = np.concatenate([[0], np.cumsum(y_sorted == 0)])
    fn = tp[-1] - tp
    cost = rule.false_positive_cost * fp + rule.false_negative_cost * fn
    # only cut between distinct scores: k where the next score is lower (or all / none)
    cuts = np.concatenate([[True], p_sorted[1:] < p_sorted[:-1], [True]])
    k = int(np.flatnonzero(cuts)[np.argmin(cost[cuts])])
    if k == 0:
        return float(np.nextafter(p_sorted[0], np.inf))  # alert on nothing
    return float(p_sorted[k - 1])


def with_threshold(model: TrainedModel, threshold: float) -> TrainedModel:
    return replace(model, threshold=threshold)


def feature_importance(
    model: TrainedModel, test: pl.DataFrame, max_rows: int, seed: int, repeats: int = 3
) -> pl.DataFrame:
    """Permutation importance on the test slice: how much PR AUC drops when one input's values
    are shuffled (mean and spread over `repeats` shuffles, on at most `max_rows` sampled events)."""
    sample = test.sample(max_rows, seed=seed) if len(test) > max_rows else test
    inputs = to_model_input(sample, model.numeric, model.categorical)
    result = permutation_importance(
        model.pipeline,
        inputs,
        sample["label"].to_numpy(),
        scoring="average_precision",
        n_repeats=repeats,
        random_state=seed,
    )
    # the importances follow the input's columns
    return pl.DataFrame(
        {
            "feature": list(inputs.columns),
            "pr_auc_drop": result.importances_mean,
            "spread": result.importances_std,
        }
    ).sort("pr_auc_drop", descending=True)


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Events in equal-count score bins: mean predicted vs observed positive rate."""
    order = np.argsort(p, kind="stable")
    rows = []
    for chunk in np.array_split(order, min(bins, max(1, len(p)))):
        if len(chunk):
            rows.append(
                {
                    "mean_score": float(p[chunk].mean()),
                    "observed_rate": float(y[chunk].mean()),
                    "events": int(len(chunk)),
                }
            )
    return rows


# the test metrics every version reports (each with a bootstrap interval)
HEADLINE_METRICS = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "precision_at_threshold",
    "recall_at_threshold",
)


def point_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    both = y.min() != y.max()
    alerts = p >= threshold
    tp = int((alerts & (y == 1)).sum())
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "precision_at_threshold": tp / max(1, int(alerts.sum())),
        "recall_at_threshold": tp / max(1, int((y == 1).sum())),
    }


BOOTSTRAP_MAX_EVENTS = 200_000


def bootstrap_intervals(
    y: np.ndarray, p: np.ndarray, threshold: float, samples: int, seed: int
) -> dict[str, list[float]]:
    """95% percentile intervals of each metric over `samples` resamples of the events (seeded).
    A resample with one class only has no AUC and is left out of the AUC intervals. Above
    BOOTSTRAP_MAX_EVENTS events the resamples are drawn from a seeded sample of that many: the
    intervals come out a little wider than the whole slice's would (on the safe side), and the
    cost stays flat on big days."""
    rng = np.random.default_rng(seed)
    if len(y) > BOOTSTRAP_MAX_EVENTS:
        keep = rng.choice(len(y), BOOTSTRAP_MAX_EVENTS, replace=False)
        y, p = y[keep], p[keep]
    draws: dict[str, list[float]] = {}
    for _ in range(samples):
        idx = rng.integers(0, len(y), len(y))
        for name, value in point_metrics(y[idx], p[idx], threshold).items():
            if not np.isnan(value):
                draws.setdefault(name, []).append(value)
    return {
        name: [float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))]
        for name, v in draws.items()
    }


def evaluate(
    model: TrainedModel,
    test: pl.DataFrame,
    bootstrap_samples: int = 0,
    seed: int = 0,
    scores: np.ndarray | None = None,
) -> dict:
    """Test metrics; `scores` are the model's scores of `test` when the caller has them already."""
    y = test["label"].to_numpy()
    p = model.score(test) if scores is None else scores
    out = {
        "test_rows": int(len(y)),
        "test_positive_rate": float(y.mean()),
        **point_metrics(y, p, model.threshold),
        "threshold": model.threshold,
        "alert_rate": float((p >= model.threshold).mean()),
        "calibration": calibration_table(y, p),
    }
    if bootstrap_samples:
        out["intervals"] = bootstrap_intervals(y, p, model.threshold, bootstrap_samples, seed)
    return out


# permutation importance shuffles each input a few times over at most this many test events
IMPORTANCE_ROWS = 20_000
SPLITS = ("train", "validation", "test")


def split_frames(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The train, validation and test rows of a training set (its `split` column); all three are
    needed."""
    train, validation, test = (frame.filter(pl.col("split") == name) for name in SPLITS)
    if not len(train) or not len(validation) or not len(test):
        raise TrainingDataError(
            f"training_set has {len(train)} train, {len(validation)} validation and {len(test)} "
            "test rows; all three are needed. Fix: re-materialize training_set"
        )
    return train, validation, test


@dataclass(frozen=True)
class TrainingOutcome:
    """A tuned gradient-boosted candidate and a logistic-regression baseline, both with their
    alert threshold from the validation slice and tested once; the challenger is the candidate
    when it beats the baseline on test PR AUC, else the baseline. Importance, metrics per group
    and fairness describe the challenger."""

    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    candidate: TrainedModel
    baseline: TrainedModel
    params: dict
    trials: pl.DataFrame
    candidate_metrics: dict
    baseline_metrics: dict
    candidate_scores: np.ndarray
    baseline_scores: np.ndarray
    importance: pl.DataFrame
    slices: pl.DataFrame
    gaps: dict
    fairness: CheckOutcome

    @property
    def beats_baseline(self) -> bool:
        return self.candidate_metrics["pr_auc"] > self.baseline_metrics["pr_auc"]

    @property
    def challenger(self) -> TrainedModel:
        return self.candidate if self.beats_baseline else self.baseline

    @property
    def challenger_kind(self) -> str:
        return "gradient boosting" if self.beats_baseline else "logistic regression baseline"

    @property
    def challenger_metrics(self) -> dict:
        return self.candidate_metrics if self.beats_baseline else self.baseline_metrics

    def test_scores(self, model: TrainedModel) -> np.ndarray:
        return self.candidate_scores if model is self.candidate else self.baseline_scores

    @property
    def explained(self) -> dict:
        """What the challenger's card says of it beyond its metrics."""
        return {
            "feature_importance": self.importance.to_dicts(),
            "slices": self.slices.to_dicts(),
            "fairness": {"gaps": self.gaps, "passed": self.fairness.passed},
        }


def train_challenger(
    frame: pl.DataFrame,
    numeric: list[str],
    categorical: list[str],
    cfg: Training,
    fair: Fairness,
    sensitive_columns: list[str],
    timings: dict[str, float] | None = None,
) -> TrainingOutcome:
    """Tune, fit, set thresholds and test the candidate and the baseline on a training set (the
    `training_set` table: features, label and split), and explain the challenger. `timings`, when
    given, receives the seconds of each step (bench/bench_training.py prints them)."""

    def step(name: str, work: Callable[[], object]):
        started = time.perf_counter()
        out = work()
        if timings is not None:
            timings[name] = time.perf_counter() - started
        return out

    train, validation, test = split_frames(frame)
    params, trials = step(
        "tune",
        lambda: tune(
            train,
            validation,
            numeric,
            categorical,
            cfg.seed,
            cfg.tuning_candidates,
            cfg.tuning_seconds,
        ),
    )
    fitted = {
        "candidate": step("fit", lambda: fit(train, numeric, categorical, cfg.seed, params=params)),
        "baseline": step("baseline", lambda: fit_baseline(train, numeric, categorical, cfg.seed)),
    }
    y_validation, y_test = validation["label"].to_numpy(), test["label"].to_numpy()
    models = {
        name: with_threshold(
            model, choose_threshold(y_validation, model.score(validation), cfg.threshold)
        )
        for name, model in fitted.items()
    }
    # each model scores the test slice once: metrics, slices and fairness all read these
    scores = {name: model.score(test) for name, model in models.items()}
    metrics = {
        name: step(
            f"evaluate {name} + bootstrap",
            partial(evaluate, model, test, cfg.bootstrap_samples, cfg.seed, scores[name]),
        )
        for name, model in models.items()
    }
    better = metrics["candidate"]["pr_auc"] > metrics["baseline"]["pr_auc"]
    chosen = "candidate" if better else "baseline"
    challenger = models[chosen]
    importance = step(
        "importance",
        lambda: feature_importance(challenger, test, IMPORTANCE_ROWS, cfg.seed),
    )
    slices, gaps, fairness = step(
        "slices + fairness",
        lambda: fairness_report(
            y_test,
            scores[chosen],
            challenger.threshold,
            test,
            sensitive_columns,
            fair,
            cfg.bootstrap_samples,
            cfg.seed,
        ),
    )
    return TrainingOutcome(
        train=train,
        validation=validation,
        test=test,
        candidate=models["candidate"],
        baseline=models["baseline"],
        params=params,
        trials=trials,
        candidate_metrics=metrics["candidate"],
        baseline_metrics=metrics["baseline"],
        candidate_scores=scores["candidate"],
        baseline_scores=scores["baseline"],
        importance=importance,
        slices=slices,
        gaps=gaps,
        fairness=fairness,
    )
