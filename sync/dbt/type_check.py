"""Offline type check of the models' Athena SQL.

Reads a manifest compiled for the athena target (``dbt compile --target
athena``), resolves every model's compiled SQL with sqlglot in the Trino dialect
(``qualify`` + ``annotate_types``) against

* the sources' declared Athena types (``data_type`` in ``_staging__sources.yml``),
* the output types of the upstream models, checked first (dependency order),

and reports, naming model and column:

* a column whose type cannot be resolved (undeclared source column, unknown
  function result, ...),
* struct (dot) access on a map -- the real DUE ``session`` is a
  ``map<string,string>``: ``session.session_id`` fails on Athena with "not of
  type ROW",
* a comparison between incompatible types (text with a number or a time, ...).

No engine runs: this catches what DuckDB lets through (it accepts dot access on
a map) before Athena bills for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from sync.core.errors import LakesegError

DIALECT = "trino"

T = exp.DataType.Type
FAMILIES = {
    "text": {T.VARCHAR, T.CHAR, T.TEXT, T.NVARCHAR, T.NCHAR},
    "number": exp.DataType.NUMERIC_TYPES,
    "time": exp.DataType.TEMPORAL_TYPES,
    "boolean": {T.BOOLEAN},
}
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)


class TypeCheckFailed(LakesegError):
    """The compiled SQL of one or more models does not type-check."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("type check failed:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Problem:
    model: str
    column: str
    message: str

    def __str__(self) -> str:
        return f"{self.model}: column {self.column}: {self.message}"


def _annotate_bracket(annotator, expression: exp.Bracket) -> exp.Bracket:
    """m['k'] / element_at(m, 'k') on a map is the map's value type (sqlglot
    only knows it for map literals); other cases as sqlglot does them."""
    this_type = expression.this.type
    if this_type is not None and this_type.is_type(T.MAP) and len(this_type.expressions) == 2:
        annotator._set_type(expression, this_type.expressions[1])
        return expression
    return annotator._annotate_bracket(expression)


def _metadata() -> dict:
    base = Dialect.get_or_raise(DIALECT).EXPRESSION_METADATA
    return {**base, exp.Bracket: {"annotator": _annotate_bracket}}


def _family(dtype: exp.DataType | None) -> str | None:
    if dtype is None:
        return None
    for name, types in FAMILIES.items():
        if dtype.this in types:
            return name
    return None


def _name(node: exp.Expression) -> str:
    return node.sql(DIALECT)


def _table_parts(relation_name: str) -> tuple[str, ...]:
    table = exp.to_table(relation_name, dialect=DIALECT)
    return tuple(p.name for p in table.parts)


class TypeChecker:
    """Checks models one at a time, registering each one's output types for its dependants."""

    def __init__(self) -> None:
        self.schema = MappingSchema(dialect=DIALECT, normalize=False)
        self.metadata = _metadata()

    def add_table(self, relation_name: str, columns: Mapping[str, exp.DataType | str]) -> None:
        parts = _table_parts(relation_name)
        self.schema.add_table(
            exp.table_(
                parts[-1], db=parts[-2] if len(parts) > 1 else None, catalog=parts[-3] if len(parts) > 2 else None
            ),
            {k.lower(): v for k, v in columns.items()},
            dialect=DIALECT,
        )

    def add_source(self, relation_name: str, declared: dict[str, str]) -> None:
        """A source table with its declared Athena (Hive DDL) column types."""
        self.add_table(relation_name, {c: exp.DataType.build(t, dialect="hive") for c, t in declared.items()})

    def check_model(self, model: str, relation_name: str, sql: str) -> list[Problem]:
        try:
            tree = sqlglot.parse_one(sql, dialect=DIALECT)
            tree = qualify(
                tree,
                schema=self.schema,
                dialect=DIALECT,
                validate_qualify_columns=True,
                quote_identifiers=False,
                identify=False,
            )
            tree = annotate_types(tree, schema=self.schema, expression_metadata=self.metadata, dialect=DIALECT)
        except SqlglotError as e:
            found = re.search(r"Column '([^']+)'", str(e))
            column = found.group(1) if found else "?"
            return [Problem(model, column, f"cannot be resolved: not declared in the sources or upstream models ({e})")]
        problems: list[Problem] = []
        for node in tree.walk():
            problems.extend(self._check_node(model, node))
        outputs: dict[str, exp.DataType] = {}
        for select in cast(exp.Query, tree).selects:  # a model is one query
            name = select.alias_or_name
            if select.type is None or select.type.is_type(T.UNKNOWN):
                problems.append(Problem(model, name, "its type cannot be resolved from the declared sources"))
            outputs[name] = select.type or exp.DataType.build("unknown")
        self.add_table(relation_name, outputs)
        # Struct access on a map and bad comparisons first: they are the causes.
        return sorted(_unique(problems), key=lambda p: "cannot be resolved" in p.message)

    def _check_node(self, model: str, node: exp.Expr) -> list[Problem]:
        if isinstance(node, exp.Dot) and node.this.type is not None and node.this.type.is_type(T.MAP):
            return [
                Problem(
                    model,
                    _name(node),
                    f"struct access on a map: {_name(node.this)} is "
                    f"{node.this.type.sql(DIALECT)}; read a key with element_at "
                    f"(macro map_value), not with '.'",
                )
            ]
        if isinstance(node, exp.Column) and (node.type is None or node.type.is_type(T.UNKNOWN)):
            return [Problem(model, _name(node), "its type cannot be resolved (is it declared with a data_type?)")]
        if isinstance(node, COMPARISONS):
            left_type, right_type = node.left.type, node.right.type
            left, right = _family(left_type), _family(right_type)
            if left and right and left != right:
                assert left_type is not None and right_type is not None  # an untyped side has no family
                return [
                    Problem(model, _name(node), f"compares {left_type.sql(DIALECT)} with {right_type.sql(DIALECT)}")
                ]
        return []


def _unique(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.model, p.column, p.message) not in seen:
            seen.add((p.model, p.column, p.message))
            out.append(p)
    return out


def _ordered_models(nodes: dict) -> list[dict]:
    models = {uid: n for uid, n in nodes.items() if n.get("resource_type") == "model"}
    done: set[str] = set()
    order: list[dict] = []

    def visit(uid: str, stack: tuple = ()) -> None:
        if uid in done or uid not in models:
            return
        for dep in models[uid]["depends_on"]["nodes"]:
            if dep not in stack:
                visit(dep, stack + (uid,))
        done.add(uid)
        order.append(models[uid])

    for uid in sorted(models):
        visit(uid)
    return order


def check_manifest(manifest: dict) -> list[Problem]:
    """Every model of a manifest compiled for the athena target; [] when all type-check."""
    checker = TypeChecker()
    problems: list[Problem] = []
    for source in manifest["sources"].values():
        declared = {c: col.get("data_type") for c, col in source["columns"].items()}
        for column, data_type in declared.items():
            if not data_type:
                problems.append(
                    Problem(f"source {source['source_name']}.{source['name']}", column, "declared without a data_type")
                )
        checker.add_source(source["relation_name"], {c: t for c, t in declared.items() if t})
    failed: set[str] = set()
    for node in _ordered_models(manifest["nodes"]):
        if failed & set(node["depends_on"]["nodes"]):
            failed.add(node["unique_id"])  # reported at its failing upstream model
            continue
        sql = node.get("compiled_code")
        if sql is None:
            raise LakesegError(f"model {node['name']} has no compiled SQL: run `dbt compile --target athena` first")
        found = checker.check_model(node["name"], node["relation_name"], sql)
        if found:
            failed.add(node["unique_id"])
        problems.extend(found)
    return problems


def check_target(target_path: Path) -> None:
    """Raise TypeCheckFailed naming every problem in target_path/manifest.json."""
    manifest = json.loads((Path(target_path) / "manifest.json").read_text())
    problems = check_manifest(manifest)
    if problems:
        raise TypeCheckFailed(problems)


# ------------------------------------------------- declared vs found source types


def _normal(dtype: exp.DataType) -> str:
    return dtype.sql(DIALECT).lower().replace('"', "")


def compare_source_types(source: str, declared: dict[str, str], found: dict[str, exp.DataType]) -> list[Problem]:
    """Problems where a declared column (Athena type) is missing from, or typed otherwise in, the real table."""
    problems = []
    actual = {k.lower(): v for k, v in found.items()}
    for column, data_type in declared.items():
        want = exp.DataType.build(data_type, dialect="hive")
        got = actual.get(column.lower())
        if got is None:
            problems.append(
                Problem(f"source {source}", column, f"declared {data_type}, but the table has no such column")
            )
        elif _normal(got) != _normal(want):
            problems.append(
                Problem(f"source {source}", column, f"declared {_normal(want)}, found {_normal(got)} in the table")
            )
    return problems


def glue_column_types(glue_client, database: str, table: str) -> dict[str, exp.DataType]:
    """A Glue table's columns and partition keys with their (Hive DDL) types."""
    got = glue_client.get_table(DatabaseName=database, Name=table)["Table"]
    cols = got.get("StorageDescriptor", {}).get("Columns", []) + got.get("PartitionKeys", [])
    return {c["Name"]: exp.DataType.build(c["Type"], dialect="hive") for c in cols}


def parquet_column_types(con, relation_sql: str) -> dict[str, exp.DataType]:
    """Columns of a DuckDB relation (e.g. read_parquet(...) of the local lake) with their types."""
    return {
        name: exp.DataType.build(dtype, dialect="duckdb")
        for name, dtype, *_ in con.execute(f"describe select * from {relation_sql}").fetchall()
    }
