"""The environment read once into Settings: the profile picks each part's default."""

from __future__ import annotations

import pytest

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
