"""Quoting for the few places that must write a name or a constant into SQL text.

Values always travel as parameters. What cannot be a parameter (a column or schema name, a
setting, a time zone name in a function call) goes through these two functions only, so a name
that came from outside (a header, a file name) can never end the string it sits in.
"""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """`name` as a DuckDB identifier: in double quotes, its own double quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """`text` as a DuckDB string constant: in single quotes, its own single quotes doubled."""
    return "'" + text.replace("'", "''") + "'"
