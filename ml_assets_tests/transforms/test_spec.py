"""The dataset spec: the example loads, a second shape loads, and mistakes get clear errors."""

from __future__ import annotations

import pytest
import yaml

from ml_assets.spec import DEFAULT_SPEC_PATH, SpecError, load_spec
from ml_assets_tests.conftest import FIXTURES


def test_example_spec_is_the_default(monkeypatch):
    monkeypatch.delenv("ML_ASSETS_SPEC", raising=False)
    spec = load_spec()
    assert spec.source_path == str(DEFAULT_SPEC_PATH.resolve())
    assert spec.id_column == "transaction_id" and spec.entity_column == "customer_id"
    assert spec.personal_columns == ["customer_name", "customer_email", "card_number"]
    assert spec.sensitive_columns == ["age_band"]
    assert spec.feature_history_days == 7


def test_environment_variable_selects_another_spec(monkeypatch):
    monkeypatch.setenv("ML_ASSETS_SPEC", str(FIXTURES / "readings.yaml"))
    spec = load_spec()
    assert spec.name == "readings" and spec.entity_column is None
    assert spec.categorical_columns == [] and spec.numeric_columns == [
        "temperature",
        "pressure",
        "vibration",
    ]
    assert spec.feature_history_days == 0


def broken(tmp_path, mutate) -> str:
    raw = yaml.safe_load(DEFAULT_SPEC_PATH.read_text())
    mutate(raw)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r["columns"].pop(0), r"one column needs role 'id'"),
        (
            lambda r: r["landing"].update(pattern="tx.csv"),
            r"landing: .*must contain '\{date\}'",
        ),
        (
            lambda r: r["labels"].update(event_id_column="tx"),
            r"labels.event_id_column 'tx' is not one of labels.columns",
        ),
        (
            lambda r: r["columns"][4].update(type="money"),
            r"columns.4.type: Input should be 'string'",
        ),
        (
            lambda r: r["columns"][4]["range"].update(min=5, max=1),
            r"range.min \(5.0\) is greater than range.max",
        ),
        (lambda r: r.update(colour="blue"), r"colour: Extra inputs are not permitted"),
        (
            lambda r: r["features"]["rolling"].update(windows=["1 week"]),
            r"rolling window '1 week' must look like",
        ),
        (
            lambda r: r["annotation"].update(landing={"partition_by": "file_name"}),
            r"annotation.landing.partition_by: Input should be 'event_time'",
        ),
        (
            lambda r: r["label_quality"].update(min_positive_rate=0.5, max_positive_rate=0.1),
            r"label_quality: .*min_positive_rate must not be above max_positive_rate",
        ),
    ],
)
def test_invalid_spec_errors_name_the_file_and_field(tmp_path, mutate, message):
    path = broken(tmp_path, mutate)
    with pytest.raises(SpecError, match=message) as err:
        load_spec(path)
    assert path in str(err.value)


def test_missing_spec_file_says_how_to_fix(tmp_path):
    with pytest.raises(SpecError, match=r"does not exist; set ML_ASSETS_SPEC"):
        load_spec(tmp_path / "nope.yaml")
