"""ml_assets: the machine-learning data lifecycle as partitioned Dagster assets."""

from ml_assets.definitions import defs as defs
