"""Quoting for SQL (DuckDB, and Athena's Trino: both quote the standard way): the one place identifiers
and string literals are quoted.

No value from settings, a manifest or a segment is ever pasted into SQL unquoted.
"""

from __future__ import annotations


def qi(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def ql(value: str) -> str:
    """Quote a string literal for DuckDB."""
    return "'" + str(value).replace("'", "''") + "'"
