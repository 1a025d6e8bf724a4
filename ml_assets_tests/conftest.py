"""Fixtures: small generated datasets, an environment pointing at them, and run helpers."""

from __future__ import annotations

import os
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from hypothesis import settings

from ml_assets.example_data import generate, shrunk_example_spec

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMALL_START = date(2026, 9, 1)
SMALL_DAYS = 20
TEST_KEY = "test-key-0123456789abcdef"
# the example spec's assets: partitioned by day, and all of them
DAILY_ASSETS = {
    "raw_transactions",
    "raw_chargebacks",
    "raw_annotations",
    "cleaned_transactions",
    "ground_truth_labels",
    "labels",
    "manual_labels",
    "weak_labels",
    "features",
    "predictions",
    "drift_report",
    "model_performance",
    "annotation_queue",
}
# observed, not materialized: governance actions report to it
EXTERNAL_ASSETS = {"audit_log"}
ALL_ASSETS = DAILY_ASSETS | {"training_set", "model", "monitoring_trend"} | EXTERNAL_ASSETS


# Hypothesis: `make test` runs the same generated cases on every run and machine (a CI result
# never depends on the draw); `make fuzz` draws new ones, many more (HYPOTHESIS_PROFILE=explore).
settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def pytest_configure(config):
    if config.getoption("dist", "no") == "loadgroup" and not xdist_can_group():
        # else `--dist loadgroup` spreads the `dagster dev` groups over both workers, silently
        raise pytest.UsageError(
            "this pytest and pytest-xdist cannot keep the xdist_group tests together; install "
            "the versions pyproject.toml pins (`make install`)"
        )
    config.addinivalue_line("markers", "integration: runs Dagster end to end")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config, items):
    """The longest tests first, so that under `make test`'s two workers each starts one of the
    two `dagster dev` groups (daemon, faults) and the short tests fill in around them."""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)


def xdist_can_group() -> bool:
    """Whether pytest-xdist's group suffix reaches the test ids: xdist 3.8 writes it into
    `item._nodeid`, which pytest 9.2 no longer reads (it keeps ids in `_id`)."""
    from _pytest.nodes import Node

    probe = object.__new__(Node)
    probe._nodeid = "probe@group"
    try:
        return Node.nodeid.fget(probe) == "probe@group"
    except AttributeError:
        return False


def small_example_spec(tmp: Path, days: int = SMALL_DAYS, start: date = SMALL_START) -> Path:
    """The example spec over fewer days with a shorter label maturity, so tests run in seconds."""
    path = shrunk_example_spec(
        tmp / "transactions_small.yaml",
        start,
        days,
        maturity_days=5,
        training={
            "train_days": 8,
            "gap_days": 1,
            # 6 matured days are enough for a split: the daemon test seeds 12 days, 5 of them immature
            "validation_days": 2,
            "test_days": 2,
            "seed": 7,
            "tuning_candidates": 3,
            "bootstrap_samples": 50,
        },
        # the file sensors take a file on the second tick that sees it unchanged
        landing={"settle_seconds": 0},
        annotation={"landing": {"settle_seconds": 0}},
    )
    raw = yaml.safe_load(path.read_text())
    raw["labels"]["landing"]["settle_seconds"] = 0
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def small_landing(tmp_path_factory) -> Path:
    """Generated once per session; tests copy it so each has its own data folder. The generator's
    fraud truth (for simulated annotators) is beside it, in example_truth/frauds.csv."""
    root = tmp_path_factory.mktemp("landing")
    generate(
        root / "landing", start=SMALL_START, days=SMALL_DAYS, rows_per_day=300, maturity_days=5
    )
    return root / "landing"


@pytest.fixture(autouse=True)
def no_instance_of_the_checkout(monkeypatch):
    """`make test` exports DAGSTER_HOME=data/dagster_home for the demo: no test writes there (a
    test that wants an instance on disk sets its own)."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


def demo_instance_home(folder: Path) -> Path:
    """`<folder>/dagster_home` holding the demo instance's dagster.yaml (pools, run retries and
    monitoring as `make demo` runs them); the caller points DAGSTER_HOME at it, or not."""
    home = folder / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "data/dagster_home/dagster.yaml", home)
    return home


def use_spec_with(monkeypatch, folder: Path, **blocks) -> Path:
    """The spec ML_ASSETS_SPEC names, with `blocks` (e.g. retention={...}) replaced, written
    under `folder` and selected in its place."""
    import os

    spec = yaml.safe_load(Path(os.environ["ML_ASSETS_SPEC"]).read_text())
    path = folder / f"with_{'_'.join(blocks)}.yaml"
    path.write_text(yaml.safe_dump({**spec, **blocks}))
    monkeypatch.setenv("ML_ASSETS_SPEC", str(path))
    return path


@pytest.fixture
def example_env(tmp_path, small_landing, monkeypatch) -> Path:
    """A data folder with the small example dataset, selected by the environment like a user would."""
    data = tmp_path / "data"
    shutil.copytree(small_landing, data / "landing")
    shutil.copytree(small_landing.parent / "example_truth", data / "example_truth")
    monkeypatch.setenv("ML_ASSETS_SPEC", str(small_example_spec(tmp_path)))
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(data))
    monkeypatch.setenv("ML_ASSETS_PSEUDONYM_KEY", TEST_KEY)
    return data


@pytest.fixture(params=["duckdb", "delta"])
def backend(request, monkeypatch) -> str:
    """The warehouse backend a whole-graph test runs on: the embedded DuckDB file, or the
    cluster profile's Delta Lake tables (on local disk here; on S3 in the cluster test)."""
    if request.param == "delta":
        pytest.importorskip(
            "deltalake", reason="the cluster extra is not installed: pip install -e '.[cluster]'"
        )
    monkeypatch.setenv("ML_ASSETS_WAREHOUSE", request.param)
    return request.param


def write_readings(
    data: Path, start: date = date(2026, 3, 1), days: int = 14, rows: int = 200, seed: int = 3
) -> None:
    """Landing files for the second spec: ';'-separated readings and daily inspection reports."""
    rng = np.random.default_rng(seed)
    (data / "incoming/readings").mkdir(parents=True, exist_ok=True)
    (data / "incoming/inspections").mkdir(parents=True, exist_ok=True)
    inspections: dict[date, list[str]] = {}
    next_id = 0
    for i in range(days):
        day = start + timedelta(days=i)
        lines = ["reading_id;measured_at;temperature;pressure;vibration;operator_email"]
        for _ in range(rows):
            ts = datetime.combine(day, datetime.min.time()) + timedelta(
                seconds=int(rng.integers(0, 86400))
            )
            temp = rng.normal(70, 10)
            vib = rng.gamma(2, 1)
            fails = rng.random() < 1 / (1 + np.exp(-(-6 + 0.06 * (temp - 70) * 3 + 0.8 * vib)))
            temp_s = "" if rng.random() < 0.02 else f"{temp:.2f}"
            lines.append(
                f"{next_id};{ts:%Y-%m-%d %H:%M:%S};{temp_s};{rng.normal(1, 0.1):.3f};{vib:.3f};op{next_id % 7}@plant.example"
            )
            report_day = day + timedelta(days=int(rng.integers(0, 2)))
            inspections.setdefault(report_day, []).append(
                f"I{next_id};{next_id};{report_day};{int(fails)}"
            )
            next_id += 1
        (data / f"incoming/readings/readings-{day}.csv").write_text("\n".join(lines) + "\n")
    for i in range(days):
        day = start + timedelta(days=i)
        body = ["inspection_id;reading_ref;inspected_on;failed", *inspections.get(day, [])]
        (data / f"incoming/inspections/inspections-{day}.csv").write_text("\n".join(body) + "\n")


@pytest.fixture
def readings_env(tmp_path, monkeypatch) -> Path:
    data = tmp_path / "data"
    write_readings(data)
    monkeypatch.setenv("ML_ASSETS_SPEC", str(FIXTURES / "readings.yaml"))
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(data))
    monkeypatch.setenv("ML_ASSETS_PSEUDONYM_KEY", TEST_KEY)
    return data


def materialize(
    defs: dg.Definitions,
    selection: str,
    instance: dg.DagsterInstance,
    first: str | None = None,
    last: str | None = None,
    raise_on_error: bool = True,
):
    """Materialize `selection` over the partition range first..last in one run."""
    tags = {}
    if first:
        tags = {
            ASSET_PARTITION_RANGE_START_TAG: first,
            ASSET_PARTITION_RANGE_END_TAG: last or first,
        }
    return dg.materialize(
        [*defs.assets, *(defs.asset_checks or [])],
        selection=selection,
        instance=instance,
        resources=defs.resources,
        tags=tags,
        raise_on_error=raise_on_error,
    )


class Daemon:
    """Calls a sensor the way the daemon does: the cursor of each tick goes into the next one."""

    def __init__(
        self,
        defs: dg.Definitions,
        instance: dg.DagsterInstance,
        name: str = "raw_transactions_files",
    ):
        self.defs, self.instance, self.name, self.cursor = defs, instance, name, None

    def tick(self, cursor: str | None = "saved") -> dg.SensorResult:
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor if cursor == "saved" else cursor,
            resources=self.defs.resources,
            sensor_name=self.name,
        ) as context:
            result = self.defs.resolve_sensor_def(self.name)(context)
        self.cursor = result.cursor
        return result

    def settle(self) -> dg.SensorResult:
        """Two ticks: one sees the files, the next takes the ones that held still."""
        self.tick()
        return self.tick()


def requested_days(result: dg.SensorResult) -> list[str]:
    """The days the run requests cover (one request per run of consecutive days)."""
    out = []
    for r in result.run_requests:
        if r.partition_key:
            out.append(r.partition_key)
            continue
        first, last = (date.fromisoformat(k) for k in r.partition_key_range)
        out += [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    return sorted(out)
