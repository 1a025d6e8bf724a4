"""The model's input contract, as dagster-pandas DataFrame types derived from the spec.

A frame crosses into scikit-learn as pandas (transforms.train.to_model_input) in three places:
training and validation and testing (`model`), and scoring (`predictions`). Each is checked first
against this contract: every model input present with its type (numeric inputs as floats,
categorical ones as text; no null where the spec imputes), a categorical input holding only the spec's categories, its unknown
category, its imputed value or the model's missing marker, and for training the label in {0, 1}
and never null. A frame that breaks it fails the run with the check's message, which names the
column; the summary the type computes is shown in the UI with the materialization.
"""

from __future__ import annotations

import warnings

import dagster as dg
import pandas as pd
import polars as pl
from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type

from ml_assets.spec import DatasetSpec
from ml_assets.transforms.features import feature_columns
from ml_assets.transforms.train import MISSING_CATEGORY, to_model_input


def allowed_categories(spec: DatasetSpec, column: str) -> set[str] | None:
    """The values a categorical input may hold after cleaning; None when the spec lists none."""
    known = {c.name: c for c in spec.columns}
    col = known.get(column)
    if col is None or not col.categories:
        return None
    allowed = {*col.categories, MISSING_CATEGORY}
    if col.unknown_category:
        allowed.add(col.unknown_category)
    if col.impute.strategy == "constant":
        allowed.add(str(col.impute.value))
    return allowed


def _summary(frame) -> dict:
    return {
        "rows": dg.MetadataValue.int(len(frame)),
        "columns": dg.MetadataValue.int(len(frame.columns)),
        "missing_numeric_values": dg.MetadataValue.int(
            int(frame.select_dtypes("number").isna().sum().sum())
        ),
    }


def model_input_type(spec: DatasetSpec, labelled: bool) -> dg.DagsterType:
    """The DataFrame type of the model's input (`labelled`: with the label, as it trains)."""
    numeric, categorical = feature_columns(spec)
    imputed = {c.name for c in spec.columns if c.impute.strategy != "none"}
    # a spec column with an imputation rule has no null left; a derived input may (the first
    # event of an entity has no previous one), which the model's pipeline handles
    columns = [
        PandasColumn.float_column(
            name,
            non_nullable=name in imputed,
            ignore_missing_vals=name not in imputed,
            is_required=True,
        )
        for name in numeric
    ]
    for name in categorical:
        categories = allowed_categories(spec, name)
        columns.append(
            PandasColumn.categorical_column(name, categories, non_nullable=True, is_required=True)
            if categories
            else PandasColumn.string_column(name, non_nullable=True, is_required=True)
        )
    if labelled:
        columns.append(
            PandasColumn.integer_column(
                "label", min_value=0, max_value=1, non_nullable=True, is_required=True
            )
        )
    return create_dagster_pandas_dataframe_type(
        name=f"{spec.name}_{'labelled_' if labelled else ''}model_input",
        description=(
            f"What the {spec.name} model reads: {len(numeric)} numeric and {len(categorical)} "
            "categorical inputs" + (", and the label in {0, 1}" if labelled else "")
        ),
        columns=columns,
        metadata_fn=_summary,
    )


class ModelInputError(ValueError):
    pass


def check_model_input(
    spec: DatasetSpec, frame: pl.DataFrame, labelled: bool, what: str
) -> dict[str, dg.MetadataValue]:
    """Check the pandas frame the model will read from `frame` against the contract; raise
    ModelInputError naming the column and the fix, or return the type check's summary."""
    return checked_model_input(spec, frame, labelled, what)[1]


def checked_model_input(
    spec: DatasetSpec, frame: pl.DataFrame, labelled: bool, what: str
) -> tuple[pd.DataFrame, dict[str, dg.MetadataValue]]:
    """The pandas frame the model reads from `frame`, checked against the contract, and the type
    check's summary (scoring checks each batch it scores: one conversion, not two)."""
    numeric, categorical = feature_columns(spec)
    fix = (
        "Fix: the inputs come from `features` and the spec's columns (categories, imputation); "
        "re-materialize features for the days involved, or correct the spec"
    )
    needed = [*numeric, *categorical, *(["label"] if labelled else [])]
    missing = [c for c in needed if c not in frame.columns]
    not_numbers = [
        c
        for c in numeric
        if c in frame.columns and not frame[c].dtype.is_numeric() and frame[c].dtype != pl.Null
    ]
    if missing or not_numbers:
        problems = ([f"no column(s) {', '.join(missing)}"] if missing else []) + (
            [f"column(s) {', '.join(not_numbers)} not numeric"] if not_numbers else []
        )
        raise ModelInputError(
            f"{what} breaks the model's input contract: {'; '.join(problems)}. {fix}"
        )
    model_input = to_model_input(frame, numeric, categorical)
    if labelled:
        model_input["label"] = frame["label"].to_pandas()
    with warnings.catch_warnings():
        # dagster-pandas' column types are marked beta; the contract is ours to keep working
        warnings.simplefilter("ignore", dg.BetaWarning)
        check = dg.check_dagster_type(model_input_type(spec, labelled), model_input)
    if not check.success:
        # the check appends the offending rows: the column and the rule are what a person needs
        reason = (check.description or "").split("The offending")[0].strip().rstrip(".")
        raise ModelInputError(f"{what} breaks the model's input contract: {reason}. {fix}")
    return model_input, {f"model_input_{k}": v for k, v in (check.metadata or {}).items()}


def combined_summary(summaries: list[dict[str, dg.MetadataValue]]) -> dict[str, dg.MetadataValue]:
    """The summaries of the batches of one frame as one: counts add up, the column count stays."""
    combined = dict(summaries[0])
    for key in ("model_input_rows", "model_input_missing_numeric_values"):
        combined[key] = dg.MetadataValue.int(sum(s[key].value for s in summaries))
    return combined
