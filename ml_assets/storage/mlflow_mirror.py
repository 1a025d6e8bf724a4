"""MLflow as a mirror of the model registry, for teams that already use it.

Our registry (ml_assets/storage/registry.py) stays the source of truth: what `predictions` uses is its
`current.json`. When a tracking URI is set (MLFLOW_TRACKING_URI, or `mlflow.tracking_uri` in the
spec), every version the `model` asset saves is also logged to MLflow as a run of the
dataset's experiment: its parameters, its test metrics with their 95 % intervals, the model card
(JSON and Markdown), the data versions and windows as tags, and the fitted pipeline in MLflow's
sklearn flavour, registered as a version of the dataset's registered model (tagged with our
version name). The registered model's `champion` alias follows the version in use: moved when
the gate promotes, and on `python -m ml_assets.cli.models rollback`.

A mirror never blocks: a tracking server that is down or refuses costs one warning (HTTP
retries are off, so it costs seconds, not minutes), and the run goes on.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from ml_assets.spec import DatasetSpec
from ml_assets.storage.registry import TRUSTED_TYPES
from ml_assets.transforms.train import HEADLINE_METRICS

TRACKING_URI_ENV_VAR = "MLFLOW_TRACKING_URI"
CHAMPION_ALIAS = "champion"
VERSION_TAG = "ml_assets_version"
# what a down server may cost: no retries, a short timeout (MLflow's defaults retry for minutes)
QUICK_FAILURE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@dataclass(frozen=True)
class Mirrored:
    """What a mirror call did: the MLflow model version per our version, or why not."""

    versions: dict[str, str]
    warning: str | None = None

    def metadata(self) -> dict:
        """What the `model` asset shows of it: the MLflow versions, or the warning."""
        out = {}
        if self.versions:
            out["mlflow_model_versions"] = dg.MetadataValue.json(self.versions)
        if self.warning:
            out["mlflow_warning"] = dg.MetadataValue.text(self.warning)
        return out


class MLflowMirror(dg.ConfigurableResource):
    """Logs model versions to MLflow and moves the `champion` alias; off without a tracking URI.

    `tracking_uri` is MLFLOW_TRACKING_URI (the spec's `mlflow.tracking_uri` when unset);
    `artifact_root` is where a local store (sqlite:, file:) keeps the artifacts when the
    experiment is created here (default: the data folder's mlflow/ folder)."""

    tracking_uri: str = ""
    artifact_root: str = ""

    def uri(self, spec: DatasetSpec) -> str | None:
        given = self.tracking_uri
        if isinstance(given, dg.EnvVar):  # used outside a run (the registry's command line)
            given = given.get_value("")
        return given or (spec.mlflow.tracking_uri if spec.mlflow else None) or None

    def log_versions(
        self, spec: DatasetSpec, registry, versions: list[str], in_use: str | None
    ) -> Mirrored:
        """Log each of `versions` (their cards and artifacts from `registry`) and point the
        champion alias at `in_use` when it is one of them."""
        uri = self.uri(spec)
        if uri is None:
            return Mirrored({})
        if down := _unreachable(uri):
            return Mirrored({}, down)
        out: dict[str, str] = {}
        try:
            mlflow = _client(uri)
            experiment = _experiment(mlflow, spec, self.artifact_root)
            for version in versions:
                out[version] = _log_version(mlflow, spec, registry, version, experiment)
            if in_use in out:
                _alias(mlflow, spec, out[in_use])
            return Mirrored(out)
        except Exception as err:  # a mirror never blocks the run; what was logged is said
            return Mirrored(out, _why(uri, err))

    def move_champion(self, spec: DatasetSpec, version: str) -> Mirrored:
        """Point the champion alias at the MLflow version of our `version` (a rollback)."""
        uri = self.uri(spec)
        if uri is None:
            return Mirrored({})
        if down := _unreachable(uri):
            return Mirrored({}, down)
        try:
            mlflow = _client(uri)
            client = mlflow.MlflowClient()
            found = client.search_model_versions(
                f"name = '{registered_name(spec)}' AND tags.{VERSION_TAG} = '{version}'"
            )
            if not found:
                return Mirrored(
                    {},
                    f"MLflow at {without_credentials(uri)} has no version tagged "
                    f"{VERSION_TAG}={version}: alias not moved",
                )
            _alias(mlflow, spec, found[0].version)
            return Mirrored({version: found[0].version})
        except Exception as err:
            return Mirrored({}, _why(uri, err))


def _unreachable(uri: str, timeout: float = 5.0) -> str | None:
    """Why a tracking server cannot be reached (None when it can, or the store is not a server).
    One TCP connect with a timeout: MLflow's client, once called, may wait minutes on a server
    that is down (its retries were seen to take 4 min 49 s under load despite QUICK_FAILURE)."""
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as err:
        return _why(uri, err)
    return None


def without_credentials(uri: str) -> str:
    """`uri` as metadata and logs may show it: a user name, password or token in it replaced
    by `***` (https://user:token@host/ -> https://***@host/), and a `token=` or `password=`
    query value too."""
    import re
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
    except ValueError:
        return "(a tracking URI that does not parse)"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = re.sub(r"(?i)((?:token|password|secret|key)[^=&]*=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _why(uri: str, err: Exception) -> str:
    shown = without_credentials(uri)
    if isinstance(err, ModuleNotFoundError) and err.name == "mlflow":
        return (
            f"MLflow at {shown} was not updated: mlflow is not installed. Fix: pip install -e "
            "'.[mlflow]', or unset MLFLOW_TRACKING_URI (our registry works without it)"
        )
    message = str(err)[:300].replace(uri, shown)
    if "@" in message:  # the client's own message may hold the URI in another form
        message = re.sub(r"//[^/@\s]+@", "//***@", message)
    return f"MLflow at {shown} was not updated ({type(err).__name__}: {message}); our registry is unaffected"


def registered_name(spec: DatasetSpec) -> str:
    return (spec.mlflow.registered_model if spec.mlflow else None) or spec.name


def _client(uri: str):
    for key, value in QUICK_FAILURE.items():
        os.environ.setdefault(key, value)
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow


def _experiment(mlflow, spec: DatasetSpec, artifact_root: str) -> str:
    name = (spec.mlflow.experiment if spec.mlflow else None) or spec.name
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    uri = mlflow.get_tracking_uri()
    local = uri.startswith(("sqlite:", "file:", "/", "./")) or Path(uri).exists()
    if artifact_root and local:
        # a local store's default is ./mlruns of the working directory: keep it with the data
        location = Path(artifact_root, name).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def _flat(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif value is not None:
        out[prefix] = str(value)[:500]


def _log_version(mlflow, spec: DatasetSpec, registry, version: str, experiment: str) -> str:
    card = registry.load_card(version)
    model, _ = registry.load_model(version)
    metrics = card.get("metrics") or {}
    intervals = metrics.get("intervals") or {}
    params: dict[str, str] = {}
    _flat("", card.get("params") or {}, params)
    params["threshold"] = str(metrics.get("threshold"))
    params["threshold_rule"] = card.get("threshold_rule_text", "")[:500]
    tags = {
        VERSION_TAG: version,
        "dataset": spec.name,
        "kind": card.get("kind", ""),
        "training_window": card.get("training_window") or "rolling",
        "train_window": card.get("train_window") or "",
        "test_window": card.get("test_window") or "",
        "input_data_versions": json.dumps(card.get("input_data_versions")),
        "code_version": card.get("code_version", ""),
        "promoted": str(bool((card.get("promotion") or {}).get("promote"))),
    }
    with mlflow.start_run(experiment_id=experiment, run_name=version, tags=tags) as run:
        mlflow.log_params(params)
        for key in HEADLINE_METRICS:
            if metrics.get(key) is not None:
                mlflow.log_metric(key, float(metrics[key]))
            if key in intervals:
                low, high = intervals[key]
                mlflow.log_metric(f"{key}_ci_low", float(low))
                mlflow.log_metric(f"{key}_ci_high", float(high))
        mlflow.log_dict(card, "model_card.json")
        markdown = registry.card_markdown_path(version)
        if markdown.exists():
            mlflow.log_text(markdown.read_text(), "model_card.md")
        # MLflow 3 saves sklearn models with skops and checks the types on load, as we do
        mlflow.sklearn.log_model(model.pipeline, name="model", skops_trusted_types=TRUSTED_TYPES)
        registered = mlflow.register_model(
            f"runs:/{run.info.run_id}/model", registered_name(spec), tags={VERSION_TAG: version}
        )
    return registered.version


def _alias(mlflow, spec: DatasetSpec, mlflow_version: str) -> None:
    mlflow.MlflowClient().set_registered_model_alias(
        registered_name(spec), CHAMPION_ALIAS, mlflow_version
    )
