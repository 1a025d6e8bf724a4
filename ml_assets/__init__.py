"""ml_assets: the machine-learning data lifecycle as partitioned Dagster assets.

`dagster ... -m ml_assets` loads `code_location` (the name `defs` is the defs/ package here).
"""

from ml_assets.definitions import defs as code_location

__all__ = ["code_location"]
