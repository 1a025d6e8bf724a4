"""Validation and test slices are bounded like the training slice, and the card says so."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ml_assets.definitions import build_definitions
from ml_assets.settings import Settings
from ml_assets.storage.assembly import build_warehouse
from ml_assets.storage.registry import Registry, current_version, load_card
from ml_assets_tests.conftest import materialize, use_spec_with

pytestmark = pytest.mark.integration


def test_big_evaluation_slices_are_sampled_and_the_card_says_so(example_env, tmp_path, monkeypatch):
    training = yaml.safe_load(Path(os.environ["ML_ASSETS_SPEC"]).read_text())["training"]
    use_spec_with(monkeypatch, tmp_path, training={**training, "max_evaluation_rows": 150})
    defs = build_definitions()
    with dg.instance_for_test() as instance:
        materialize(
            defs,
            "group:ingest or group:clean or group:labels or group:features",
            instance,
            "2026-09-01",
            "2026-09-20",
        )
        materialize(defs, "group:models", instance)
    rows = build_warehouse(Settings.from_env()).read(
        "SELECT split, count(*) AS n FROM models.transactions_training_set GROUP BY 1"
    )
    n = dict(rows.iter_rows())
    card = load_card(example_env / "models", current_version(example_env / "models"))
    sampled = card["sampled_slices"]
    # two days of about 300 events each: a quarter kept, by the seeded hash of the id
    for name in ("validation", "test"):
        available = sampled[name]["available"]
        assert available > 400 and 0.15 < sampled[name]["kept_share"] < 0.4
        assert 0.5 * 150 < n[name] < 1.5 * 150, (name, n, available)
    assert "train" not in sampled  # under max_train_rows: taken whole
    assert card["test_rows"] == n["test"]
    markdown = Registry(example_env / "models").card_markdown_path(card["version"]).read_text()
    assert "Sampled by a seeded hash of the id: validation" in markdown
    assert "metrics and their 95% intervals are those of the sample" in markdown
