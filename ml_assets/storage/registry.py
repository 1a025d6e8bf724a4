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
import re
from datetime import UTC, datetime
from pathlib import Path

import skops.io as sio

from ml_assets.transforms.train import HEADLINE_METRICS, TrainedModel

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


# what save_version names a version: training time (UTC) and the artifact's hash prefix
VERSION_FORMAT = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{12}")


def version_folder(models_dir: Path, version: str) -> Path:
    """The folder of `version`, which must be a name this registry gives and lie inside the
    models folder: a path (`../x`, `/abs`) would let a rollback put any file in use."""
    if not isinstance(version, str) or not VERSION_FORMAT.fullmatch(version):
        raise ModelRegistryError(
            f"{version!r} is not a model version: versions look like 20261029T101500Z-0123456789ab "
            "(training time and artifact hash); `python -m ml_assets.cli.models list` shows them"
        )
    if not isinstance(models_dir, Path):  # an object store: no links, no `..` to resolve
        return models_dir / version
    folder = (models_dir / version).resolve()
    if folder.parent != models_dir.resolve():
        raise ModelRegistryError(f"version {version!r} resolves outside {models_dir}: refused")
    return folder


def code_version() -> str:
    """The installed ml_assets version, and the git commit of its checkout when there is one
    ("+dirty" when files differ from it): what code trained a version."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("ml_assets")
    except PackageNotFoundError:
        package = "not installed"
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    return f"ml_assets {package}" + (f", git {commit}{'+dirty' if dirty else ''}" if commit else "")


def save_version(models_dir: Path, model: TrainedModel, card: dict, promote: bool = True) -> str:
    """Save a version; with `promote`, make it the one `predictions` uses."""
    blob = sio.dumps(model.pipeline)
    digest = hashlib.sha256(blob).hexdigest()
    version = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{digest[:12]}"
    folder = models_dir / version
    folder.mkdir(parents=True, exist_ok=False, mode=0o700)
    (folder / ARTIFACT).write_bytes(blob)
    inputs = {
        "numeric": model.numeric,
        "categorical": model.categorical,
        "threshold": model.threshold,
        "artifact": ARTIFACT,
    }
    # to the microsecond: orders versions saved within one second where the store's times
    # have one-second resolution (S3's last-modified)
    saved_at = datetime.now(UTC).isoformat(timespec="microseconds")
    (folder / "model.json").write_text(
        json.dumps(
            {**card, **inputs, "version": version, "sha256": digest, "saved_at": saved_at},
            indent=2,
            default=str,
        )
    )
    if promote:
        set_current(models_dir, version, "promoted by the champion/challenger gate")
    return version


def set_current(models_dir: Path, version: str, why: str) -> None:
    """Point `predictions` at `version`, atomically, and log the change in history.jsonl."""
    previous = current_version(models_dir) if (models_dir / "current.json").exists() else None
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "from": previous}
    line = json.dumps({**entry, "to": version, "why": why}) + "\n"
    pointer = json.dumps({"version": version})
    if not isinstance(models_dir, Path):
        # object storage: one PUT replaces the pointer whole (readers see the old version or
        # the new one); the history object is rewritten with the new line
        (models_dir / "current.json").write_text(pointer)
        history = models_dir / "history.jsonl"
        history.write_text((history.read_text() if history.exists() else "") + line)
        return
    # write the pointer last and atomically: a crash before this leaves the old champion in use
    tmp = models_dir / "current.json.tmp"
    tmp.write_text(pointer)
    tmp.replace(models_dir / "current.json")
    with open(models_dir / "history.jsonl", "a") as log:
        log.write(line)


def rollback(models_dir: Path, version: str) -> str:
    """Put an earlier version back in use (after checking it loads); returns the one replaced."""
    if not (version_folder(models_dir, version) / "model.json").exists():
        known = ", ".join(v["version"] for v in list_versions(models_dir)[-5:]) or "none"
        raise ModelRegistryError(
            f"no version {version!r} in {models_dir} (newest: {known}); `list` shows them all"
        )
    load_model(models_dir, version)  # the hash and the trusted types, before it is used
    previous = current_version(models_dir) if (models_dir / "current.json").exists() else None
    set_current(models_dir, version, f"rolled back by hand from {previous}")
    return previous


def current_version(models_dir: Path) -> str:
    pointer = models_dir / "current.json"
    if not pointer.exists():
        raise ModelRegistryError(
            f"no model in use in {models_dir}: materialize the `model` asset first (it trains on `training_set`); "
            "a version that does not beat the baseline is saved but not put in use (see the `model` asset's metadata)"
        )
    version = json.loads(pointer.read_text())["version"]
    version_folder(models_dir, version)  # a pointer edited by hand to a path is refused
    return version


def load_card(models_dir: Path, version: str) -> dict:
    return json.loads((version_folder(models_dir, version) / "model.json").read_text())


def load_model(models_dir: Path, version: str) -> tuple[TrainedModel, dict]:
    card = load_card(models_dir, version)
    path = version_folder(models_dir, version) / card.get("artifact", "model.joblib")
    if path.suffix != ".skops":
        raise ModelRegistryError(
            f"{path} is a pickle from an earlier ml_assets, which is not loaded any more. Fix: retrain "
            "(`dagster asset materialize -m ml_assets --select training_set,model`)"
        )
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != card["sha256"]:
        raise ModelRegistryError(f"{path} does not match its recorded SHA-256: refusing to load it")
    try:
        unexpected = sorted(set(sio.get_untrusted_types(data=blob)) - set(TRUSTED_TYPES))
        if not unexpected:
            pipeline = sio.loads(blob, trusted=TRUSTED_TYPES)
    except Exception as err:  # skops raises BadZipFile, KeyError, ... on a file not its own
        raise ModelRegistryError(
            f"version {version}: {path} is not a skops model file ({type(err).__name__}: {err}); "
            "it was replaced after it was saved (the SHA-256 on its card guards integrity, not "
            "authenticity: whoever can write the card can change both). Fix: roll back to another "
            "version (`python -m ml_assets.cli.models rollback VERSION`) or retrain, and find out who "
            "wrote the file"
        ) from None
    if unexpected:
        raise ModelRegistryError(
            f"{path} holds types this registry does not trust: {unexpected}; refusing to load it"
        )
    model = TrainedModel(pipeline, card["numeric"], card["categorical"], card["threshold"])
    return model, card


def list_versions(models_dir: Path) -> list[dict]:
    """Every version's card, oldest first: by the training second its name carries, then the
    card's `saved_at` (two versions saved within a second), then the file's time (cards older
    than `saved_at`). Not by the file's time first: rewriting a card (an erasure's mark) on an
    object store gives it a new last-modified time, and must not make an old version newest."""
    cards = [
        (p.stat().st_mtime_ns, json.loads(p.read_text())) for p in models_dir.glob("*/model.json")
    ]
    cards.sort(
        key=lambda c: (
            str(c[1].get("version", ""))[:16],
            c[1].get("saved_at", ""),
            c[0],
            c[1].get("version", ""),
        )
    )
    return [card for _, card in cards]


class Registry:
    """One dataset's model versions: what the assets and sensors call (the ModelRegistry
    resource hands it out). The functions above work on a local folder and, through its
    pathlib-like UPath, on an object store (ml_assets.objectstore), with the same checks on
    every load."""

    def __init__(self, folder):
        # a local folder, or a folder of an object store (a UPath, cluster profile)
        self.folder = Path(folder) if isinstance(folder, str) else folder

    def __repr__(self) -> str:
        return f"Registry({self.folder})"

    def current_version(self) -> str:
        return current_version(self.folder)

    def in_use(self) -> str | None:
        """The version in use, None before any passed the gate."""
        return current_version(self.folder) if (self.folder / "current.json").exists() else None

    def load_card(self, version: str) -> dict:
        return load_card(self.folder, version)

    def card_or_empty(self, version: str | None) -> dict:
        """A version's card, {} when there is no such version (a version retention removed)."""
        if not version or not (self.folder / version / "model.json").is_file():
            return {}
        return load_card(self.folder, version)

    def load_model(self, version: str) -> tuple[TrainedModel, dict]:
        return load_model(self.folder, version)

    def save_version(self, model: TrainedModel, card: dict, promote: bool = True) -> str:
        return save_version(self.folder, model, card, promote)

    def list_versions(self) -> list[dict]:
        return list_versions(self.folder) if self.folder.is_dir() else []

    def card_markdown_path(self, version: str) -> Path:
        return version_folder(self.folder, version) / "model_card.md"

    def artifact_path(self, version: str) -> Path:
        return version_folder(self.folder, version) / ARTIFACT


def compare(models_dir: Path, versions: list[str]) -> str:
    """Test metrics, windows and the gate's decision of some versions, side by side."""
    cards = [load_card(models_dir, v) for v in versions]
    rows = [
        ("kind", [c.get("kind", "") for c in cards]),
        ("trained at", [c.get("trained_at", "") for c in cards]),
        ("train window", [c.get("train_window", "") for c in cards]),
        ("test window", [c.get("test_window", "") for c in cards]),
        *[
            (m, [f"{c.get('metrics', {}).get(m, float('nan')):.4f}" for c in cards])
            for m in (*HEADLINE_METRICS, "threshold")
        ],
        ("promoted", [str((c.get("promotion") or {}).get("promote", "")) for c in cards]),
    ]
    width = max(len(v) for v in versions) + 2
    lines = ["".ljust(24) + "".join(v.ljust(width) for v in versions)]
    lines += [
        name.ljust(24) + "".join(str(x).ljust(width) for x in values) for name, values in rows
    ]
    return "\n".join(lines)
