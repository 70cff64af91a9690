"""How the sync reads a built segment: one small interface per warehouse.

A reader makes a segment model's table readable inside the sync's DuckDB
connection (where the diff runs) and returns a SQL relation expression. The
expression yields exactly the requested columns under the *declared* names,
whatever case the warehouse reports them in (Athena lowercases identifiers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import duckdb

from sync.core.errors import ConfigError
from sync.core.sql import qi


@dataclass(frozen=True)
class RelationRef:
    """Where dbt built a model (from the manifest node)."""

    database: str | None
    schema: str
    identifier: str

    @classmethod
    def from_node(cls, node: dict) -> RelationRef:
        return cls(node.get("database"), node["schema"], node.get("alias") or node["name"])

    def __str__(self) -> str:
        return ".".join(p for p in (self.database, self.schema, self.identifier) if p)


class SegmentReader(Protocol):
    """Reads built segment tables for the diff engine."""

    def stage(
        self,
        con: duckdb.DuckDBPyConnection,
        relation: RelationRef,
        columns: Sequence[str],
        workdir: Path,
    ) -> str:
        """Make ``relation`` readable in ``con``; return a SQL relation expression.

        The expression selects ``columns`` (declared names, matched
        case-insensitively against the warehouse) and nothing else. Anything
        written under ``workdir`` or remotely is removed by ``cleanup``.
        """

    def cleanup(self) -> None:
        """Remove whatever ``stage`` wrote (temporary files, S3 prefixes)."""


def select_declared(actual: Sequence[str], columns: Sequence[str], relation: RelationRef | str) -> str:
    """A select list yielding ``columns`` (declared names) from a relation whose
    columns are ``actual``, matched case-insensitively."""
    by_lower = {a.lower(): a for a in actual}
    picked = []
    for col in columns:
        found = by_lower.get(col.lower())
        if found is None:
            raise ConfigError(f"{relation} has no column matching '{col}' (has: {', '.join(actual)})")
        picked.append(f"{qi(found)} as {qi(col)}")
    return ", ".join(picked)
