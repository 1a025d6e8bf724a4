"""The environment read once into Settings: the profile picks each part's default."""

from __future__ import annotations

import dagster as dg
import pytest

from ml_assets.policies import model_search_executor
from ml_assets.settings import Settings, SettingsError


def test_the_profile_picks_the_warehouse_and_a_part_can_be_set_on_its_own(tmp_path):
    data = {"ML_ASSETS_DATA_DIR": str(tmp_path)}
    embedded = Settings.from_env(data)
    assert (embedded.profile, embedded.warehouse) == ("embedded", "duckdb")
    cluster = Settings.from_env({**data, "ML_ASSETS_PROFILE": "cluster"})
    assert (cluster.profile, cluster.warehouse) == ("cluster", "delta")
    assert cluster.lake_root == str(tmp_path / "lake")
    on_s3 = Settings.from_env(
        {**data, "ML_ASSETS_PROFILE": "cluster", "ML_ASSETS_LAKE_ROOT": "s3://lake/ml"}
    )
    assert on_s3.lake_root == "s3://lake/ml"
    # one part on its own: Delta tables on one machine, nothing else changed
    assert Settings.from_env({**data, "ML_ASSETS_WAREHOUSE": "delta"}).warehouse == "delta"


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"ML_ASSETS_PROFILE": "big"},
            r"ML_ASSETS_PROFILE='big': use one of \['embedded', 'cluster'\]",
        ),
        ({"ML_ASSETS_WAREHOUSE": "sqlite"}, r"ML_ASSETS_WAREHOUSE='sqlite': use one of"),
    ],
)
def test_an_unknown_choice_names_the_variable_and_the_choices(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_the_cluster_profile_splits_backfills_and_frees_daily_writers(tmp_path, monkeypatch):
    """On Delta tables, daily assets claim no pool (a day is one commit) and backfills run in
    chunks of days; the assets that replace whole tables still take one slot at a time."""
    from ml_assets.definitions import build_definitions

    def policies(env):
        defs = build_definitions(Settings.from_env({"ML_ASSETS_DATA_DIR": str(tmp_path), **env}))
        graph = defs.resolve_asset_graph()
        out = {}
        for name in ("raw_transactions", "features", "training_set", "model"):
            node = graph.get(dg.AssetKey(name))
            assets_def = node.assets_def
            out[name] = (assets_def.backfill_policy, {op.pool for op in [assets_def.op]})
        return out, defs.executor.name

    embedded, embedded_executor = policies({})
    assert embedded_executor == "in_process"
    assert embedded["features"] == (dg.BackfillPolicy.single_run(), {"warehouse"})
    assert embedded["model"][1] == {"warehouse"}
    cluster, cluster_executor = policies({"ML_ASSETS_PROFILE": "cluster"})
    assert cluster_executor == "celery"
    assert cluster["features"] == (dg.BackfillPolicy.multi_run(5), {None})
    assert cluster["raw_transactions"][1] == {None}
    assert cluster["training_set"][1] == cluster["model"][1] == {"warehouse_whole_tables"}
    two_days, _ = policies({"ML_ASSETS_PROFILE": "cluster", "ML_ASSETS_BACKFILL_DAYS_PER_RUN": "2"})
    assert two_days["features"][0] == dg.BackfillPolicy.multi_run(2)
    with pytest.raises(SettingsError, match="ML_ASSETS_BACKFILL_DAYS_PER_RUN='many'"):
        Settings.from_env({"ML_ASSETS_BACKFILL_DAYS_PER_RUN": "many"})
    # the model search runs as any run unless Kubernetes jobs are asked for (test_deploy)
    assert model_search_executor(Settings.from_env({"ML_ASSETS_PROFILE": "cluster"})) is None
    with pytest.raises(SettingsError, match=r"ML_ASSETS_MODEL_EXECUTOR='k8s'.*k8s_job"):
        Settings.from_env({"ML_ASSETS_MODEL_EXECUTOR": "k8s"})


def test_a_backup_takes_each_store_from_the_settings(tmp_path):
    """The files' object store, and the Delta tables' root only when the tables are Delta."""
    local = Settings.from_env({"ML_ASSETS_DATA_DIR": str(tmp_path)})
    assert local.backup_stores() == {"files_root": "", "lake_root": None}
    cluster = Settings.from_env(
        {
            "ML_ASSETS_PROFILE": "cluster",
            "ML_ASSETS_FILES_ROOT": "s3://b/files",
            "ML_ASSETS_LAKE_ROOT": "s3://b/lake",
        }
    )
    assert cluster.backup_stores() == {"files_root": "s3://b/files", "lake_root": "s3://b/lake"}
