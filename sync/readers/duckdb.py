"""Reading segments built by dbt-duckdb: attach the database file read-only."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import duckdb

from sync.core.errors import ConfigError
from sync.core.sql import qi, ql
from sync.readers.base import RelationRef, select_declared

_aliases = itertools.count()


class DuckDBReader:
    """Reads from the DuckDB file of the dbt profile's target."""

    def __init__(self, database_path: str | Path):
        self.database_path = Path(database_path)
        self._attached: dict[int, str] = {}  # id(connection's database) -> alias

    def preflight(self) -> None:
        """The database file must exist before any segment is read: its absence is a configuration error (exit 2),
        not one failure per segment."""
        if not self.database_path.is_file():
            raise ConfigError(
                f"DuckDB database {self.database_path} does not exist: run `dbt build` (or `lakeseg run`) first"
            )

    def _alias(self, con: duckdb.DuckDBPyConnection) -> str:
        key = id(con)
        if key not in self._attached:
            self.preflight()
            alias = f"lakeseg_src_{next(_aliases)}"
            con.execute(f"attach {ql(str(self.database_path))} as {alias} (read_only)")
            self._attached[key] = alias
            self._con = con
        return self._attached[key]

    def stage(
        self, con: duckdb.DuckDBPyConnection, relation: RelationRef, columns: Sequence[str], workdir: Path
    ) -> str:
        alias = self._alias(con)
        actual = [
            r[0]
            for r in con.execute(
                "select column_name from information_schema.columns "
                "where table_catalog = ? and table_schema = ? and table_name = ? order by ordinal_position",
                [alias, relation.schema, relation.identifier],
            ).fetchall()
        ]
        if not actual:
            raise ConfigError(f"{relation} is not in {self.database_path}: run `dbt build` for this segment")
        table = f"{alias}.{qi(relation.schema)}.{qi(relation.identifier)}"
        return f"(select {select_declared(actual, columns, relation)} from {table})"

    def stats_for(self, relation: RelationRef) -> dict | None:
        """A local read is not billed: nothing to report."""
        return None

    def notes_for(self, relation: RelationRef) -> list[str]:
        return []

    def cleanup(self) -> None:
        for alias in self._attached.values():
            try:
                self._con.execute(f"detach {alias}")
            except duckdb.Error:
                pass  # the connection may be closed already
        self._attached.clear()
