"""The model's input contract (dagster-pandas types from the spec) on small frames."""

from __future__ import annotations

import polars as pl
import pytest

from ml_assets.contracts import ModelInputError, allowed_categories, check_model_input
from ml_assets.spec import load_spec
from ml_assets.transforms.features import feature_columns

SPEC = load_spec()


def model_frame(rows: int = 4) -> pl.DataFrame:
    numeric, categorical = feature_columns(SPEC)
    columns = {name: [float(i) for i in range(rows)] for name in numeric}
    for name in categorical:
        allowed = sorted(allowed_categories(SPEC, name) or {"any"})
        columns[name] = [allowed[i % len(allowed)] for i in range(rows)]
    return pl.DataFrame(columns).with_columns(label=pl.Series([0, 1] * (rows // 2), dtype=pl.Int8))


def test_a_frame_within_the_contract_passes_with_its_summary():
    summary = check_model_input(SPEC, model_frame(), labelled=True, what="training set")
    assert summary["model_input_rows"].value == 4


def test_the_spec_decides_the_categories_a_model_input_may_hold():
    channel = allowed_categories(SPEC, "channel")
    assert {"pos", "online", "atm", "other", "unknown"} <= channel
    assert "bitcoin" not in channel


@pytest.mark.parametrize(
    "broken, column",
    [
        (pl.lit("bitcoin").alias("channel"), "channel"),
        (pl.col("label").replace({1: 2}), "label"),
        (pl.lit("a lot").alias("amount"), "amount"),
    ],
)
def test_a_frame_that_breaks_the_contract_fails_naming_the_column(broken, column):
    frame = model_frame().with_columns(broken)
    with pytest.raises(ModelInputError, match=rf"(?s)training set breaks .*{column}.*Fix:"):
        check_model_input(SPEC, frame, labelled=True, what="training set")


def test_derived_inputs_may_be_null_imputed_ones_may_not():
    with_gaps = model_frame().with_columns(
        pl.lit(None, pl.Float64).alias("customer_id_seconds_since_previous")
    )
    assert check_model_input(SPEC, with_gaps, labelled=True, what="training set")
    with pytest.raises(ModelInputError, match="amount"):
        check_model_input(
            SPEC, with_gaps.with_columns(pl.lit(None, pl.Float64).alias("amount")), True, "x"
        )


def test_scoring_needs_no_label_but_every_input():
    frame = model_frame().drop("label")
    assert check_model_input(SPEC, frame, labelled=False, what="features")
    with pytest.raises(ModelInputError, match="amount"):
        check_model_input(SPEC, frame.drop("amount"), labelled=False, what="features")


def test_the_summaries_of_a_frame_checked_in_batches_add_up():
    from ml_assets.contracts import checked_model_input, combined_summary

    # a derived input may be null (the first event of a customer): two nulls, one per batch
    gaps = pl.Series([None, 1.0, 2.0, 3.0, None, 4.0], dtype=pl.Float64)
    frame = model_frame(6).drop("label").with_columns(customer_id_seconds_since_previous=gaps)
    batches = [checked_model_input(SPEC, part, False, "features") for part in frame.iter_slices(4)]
    assert [len(model_input) for model_input, _ in batches] == [4, 2]
    combined = combined_summary([summary for _, summary in batches])
    assert combined["model_input_rows"].value == 6
    assert combined["model_input_missing_numeric_values"].value == 2
