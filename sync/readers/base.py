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
    """Reads built segment tables for the diff engine, and everything the sync asks of a reader.

    Every reader states each capability, even as none (a ``notes_for`` that has nothing to say): the sync
    calls them directly and refuses a reader that lacks one (``sync.core.capabilities.require``).
    """

    def preflight(self) -> None:
        """Before any segment is read: raise ``ConfigError`` if the reader cannot read at all (no database)."""

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

    def stats_for(self, relation: RelationRef) -> dict | None:
        """What reading ``relation`` cost, once staged (``data_scanned_bytes``), or None if not known."""

    def notes_for(self, relation: RelationRef) -> list[str]:
        """Lines for the run report about reading ``relation`` (a query id, bytes scanned), or none."""

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
