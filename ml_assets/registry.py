"""The model registry on disk: one folder per version, a pointer to the current one.

    models/<version>/model.joblib   the fitted pipeline (loaded only from this registry)
    models/<version>/model.json     metrics, parameters, training windows, data versions, drift reference
    models/current.json             which version `predictions` uses

A version is the training time plus the first 12 hex digits of the artifact's SHA-256; the hash
is checked again on load, so a replaced artifact is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import joblib

from ml_assets.transforms.train import TrainedModel


class ModelRegistryError(RuntimeError):
    pass


def save_version(models_dir: Path, model: TrainedModel, card: dict, promote: bool = True) -> str:
    """Save a version; with `promote`, make it the one `predictions` uses."""
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    blob = buffer.getvalue()
    digest = hashlib.sha256(blob).hexdigest()
    version = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{digest[:12]}"
    folder = models_dir / version
    folder.mkdir(parents=True, exist_ok=False)
    (folder / "model.joblib").write_bytes(blob)
    (folder / "model.json").write_text(
        json.dumps({**card, "version": version, "sha256": digest}, indent=2, default=str)
    )
    if not promote:
        return version
    # write the pointer last and atomically: a crash before this leaves the old champion in use
    tmp = models_dir / "current.json.tmp"
    tmp.write_text(json.dumps({"version": version}))
    tmp.replace(models_dir / "current.json")
    return version


def current_version(models_dir: Path) -> str:
    pointer = models_dir / "current.json"
    if not pointer.exists():
        raise ModelRegistryError(
            f"no model in use in {models_dir}: materialize the `model` asset first (it trains on `training_set`); "
            "a version that does not beat the baseline is saved but not put in use (see the `model` asset's metadata)"
        )
    return json.loads(pointer.read_text())["version"]


def load_card(models_dir: Path, version: str) -> dict:
    return json.loads((models_dir / version / "model.json").read_text())


def load_model(models_dir: Path, version: str) -> tuple[TrainedModel, dict]:
    card = load_card(models_dir, version)
    blob = (models_dir / version / "model.joblib").read_bytes()
    if hashlib.sha256(blob).hexdigest() != card["sha256"]:
        raise ModelRegistryError(
            f"{models_dir / version / 'model.joblib'} does not match its recorded SHA-256: refusing to load it"
        )
    return joblib.load(io.BytesIO(blob)), card


def list_versions(models_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(models_dir.glob("*/model.json"))]
