"""How frames cross between DuckDB and polars without a copy of their strings.

polars keeps strings as Arrow string views; DuckDB by default hands results over, and reads a
registered polars frame, as classic Arrow strings, so every crossing converted (copied) every
string column. At 5M rows a day that was 1.3 GB more for a write (the frame converted whole even
for the `LIMIT 0` that creates a table) and 0.45 GB more for a read, and the freed buffers stay
with DuckDB's allocator. Measured in docs/benchmarks.md ("Close to the limit").
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

# results as string views (Arrow format 1.5), which polars takes as they are
DUCKDB_CONFIG = {"arrow_output_version": "1.5", "produce_arrow_string_view": True}


def for_duckdb(frame: pl.DataFrame) -> pa.Table:
    """`frame` as an Arrow table sharing its buffers, string views included, to register in
    DuckDB (registering the polars frame itself converts every string column)."""
    return frame.to_arrow(compat_level=pl.CompatLevel.newest())
