"""The dataset spec: what the tabular data looks like and how every stage treats it.

A user brings their own data by writing one YAML file of this shape and pointing
``ML_ASSETS_SPEC`` at it; no code changes. The example dataset's spec is the default.

Split by concept: base (shared types), columns, landing, labels, modelling (features, training,
promotion, fairness, drift, performance), lifecycle (retraining, retention, backup, freshness)
and dataset (the whole spec and its loader). Import from `ml_assets.spec`.
"""

from ml_assets.spec.base import (
    DEFAULT_SPEC_PATH,
    DUCKDB_TYPES,
    SPEC_ENV_VAR,
    ColumnType,
    Role,
    SpecError,
    polars_types,
)
from ml_assets.spec.columns import (
    Column,
    Imputation,
    ValueRange,
)
from ml_assets.spec.dataset import (
    DatasetSpec,
    load_spec,
)
from ml_assets.spec.labels import (
    Annotation,
    AnnotationLanding,
    LabelingFunction,
    LabelQuality,
    LabelSource,
    WeakLabels,
)
from ml_assets.spec.landing import (
    LandingFiles,
    LandingLimits,
    Partitions,
)
from ml_assets.spec.lifecycle import (
    Backup,
    PartitionFreshness,
    Retention,
    Retraining,
)
from ml_assets.spec.modelling import (
    Drift,
    Fairness,
    Features,
    Performance,
    Promotion,
    RollingFeatures,
    ThresholdRule,
    Training,
    window_timedelta,
)

__all__ = [
    "Annotation",
    "AnnotationLanding",
    "Backup",
    "Column",
    "ColumnType",
    "DEFAULT_SPEC_PATH",
    "DUCKDB_TYPES",
    "DatasetSpec",
    "Drift",
    "Fairness",
    "Features",
    "Imputation",
    "LabelQuality",
    "LabelSource",
    "LabelingFunction",
    "LandingFiles",
    "LandingLimits",
    "PartitionFreshness",
    "Partitions",
    "Performance",
    "Promotion",
    "Retention",
    "Retraining",
    "Role",
    "RollingFeatures",
    "SPEC_ENV_VAR",
    "SpecError",
    "ThresholdRule",
    "Training",
    "ValueRange",
    "WeakLabels",
    "load_spec",
    "polars_types",
    "window_timedelta",
]
