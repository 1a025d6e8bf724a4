"""Cleaning rules on three-row frames: dedup, categories, ranges, imputation, pseudonyms."""

from __future__ import annotations

import polars as pl
import pytest

from ml_assets.spec import Column
from ml_assets.transforms.clean import clean, deduplicate
from ml_assets.transforms.privacy import keyed_pseudonymizer

KEY = "a-test-key-with-enough-entropy-42"


def cols(*columns: dict) -> list[Column]:
    return [Column.model_validate(c) for c in columns]


def test_deduplicate_keeps_first_per_id():
    frame = pl.DataFrame({"id": ["a", "a", "b"], "v": [1, 2, 3]})
    out, removed = deduplicate(frame, "id")
    assert out.to_dict(as_series=False) == {"id": ["a", "b"], "v": [1, 3]} and removed == 1


def test_deduplicate_without_id_uses_whole_rows():
    frame = pl.DataFrame({"x": [1, 1, 1], "y": [2, 2, 3]})
    assert deduplicate(frame, None)[1] == 1


def test_categories_ranges_and_imputation_follow_the_spec():
    spec_cols = cols(
        {"name": "id", "type": "string", "role": "id"},
        {
            "name": "amount",
            "type": "float",
            "role": "numeric",
            "range": {"min": 0, "max": 100, "action": "null"},
            "impute": {"strategy": "median"},
        },
        {
            "name": "score",
            "type": "int",
            "role": "numeric",
            "range": {"min": 0, "max": 10, "action": "clip"},
        },
        {
            "name": "cat",
            "type": "string",
            "role": "categorical",
            "categories": ["a", "b"],
            "unknown_category": "other",
            "impute": {"strategy": "constant", "value": "missing"},
        },
    )
    frame = pl.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "amount": [10.0, -5.0, None, 30.0],
            "score": [-3, 5, 42, 1],
            "cat": ["a", "zzz", None, " b "],
        }
    )
    out, stats = clean(frame, spec_cols, "id")
    # -5 is out of range -> null, then nulls take the median of the remaining values (10, 30)
    assert out["amount"].to_list() == [10.0, 20.0, 20.0, 30.0]
    assert out["score"].to_list() == [0, 5, 10, 1] and out["score"].dtype == pl.Int64
    assert out["cat"].to_list() == ["a", "other", "missing", "b"]
    assert stats["out_of_range:amount"] == 1 and stats["out_of_range:score"] == 2
    assert (
        stats["unknown_category:cat"] == 1
        and stats["imputed:amount"] == 2
        and stats["imputed:cat"] == 1
    )
    assert stats["rows_in"] == stats["rows_out"] == 4


def test_drop_row_imputation_drops_and_counts():
    spec_cols = cols(
        {"name": "v", "type": "float", "role": "numeric", "impute": {"strategy": "drop_row"}}
    )
    out, stats = clean(pl.DataFrame({"v": [1.0, None, 3.0]}), spec_cols, None)
    assert out["v"].to_list() == [1.0, 3.0] and stats["rows_dropped_missing"] == 1


def test_pseudonyms_are_keyed_stable_and_hide_the_value():
    values = pl.Series(["Anna Müller", "José García", "Anna Müller", None])
    first = keyed_pseudonymizer(KEY)(values)
    assert first[0] == first[2] and first[0] != first[1] and first[3] is None
    assert keyed_pseudonymizer(KEY)(values).to_list() == first.to_list()
    assert keyed_pseudonymizer("another-key-0123456789")(values)[0] != first[0]
    assert "Anna" not in "".join(first.drop_nulls())


def test_short_or_missing_key_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="ML_ASSETS_PSEUDONYM_KEY"):
        keyed_pseudonymizer("short")


def test_not_finite_amounts_are_counted_apart_from_out_of_range():
    spec_cols = cols(
        {
            "name": "amount",
            "type": "float",
            "role": "numeric",
            "range": {"min": 0, "max": 20000, "action": "null"},
            "impute": {"strategy": "median"},
        }
    )
    frame = pl.DataFrame(
        {"amount": [float("nan"), float("inf"), float("-inf"), 1e308, 10.0, 30.0, None]}
    )
    out, stats = clean(frame, spec_cols, None)
    assert stats["not_finite:amount"] == 3 and stats["out_of_range:amount"] == 1
    assert stats["imputed:amount"] == 5  # nan, inf, -inf, 1e308 and the missing one
    assert out["amount"].to_list() == [20.0] * 4 + [10.0, 30.0, 20.0]


def test_category_variants_are_normalised_and_each_normalisation_is_counted():
    spec_cols = cols(
        {
            "name": "cat",
            "type": "string",
            "role": "categorical",
            "categories": ["grocery", "electronics", "café"],
            "unknown_category": "other",
        }
    )
    values = [
        "grocery",
        "GROCERY",  # case
        "ｇｒｏｃｅｒｙ",  # full-width: NFKC
        "gro\u200bcery",  # zero-width space
        "\ufeffelectronics",  # byte-order mark
        "grocéry",  # an accent the category does not have
        "cafe",  # an accent the category has
        "Électronics",  # case and accent
        "pharmacy",  # really unknown
    ]
    out, stats = clean(pl.DataFrame({"cat": values}), spec_cols, None)
    assert out["cat"].to_list() == [
        "grocery",
        "grocery",
        "grocery",
        "grocery",
        "electronics",
        "grocery",
        "café",
        "electronics",
        "other",
    ]
    assert stats["normalized_case:cat"] == 1
    assert stats["normalized_unicode:cat"] == 1
    assert stats["normalized_invisible:cat"] == 2
    assert stats["normalized_accents:cat"] == 3
    assert stats["unknown_category:cat"] == 1
