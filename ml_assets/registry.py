"""The model registry on disk: one folder per version, a pointer to the current one.

    models/<version>/model.skops    the fitted scikit-learn pipeline, in skops' format: loading it
                                   runs no pickle, and only the types in TRUSTED_TYPES are rebuilt
    models/<version>/model.json     metrics, parameters, training windows, data versions, drift reference
    models/current.json             which version `predictions` uses

A version is the training time plus the first 12 hex digits of the artifact's SHA-256; the hash
is checked again on load, so a replaced artifact is refused.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import skops.io as sio

from ml_assets.transforms.train import TrainedModel

ARTIFACT = "model.skops"
# what our pipelines hold beyond what skops trusts by default (checked on every load)
TRUSTED_TYPES = [
    "functools.partial",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]


class ModelRegistryError(RuntimeError):
    pass


def save_version(models_dir: Path, model: TrainedModel, card: dict, promote: bool = True) -> str:
    """Save a version; with `promote`, make it the one `predictions` uses."""
    blob = sio.dumps(model.pipeline)
    digest = hashlib.sha256(blob).hexdigest()
    version = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{digest[:12]}"
    folder = models_dir / version
    folder.mkdir(parents=True, exist_ok=False)
    (folder / ARTIFACT).write_bytes(blob)
    inputs = {
        "numeric": model.numeric,
        "categorical": model.categorical,
        "threshold": model.threshold,
        "artifact": ARTIFACT,
    }
    (folder / "model.json").write_text(
        json.dumps({**card, **inputs, "version": version, "sha256": digest}, indent=2, default=str)
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
    path = models_dir / version / card.get("artifact", "model.joblib")
    if path.suffix != ".skops":
        raise ModelRegistryError(
            f"{path} is a pickle from an earlier ml_assets, which is not loaded any more. Fix: retrain "
            "(`dagster asset materialize -m ml_assets --select training_set,model`)"
        )
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != card["sha256"]:
        raise ModelRegistryError(f"{path} does not match its recorded SHA-256: refusing to load it")
    unexpected = sorted(set(sio.get_untrusted_types(data=blob)) - set(TRUSTED_TYPES))
    if unexpected:
        raise ModelRegistryError(
            f"{path} holds types this registry does not trust: {unexpected}; refusing to load it"
        )
    pipeline = sio.loads(blob, trusted=TRUSTED_TYPES)
    model = TrainedModel(pipeline, card["numeric"], card["categorical"], card["threshold"])
    return model, card


def list_versions(models_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(models_dir.glob("*/model.json"))]
