"""Models: the training set from matured labels, and the model trained and tested on it."""

from datetime import datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl

from ml_assets.defs.labels.assets import LABELLED_TOTAL, labelled_events
from ml_assets.metadata import (
    check_results,
    check_specs,
    markdown_table,
    refuse_if_blocking_failed,
    table_metadata,
)
from ml_assets.policies import WAREHOUSE_POOL, WEEKLY_FRESHNESS
from ml_assets.registry import save_version
from ml_assets.resources import LocalFiles, Warehouse
from ml_assets.spec import DatasetSpec, load_spec
from ml_assets.tables import Tables
from ml_assets.transforms import train as training
from ml_assets.transforms.drift import categorical_profile, numeric_profile
from ml_assets.transforms.features import feature_columns
from ml_assets.transforms.quality import table_checks

SCORE_COLUMN = "prediction_score"


class TrainingWindowConfig(dg.Config):
    """Which days to train on; by default the newest days whose labels have all matured."""

    as_of: str | None = None  # YYYY-MM-DD: train as if this were the newest matured day


def matured_days(warehouse: Warehouse, labels_table: str) -> pl.DataFrame:
    return warehouse.read(
        f"""SELECT CAST(date_trunc('day', event_time) AS TIMESTAMP) AS day, count(*) AS events,
                   count(*) FILTER (WHERE label_status = 'unlabelled') AS unlabelled
            FROM {labels_table} GROUP BY 1 ORDER BY 1"""
    )


def choose_window(days: pl.DataFrame, train_days: int, test_days: int, as_of=None):
    """(train_start, test_start, test_end): test is the last `test_days` fully labelled days."""
    full = days.filter((pl.col("unlabelled") == 0) & (pl.col("events") > 0))
    if as_of is not None:
        full = full.filter(pl.col("day") <= as_of)
    if len(full) < 2:
        raise dg.Failure(
            f"only {len(full)} day(s) have fully matured labels; training needs at least 2. "
            "Fix: materialize more days of labels, or wait for the maturity window to pass"
        )
    last = full["day"].max()
    test_end = last + timedelta(days=1)
    test_start = max(test_end - timedelta(days=test_days), full["day"].min() + timedelta(days=1))
    train_start = max(test_start - timedelta(days=train_days), days["day"].min())
    return train_start, test_start, test_end


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

    @dg.asset(
        description=(
            "Labelled feature rows (from `labels`, each with its label source) for training and testing, split by time: the last "
            f"{cfg.test_days} days with fully matured labels are the test slice, the {cfg.train_days} days before "
            "them the training slice (sampled down to training.max_train_rows). Not partitioned: it is one window "
            "over many days, rebuilt when the model retrains."
        ),
        group_name="models",
        kinds={"duckdb", "polars"},
        freshness_policy=WEEKLY_FRESHNESS,
        pool=WAREHOUSE_POOL,
        deps=["features", "labels"],
        check_specs=check_specs("training_set"),
        metadata={"table": t.training_set},
    )
    def training_set(
        context: dg.AssetExecutionContext, config: TrainingWindowConfig, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        as_of = datetime.fromisoformat(config.as_of) if config.as_of else None
        train_start, test_start, test_end = choose_window(
            matured_days(warehouse, t.labels), cfg.train_days, cfg.test_days, as_of
        )
        total_train = warehouse.read(
            f"SELECT count(*) AS n FROM {t.labels} WHERE event_time >= ? AND event_time < ? AND label IS NOT NULL",
            [train_start, test_start],
        ).item()
        keep_per_million = min(1_000_000, int(1_000_000 * cfg.max_train_rows / max(1, total_train)))
        frame = warehouse.read(
            f"""SELECT f.*, l.label, l.label_source,
                       CASE WHEN f.event_time < $test_start THEN 'train' ELSE 'test' END AS split
                FROM {t.features} f JOIN {t.labels} l ON CAST(f.{id_col} AS VARCHAR) = l.event_id
                WHERE l.label IS NOT NULL AND f.event_time >= $train_start AND f.event_time < $test_end
                  -- the model is tested on ground truth only; it may train on any source
                  AND (f.event_time < $test_start OR l.label_source = 'ground_truth')
                  AND (f.event_time >= $test_start OR hash(f.{id_col}, $seed) % 1000000 < $keep)
                ORDER BY f.event_time, f.{id_col}""",
            {
                "train_start": train_start,
                "test_start": test_start,
                "test_end": test_end,
                "seed": cfg.seed,
                "keep": keep_per_million,
            },
        )
        outcomes = table_checks(
            frame,
            {"label": pl.Int8, "split": pl.String, "event_time": pl.Datetime("us")},
            {"label": 0.0, "event_time": 0.0},
            id_col,
            {"label": (0, 1)},
            {"split": ["train", "test"]},
        )
        refuse_if_blocking_failed("training_set", outcomes)
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
                train_window=f"{train_start:%Y-%m-%d} .. {test_start - timedelta(days=1):%Y-%m-%d}",
                test_window=f"{test_start:%Y-%m-%d} .. {test_end - timedelta(days=1):%Y-%m-%d}",
                splits=dg.MetadataValue.md(markdown_table(split_counts)),
                label_sources=dg.MetadataValue.md(markdown_table(label_mix)),
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
            "classifier) fitted on the training slice of training_set and tested on its later test slice (ROC AUC, "
            "PR AUC, Brier, log loss, calibration table). Saved as a versioned artifact in data/models with the data "
            "versions it was trained on; the newest version becomes current. Not partitioned: a model spans many days. "
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
    )
    def model(
        context: dg.AssetExecutionContext, warehouse: Warehouse, files: LocalFiles
    ) -> dg.MaterializeResult:
        frame = warehouse.read(f"SELECT * FROM {t.training_set}")
        train, test = (
            frame.filter(pl.col("split") == "train"),
            frame.filter(pl.col("split") == "test"),
        )
        if not len(train) or not len(test):
            raise dg.Failure(
                f"training_set has {len(train)} train and {len(test)} test rows; both are needed"
            )
        trained = training.fit(train, numeric, categorical, cfg.seed)
        metrics = training.evaluate(trained, test)
        # the weekday is one value per day: comparing a day with the reference would always "drift"
        reference = {
            c: numeric_profile(train[c].cast(pl.Float64).to_numpy(), cfg.seed)
            for c in numeric
            if c != "event_weekday"
        }
        reference.update({c: categorical_profile(train[c]) for c in categorical})
        reference[SCORE_COLUMN] = numeric_profile(trained.score(train), cfg.seed)
        upstream = context.instance.get_latest_materialization_event(dg.AssetKey("training_set"))
        training_meta = upstream.asset_materialization.metadata if upstream else {}
        card = {
            "trained_at": datetime.now().isoformat(timespec="seconds"),
            "numeric_features": numeric,
            "categorical_features": categorical,
            "params": trained.pipeline.named_steps["model"].get_params(),
            "metrics": metrics,
            "train_rows": len(train),
            "test_rows": len(test),
            "train_window": getattr(training_meta.get("train_window"), "value", None),
            "test_window": getattr(training_meta.get("test_window"), "value", None),
            "input_data_versions": getattr(training_meta.get("input_data_versions"), "data", None),
            "reference": reference,
        }
        version = save_version(files.folder("models"), trained, card)
        calibration = pl.DataFrame(metrics["calibration"])
        headline = {
            k: metrics[k]
            for k in (
                "roc_auc",
                "pr_auc",
                "brier",
                "log_loss",
                "precision_at_threshold",
                "recall_at_threshold",
            )
        }
        return dg.MaterializeResult(
            metadata={
                "model_version": version,
                "artifact": dg.MetadataValue.path(
                    str(files.folder("models") / version / "model.joblib")
                ),
                **{k: dg.MetadataValue.float(float(np.round(v, 6))) for k, v in headline.items()},
                "threshold": dg.MetadataValue.float(metrics["threshold"]),
                "calibration": dg.MetadataValue.md(markdown_table(calibration, max_rows=20)),
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
        )

    return dg.Definitions(assets=[training_set, model])


@dg.definitions
def defs() -> dg.Definitions:
    return build(load_spec())
