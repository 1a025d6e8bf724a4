"""Training and evaluating the model on time-ordered data. No Dagster here.

The split is by time only: train on earlier days, test on the later days; never a random split
over time-ordered events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder


@dataclass(frozen=True)
class TrainedModel:
    pipeline: Pipeline
    numeric: list[str]
    categorical: list[str]
    threshold: float

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(to_model_input(frame, self.numeric, self.categorical))[
            :, 1
        ]


def to_model_input(frame: pl.DataFrame, numeric: list[str], categorical: list[str]):
    # scikit-learn's ColumnTransformer takes pandas by column name; the one place pandas is needed
    return frame.select(
        [pl.col(c).cast(pl.Float64) for c in numeric]
        + [pl.col(c).cast(pl.String).fill_null("__missing__") for c in categorical]
    ).to_pandas()


def build_pipeline(numeric: list[str], categorical: list[str], seed: int) -> Pipeline:
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
        learning_rate=0.08,
        max_leaf_nodes=31,
        l2_regularization=1.0,
        categorical_features=list(range(len(categorical))) or None,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=15,
        random_state=seed,
    )
    return Pipeline([("encode", encoder), ("model", model)])


def fit(
    train: pl.DataFrame,
    numeric: list[str],
    categorical: list[str],
    seed: int,
    alert_rate: float = 0.02,
) -> TrainedModel:
    labels = train["label"].to_numpy()
    if labels.min() == labels.max():
        raise ValueError(
            f"the training window has only one class ({int(labels[0])}) in {len(labels)} rows; "
            "widen training.train_days or wait for labels to mature"
        )
    pipeline = build_pipeline(numeric, categorical, seed)
    pipeline.fit(to_model_input(train, numeric, categorical), labels)
    scores = pipeline.predict_proba(to_model_input(train, numeric, categorical))[:, 1]
    # operating threshold: the score above which `alert_rate` of training events would alert
    threshold = float(np.quantile(scores, 1 - alert_rate))
    return TrainedModel(pipeline, numeric, categorical, threshold)


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


def evaluate(model: TrainedModel, test: pl.DataFrame) -> dict:
    y = test["label"].to_numpy()
    p = model.score(test)
    both = y.min() != y.max()
    alerts = p >= model.threshold
    tp = int((alerts & (y == 1)).sum())
    return {
        "test_rows": int(len(y)),
        "test_positive_rate": float(y.mean()),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "threshold": model.threshold,
        "precision_at_threshold": tp / max(1, int(alerts.sum())),
        "recall_at_threshold": tp / max(1, int((y == 1).sum())),
        "calibration": calibration_table(y, p),
    }
