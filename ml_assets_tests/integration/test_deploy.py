"""What can be checked of the Kubernetes deployment without a cluster or Docker: the Helm
values' run launcher and compute log settings against dagster-k8s' and dagster-aws' config
schemas, and the image's entry point run as it is, here, until it serves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ml_assets.devserver import free_port, stop_process_group

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VALUES = ROOT / "deploy/k8s/values.yaml"
DOCKERFILE = ROOT / "deploy/Dockerfile"


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def chart_run_launcher_config(values: dict) -> dict:
    """The instance's run_launcher config the chart writes from the values (camelCase to
    snake_case for the keys used), with what the chart fills in itself."""
    given = values["runLauncher"]["config"]["k8sRunLauncher"]
    config = {snake(k): v for k, v in given.items()}
    # the chart's template writes the secrets' names (the values give {name: ...} objects)
    if "env_secrets" in config:
        config["env_secrets"] = [s["name"] for s in config["env_secrets"]]
    if "run_k8s_config" in config:
        config["run_k8s_config"] = {snake(k): v for k, v in config["run_k8s_config"].items()}
    config.update(
        instance_config_map="ml-assets-dagster-instance",  # the chart's own config map
        service_account_name="ml-assets-dagster",
        postgres_password_secret="ml-assets-postgresql-secret",
        dagster_home="/opt/dagster/dagster_home",
    )
    return config


def test_the_helm_values_fit_dagster_k8s_and_dagster_aws_config_schemas():
    pytest.importorskip("dagster_k8s", reason="dagster-k8s is not installed (cluster extra)")
    from dagster._config import process_config
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_k8s import K8sRunLauncher

    values = yaml.safe_load(VALUES.read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = process_config(K8sRunLauncher.config_type(), chart_run_launcher_config(values))
    assert launcher.success, launcher.errors
    assert launcher.value["env_secrets"] == ["ml-assets-secrets"]
    logs = {
        snake(k): v for k, v in values["computeLogManager"]["config"]["s3ComputeLogManager"].items()
    }
    checked = process_config(S3ComputeLogManager.config_type(), logs)
    assert checked.success, checked.errors
    # the check can fail: a misspelt key is refused
    wrong = {**chart_run_launcher_config(values), "env_secret": ["x"]}
    assert not process_config(K8sRunLauncher.config_type(), wrong).success
    # the user deployment runs the image's code location, in the cluster profile
    deployment = values["dagster-user-deployments"]["deployments"][0]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["ML_ASSETS_PROFILE"] == "cluster" and env["ML_ASSETS_EXECUTOR"] == "in_process"
    assert deployment["dagsterApiGrpcArgs"] == entry_point()[-2:]


def test_the_model_search_runs_each_step_in_a_kubernetes_job_of_its_size(tmp_path, monkeypatch):
    """With the values' environment, the retraining sensor starts the model search job, whose
    executor is dagster-k8s' k8s_job_executor (every other run stays in its one pod), and the
    step Job it would create carries the pod size the values ask for."""
    pytest.importorskip("dagster_k8s", reason="dagster-k8s is not installed (cluster extra)")
    import kubernetes
    from dagster._config import process_config
    from dagster_k8s import k8s_job_executor
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
    )

    from ml_assets.definitions import build_definitions

    deployment = yaml.safe_load(VALUES.read_text())["dagster-user-deployments"]["deployments"][0]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # the stores stay local: building the definitions reaches no service
    for name in ("ML_ASSETS_SPEC", "ML_ASSETS_LAKE_ROOT", "ML_ASSETS_FILES_ROOT"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("ML_ASSETS_DATA_DIR", str(tmp_path))
    defs = build_definitions()
    job = defs.resolve_job_def("model_search")
    assert defs.resolve_sensor_def("retraining").job_name == "model_search"
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {
        "training_set",
        "model",
    }
    assert defs.resolve_job_def("__ASSET_JOB").executor_def.name == "in_process"
    config = job.executor_def.config_schema.resolve_config({})
    assert config.success, config.errors
    executor_config = config.value["config"]
    checked = process_config(k8s_job_executor.config_schema.as_field().config_type, executor_config)
    assert checked.success, checked.errors
    step = executor_config["step_k8s_config"]
    pod = construct_dagster_k8s_job(
        DagsterK8sJobConfig(
            job_image=f"{deployment['image']['repository']}:{deployment['image']['tag']}",
            dagster_home="/opt/dagster/dagster_home",
            instance_config_map="ml-assets-dagster-instance",
        ),
        ["dagster", "api", "execute_step"],
        "dagster-step-model",
        UserDefinedDagsterK8sConfig.from_dict(step),
        component="step_worker",
    )
    manifest = kubernetes.client.ApiClient().sanitize_for_serialization(pod)
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    assert manifest["kind"] == "Job"
    assert container["resources"]["requests"] == {
        "cpu": env["ML_ASSETS_MODEL_POD_CPU"],
        "memory": env["ML_ASSETS_MODEL_POD_MEMORY"],
    }
    # the check can fail: an executor setting dagster-k8s does not know is refused
    assert not process_config(
        k8s_job_executor.config_schema.as_field().config_type, {**executor_config, "pods": 2}
    ).success


def entry_point() -> list[str]:
    cmd = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("CMD ")]
    assert len(cmd) == 1
    return json.loads(cmd[0][len("CMD ") :])


def image_env() -> dict[str, str]:
    """The ENV the Dockerfile sets (KEY=value pairs over its continued ENV lines)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            line = re.sub(r"#[^\n]*?(?=\s+[A-Z_]+=|$)", "", line)
            env.update(re.findall(r"([A-Z_]+)=(\S+)", line))
    return env


def test_the_image_entry_point_serves_the_code_location(tmp_path):
    """The Dockerfile's CMD, run here without Docker (its host and port made local), serves the
    code location in the cluster profile: the gRPC health check answers SERVING."""
    pytest.importorskip("deltalake", reason="the cluster extra is not installed")
    cmd = entry_point()
    assert cmd[:3] == ["dagster", "code-server", "start"]
    port = free_port()
    args = [str(BIN / cmd[0]), *cmd[1:]]
    args[args.index("-h") + 1] = "127.0.0.1"
    args[args.index("-p") + 1] = str(port)
    env = {**os.environ, **image_env()}
    assert env["ML_ASSETS_PROFILE"] == "cluster"
    env.update(
        DAGSTER_HOME=str(tmp_path / "home"),
        ML_ASSETS_DATA_DIR=str(tmp_path / "scratch"),
        ML_ASSETS_LAKE_ROOT=str(tmp_path / "lake"),
    )
    (tmp_path / "home").mkdir()
    log = tmp_path / "code_server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            args,
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            check = subprocess.run(
                [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)],
                capture_output=True,
                text=True,
                env=env,
            )
            if check.returncode == 0:
                break
            assert time.monotonic() < deadline, log.read_text()[-3000:] + check.stderr
            time.sleep(1)
        assert "Error" not in log.read_text()
    finally:
        stop_process_group(server, grace=10)


def test_no_password_in_the_deployment_and_the_code_server_is_fenced():
    values = yaml.safe_load(VALUES.read_text())
    postgres = values["postgresql"]
    assert "postgresqlPassword" not in postgres and not postgres["generatePostgresqlPasswordSecret"]
    text = "\n".join(p.read_text() for p in (ROOT / "deploy").rglob("*") if p.is_file())
    assert "change-me" not in text
    policy = yaml.safe_load((ROOT / "deploy/k8s/networkpolicy.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert policy["kind"] == "NetworkPolicy"
    assert policy["spec"]["podSelector"]["matchLabels"]["deployment"] == deployment["name"]
    (rule,) = policy["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [deployment["port"]]
    allowed = {f["podSelector"]["matchLabels"]["component"] for f in rule["from"]}
    assert allowed == {"dagster-webserver", "dagster-daemon"}


def test_credentials_in_a_tracking_uri_never_reach_metadata_or_logs():
    from ml_assets.storage.mlflow_mirror import _why, without_credentials

    uri = "https://alice:s3cr3t-token@mlflow.example.com/api?token=abc&x=1"
    shown = without_credentials(uri)
    assert "s3cr3t" not in shown and "alice" not in shown and "abc" not in shown
    assert shown == "https://***@mlflow.example.com/api?token=***&x=1"
    why = _why(uri, ConnectionError(f"cannot reach {uri}"))
    assert "s3cr3t" not in why and "mlflow.example.com" in why


def test_the_state_outlives_the_pods_on_a_volume_every_pod_mounts():
    """Audit log, erasure ledger, a stopped erasure's record and snapshots (ML_ASSETS_STATE_DIR)
    are on the ReadWriteMany claim of state-volume.yaml, mounted where the image and the code
    server say, in the code server and in every run pod; not in a pod's scratch."""
    values = yaml.safe_load(VALUES.read_text())
    claim = yaml.safe_load((ROOT / "deploy/k8s/state-volume.yaml").read_text())
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on any node
    deployment = values["dagster-user-deployments"]["deployments"][0]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    image_env = dict(re.findall(r"(ML_ASSETS_\w+)=(\S+)", DOCKERFILE.read_text()))
    state = env["ML_ASSETS_STATE_DIR"]
    assert image_env["ML_ASSETS_STATE_DIR"] == state != image_env["ML_ASSETS_DATA_DIR"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for pod in (deployment, launcher):
        (volume,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        mounts = {m["mountPath"] for m in pod["volumeMounts"] if m["name"] == volume["name"]}
        assert mounts == {state}
