"""The environment, read once: which datasets, where their data lives, how runs execute.

Every `ML_ASSETS_*` variable the code location depends on is read here, when the definitions
are built (never at import), into a frozen Settings that is passed down; the stages receive the
spec and the settings, not the environment. The pseudonym key is the exception by design: the
Pseudonymizer resource reads it at run time (dg.EnvVar), so it never sits in the definitions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ml_assets.names import side_by_side
from ml_assets.spec import DEFAULT_SPEC_PATH, SPEC_ENV_VAR, DatasetSpec, load_spec

DATA_DIR_ENV_VAR = "ML_ASSETS_DATA_DIR"
EXECUTOR_ENV_VAR = "ML_ASSETS_EXECUTOR"
SENSOR_INTERVAL_ENV_VAR = "ML_ASSETS_SENSOR_INTERVAL_SECONDS"
DUCKDB_MEMORY_ENV_VAR = "ML_ASSETS_DUCKDB_MEMORY_LIMIT"
PROFILE_ENV_VAR = "ML_ASSETS_PROFILE"
WAREHOUSE_ENV_VAR = "ML_ASSETS_WAREHOUSE"
LAKE_ROOT_ENV_VAR = "ML_ASSETS_LAKE_ROOT"
FILES_ROOT_ENV_VAR = "ML_ASSETS_FILES_ROOT"
BACKFILL_ENV_VAR = "ML_ASSETS_BACKFILL_DAYS_PER_RUN"
CELERY_BROKER_ENV_VAR = "ML_ASSETS_CELERY_BROKER"
CELERY_BACKEND_ENV_VAR = "ML_ASSETS_CELERY_BACKEND"
MODEL_EXECUTOR_ENV_VAR = "ML_ASSETS_MODEL_EXECUTOR"
MODEL_POD_CPU_ENV_VAR = "ML_ASSETS_MODEL_POD_CPU"
MODEL_POD_MEMORY_ENV_VAR = "ML_ASSETS_MODEL_POD_MEMORY"
STATE_DIR_ENV_VAR = "ML_ASSETS_STATE_DIR"
PSEUDONYM_KEY_ENV_VAR = "ML_ASSETS_PSEUDONYM_KEY"
# who a governance command is recorded as (the audit log, the lock's holder); else the login
ACTOR_ENV_VAR = "ML_ASSETS_ACTOR"
EXECUTORS = ("in_process", "multiprocess", "celery")
# "run": the model search runs like any run; "k8s_job": each of its steps in its own pod
MODEL_EXECUTORS = ("run", "k8s_job")
PROFILES = ("embedded", "cluster")
WAREHOUSES = ("duckdb", "delta")
# what each profile picks when a part is not set on its own
PROFILE_DEFAULTS = {
    "embedded": {"warehouse": "duckdb", "executor": "in_process", "backfill_days_per_run": "0"},
    "cluster": {"warehouse": "delta", "executor": "celery", "backfill_days_per_run": "5"},
}


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    # ML_ASSETS_SPEC: one spec file, or several separated by the path separator (`:`) to run
    # several datasets side by side in one code location; default the example spec
    spec_paths: tuple[Path, ...] = (DEFAULT_SPEC_PATH,)
    # ML_ASSETS_DATA_DIR: the data folder (warehouse, landing, models, reports)
    data_dir: Path = Path("data")
    # ML_ASSETS_EXECUTOR: in_process (default; DuckDB takes one writer at a time anyway, and a
    # subprocess per step costs seconds, docs/benchmarks.md) or multiprocess
    executor: str = "in_process"
    # ML_ASSETS_SENSOR_INTERVAL_SECONDS: how often the daemon evaluates our sensors
    sensor_interval_seconds: int = 30
    # ML_ASSETS_DUCKDB_MEMORY_LIMIT: DuckDB's buffer pool (its default is 80% of RAM, kept)
    duckdb_memory_limit: str = "1GB"
    # ML_ASSETS_PROFILE: embedded (one machine: DuckDB file, local folders) or cluster (Delta
    # Lake tables, shared services); it picks the defaults of the parts below
    profile: str = "embedded"
    # ML_ASSETS_WAREHOUSE: duckdb (one file under the data folder) or delta (Delta Lake tables)
    warehouse: str = "duckdb"
    # ML_ASSETS_LAKE_ROOT: where the Delta tables live, a folder or s3://bucket/prefix
    # (credentials and endpoint from the standard AWS_* variables); default <data folder>/lake
    lake_root: str = ""
    # ML_ASSETS_FILES_ROOT: where landing, archive, quarantine, models, reports and annotation
    # batches live when not in the data folder: s3://bucket/prefix (default: the data folder)
    files_root: str = ""
    # ML_ASSETS_BACKFILL_DAYS_PER_RUN: 0 runs a backfill as one run (embedded); N > 0 splits
    # it into runs of at most N days that workers share (cluster default 5)
    backfill_days_per_run: int = 0
    # ML_ASSETS_CELERY_BROKER / _BACKEND: where the celery executor sends steps (Redis)
    celery_broker: str = "redis://127.0.0.1:6379/0"
    celery_backend: str = "redis://127.0.0.1:6379/1"
    # ML_ASSETS_MODEL_EXECUTOR: run (the model search runs as any run does) or k8s_job (on
    # Kubernetes: training_set and model each in a pod of its own, sized by
    # ML_ASSETS_MODEL_POD_CPU / _MEMORY, while every other run keeps its one pod)
    model_executor: str = "run"
    model_pod_cpu: str = "2"
    model_pod_memory: str = "8Gi"
    # ML_ASSETS_STATE_DIR: what the code location keeps of its own across runs and pods, the
    # audit log, the erasure ledger, a stopped erasure's record (`governance/`) and the
    # snapshots of a relative `backup.folder`; default the data folder. In the cluster profile
    # the data folder is a pod's scratch: this is the persistent volume the chart mounts
    state_dir: Path = Path("data")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        specs = env.get(SPEC_ENV_VAR)
        paths = tuple(Path(p).expanduser() for p in specs.split(os.pathsep) if p) if specs else ()
        raw = env.get(SENSOR_INTERVAL_ENV_VAR, "30")
        try:
            interval = int(raw)
        except ValueError:
            raise SettingsError(
                f"{SENSOR_INTERVAL_ENV_VAR}={raw!r}: give whole seconds, e.g. 30"
            ) from None
        if interval < 1:
            raise SettingsError(f"{SENSOR_INTERVAL_ENV_VAR}={raw!r}: at least 1 second")
        profile = _choice(env, PROFILE_ENV_VAR, "embedded", PROFILES)
        defaults = PROFILE_DEFAULTS[profile]
        executor = _choice(env, EXECUTOR_ENV_VAR, defaults["executor"], EXECUTORS)
        per_run = env.get(BACKFILL_ENV_VAR) or defaults["backfill_days_per_run"]
        if not per_run.isdigit():
            raise SettingsError(
                f"{BACKFILL_ENV_VAR}={per_run!r}: give a whole number of days (0: one run)"
            )
        warehouse = _choice(env, WAREHOUSE_ENV_VAR, defaults["warehouse"], WAREHOUSES)
        data_dir = Path(env.get(DATA_DIR_ENV_VAR, "data")).expanduser().resolve()
        lake_root = env.get(LAKE_ROOT_ENV_VAR) or str(data_dir / "lake")
        return cls(
            spec_paths=paths or (DEFAULT_SPEC_PATH,),
            data_dir=data_dir,
            profile=profile,
            warehouse=warehouse,
            lake_root=lake_root,
            files_root=_files_root(env.get(FILES_ROOT_ENV_VAR, "")),
            backfill_days_per_run=int(per_run),
            celery_broker=env.get(CELERY_BROKER_ENV_VAR) or cls.celery_broker,
            celery_backend=env.get(CELERY_BACKEND_ENV_VAR) or cls.celery_backend,
            executor=executor,
            model_executor=_choice(env, MODEL_EXECUTOR_ENV_VAR, "run", MODEL_EXECUTORS),
            model_pod_cpu=env.get(MODEL_POD_CPU_ENV_VAR) or cls.model_pod_cpu,
            model_pod_memory=env.get(MODEL_POD_MEMORY_ENV_VAR) or cls.model_pod_memory,
            sensor_interval_seconds=interval,
            duckdb_memory_limit=env.get(DUCKDB_MEMORY_ENV_VAR, "1GB"),
            state_dir=state_dir(data_dir, env),
        )

    def backup_stores(self) -> dict[str, str | None]:
        """Where a backup finds (and a restore puts back) what is not in the data folder: the
        object store of the files, and the Delta tables' root (None: no Delta tables)."""
        return {
            "files_root": self.files_root,
            "lake_root": self.lake_root if self.warehouse == "delta" else None,
        }

    def specs(self) -> list[DatasetSpec]:
        """The datasets of the code location; beside each other, each under its own key prefix."""
        specs = [load_spec(path) for path in self.spec_paths]
        # a dataset's name and its label source's name each name tables and landing folders
        names = [name for s in specs for name in (s.name, s.labels.name)]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise SettingsError(
                f"{SPEC_ENV_VAR} lists specs that share the name(s) {', '.join(repeated)} "
                "(as dataset or label source): each needs its own, since it names tables, asset "
                "keys and folders. Fix: rename the dataset or `labels.name` in one of the specs"
            )
        return specs if len(specs) == 1 else [side_by_side(s) for s in specs]

    def dataset(self, name: str | None = None) -> DatasetSpec:
        """The dataset a command-line tool acts on: `name`, or the only one."""
        specs = self.specs()
        if name is None and len(specs) == 1:
            return specs[0]
        found = [s for s in specs if s.name == name]
        if not found:
            known = ", ".join(s.name for s in specs)
            raise SettingsError(
                f"{SPEC_ENV_VAR} holds the datasets {known}: "
                + (f"none is named {name!r}" if name else "say which with --dataset NAME")
            )
        return found[0]


def data_dir_from_env() -> Path:
    """The data folder of the command-line tools: the settings' (ML_ASSETS_DATA_DIR)."""
    return Settings.from_env().data_dir


def actor() -> str:
    """Who runs a command: ML_ASSETS_ACTOR, else the login, else the uid."""
    import getpass

    if who := os.environ.get(ACTOR_ENV_VAR):
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def state_dir(data_dir: Path, env: Mapping[str, str] = os.environ) -> Path:
    """Where the audit log, the erasure ledger, a stopped erasure's record and the snapshots
    live (ML_ASSETS_STATE_DIR, else the data folder). Read where each is written, so that a
    command line tool and a run pod given the same environment find the same files."""
    given = env.get(STATE_DIR_ENV_VAR)
    return Path(given).expanduser().resolve() if given else Path(data_dir)


def governance_dir(data_dir: Path) -> Path:
    """The folder of the audit log, the erasure ledger and a stopped erasure's record."""
    return state_dir(data_dir) / "governance"


def _choice(env: Mapping[str, str], var: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(var) or default
    if value not in allowed:
        raise SettingsError(f"{var}={value!r}: use one of {list(allowed)}")
    return value


def _files_root(value: str) -> str:
    if value and "://" not in value:
        raise SettingsError(
            f"{FILES_ROOT_ENV_VAR}={value!r}: give an object store URL (s3://bucket/prefix), or "
            f"leave it unset and set {DATA_DIR_ENV_VAR} for a local folder"
        )
    return value
