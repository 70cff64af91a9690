"""The offline type check: every model's compiled Athena SQL resolves against
the declared source types, and a broken copy of the project is caught."""

from __future__ import annotations

import json

import duckdb
import jinja2
import pytest
import yaml
from sqlglot import exp

from sync.dbt.type_check import TypeChecker, TypeCheckFailed, check_manifest, check_target
from sync.lake import schema as lake_schema
from sync.lake.sample_lake import LakeSpec, generate
from tests.athena.conftest import PROJECT, compile_for_athena, copy_project

pytestmark = pytest.mark.e2e

SOURCES = PROJECT / "models" / "staging" / "_staging__sources.yml"


def declared_sources() -> dict[tuple[str, str], dict[str, str]]:
    """The declared data_types, rendered as dbt renders them with the default vars."""
    doc = yaml.safe_load(SOURCES.read_text())
    render = lambda text: jinja2.Template(text).render(var=lambda name, default=None: default)  # noqa: E731
    return {
        (src["name"], t["name"]): {
            c["name"]: render(c["data_type"]) if c.get("data_type") else None for c in t.get("columns", [])
        }
        for src in doc["sources"]
        for t in src["tables"]
    }


# ---------------------------------------------------------------- the project


def test_every_model_type_checks_on_athena(athena_build):
    # Given the project compiled for the athena target
    assert athena_build.compiled.success
    # When its manifest is type-checked
    manifest = json.loads((athena_build.target / "manifest.json").read_text())
    # Then no model has a problem, and every model of the project was checked
    assert check_manifest(manifest) == []
    from tests.e2e.conftest import PROJECT

    assert sum(n["resource_type"] == "model" for n in manifest["nodes"].values()) == len(
        list((PROJECT / "models").rglob("*.sql"))
    )


@pytest.fixture(scope="module")
def broken_build(tmp_path_factory):
    # A copy of the project whose staging model reads the session map as a struct again
    root = tmp_path_factory.mktemp("broken")
    project = copy_project(root / "project")
    model = project / "models" / "staging" / "stg_due__all_events.sql"
    text = model.read_text()
    assert "{{ map_value('session', 'session_id') }}" in text
    model.write_text(text.replace("{{ map_value('session', 'session_id') }}", "session.session_id"))
    return compile_for_athena(root, project)


def test_broken_copy_reading_session_as_a_struct_fails_naming_model_and_column(broken_build):
    # Given the broken copy compiles (dbt cannot see the problem)
    assert broken_build.compiled.success
    # When it is type-checked
    with pytest.raises(TypeCheckFailed) as caught:
        check_target(broken_build.target)
    # Then the first problem names the model, the column and the map
    first = caught.value.problems[0]
    assert first.model == "stg_due__all_events"
    assert "session" in first.column and "session_id" in first.column
    assert "struct access on a map" in first.message and "MAP(VARCHAR, VARCHAR)" in first.message
    # and the models built on it are not reported again
    assert {p.model for p in caught.value.problems} == {"stg_due__all_events"}


# ------------------------------------------------------ declared source types


def test_sources_declare_the_lake_schema_types():
    # Given the declared data_type of every source column the models read
    declared = declared_sources()
    schema = lake_schema.tables()
    for table, columns in declared.items():
        for column, data_type in columns.items():
            # Then each one is declared, and is the lake schema's (the DUE DDL's) type
            assert data_type, f"{table}.{column} has no data_type"
            assert lake_schema.parse_type(data_type) == lake_schema.parse_type(schema[table][column]), (table, column)


def test_sample_lake_writes_exactly_the_declared_types(tmp_path):
    # Given a tiny sample lake
    generate(tmp_path / "lake", LakeSpec(endpoints=40, events_per_endpoint=5, days=3))
    con = duckdb.connect()
    found = {
        ("due", "all_events"): con.sql(
            f"describe select * from read_parquet('{tmp_path}/lake/due/all_events/**/*.parquet', "
            "hive_partitioning = true)"
        ).fetchall(),
        **{
            ("crm", t): con.sql(f"describe select * from read_parquet('{tmp_path}/lake/crm/{t}/*.parquet')").fetchall()
            for t in lake_schema.CRM
        },
    }
    for table, rows in found.items():
        expected = lake_schema.tables()[table]
        # Then the columns are exactly the schema's, in DuckDB's spelling of the Athena types
        assert [r[0] for r in rows] == list(expected), table
        for name, dtype, *_ in rows:
            found_type = exp.DataType.build(dtype, dialect="duckdb").sql("trino").lower().replace('"', "")
            assert found_type == lake_schema.parse_type(expected[name]).sql("trino").lower().replace('"', ""), (
                table,
                name,
            )


def test_session_is_a_map_in_the_sample_lake(tmp_path):
    generate(tmp_path / "lake", LakeSpec(endpoints=40, events_per_endpoint=5, days=3))
    con = duckdb.connect()
    [(kind,)] = con.sql(
        f"select distinct typeof(session) from read_parquet('{tmp_path}/lake/due/all_events/**/*.parquet')"
    ).fetchall()
    assert kind == "MAP(VARCHAR, VARCHAR)"


# --------------------------------------------------------------- the checker

CASES = {
    "struct access on a map": ("select session.session_id as s from db.events", "session", "struct access on a map"),
    "undeclared column": ("select campaign from db.events", "campaign", "cannot be resolved"),
    "text compared with a number": (
        "select event_type from db.events where event_type = 3",
        "event_type = 3",
        "compares VARCHAR with INTEGER",
    ),
    "time compared with text": (
        "select event_type from db.events where ingest_timestamp > 'yesterday'",
        "ingest_timestamp > 'yesterday'",
        "compares TIMESTAMP with VARCHAR",
    ),
    "unknown function result": ("select my_udf(event_type) as x from db.events", "x", "cannot be resolved"),
}


@pytest.mark.parametrize("sql,column,message", CASES.values(), ids=list(CASES))
def test_checker_names_model_column_and_problem(sql, column, message):
    # Given a source declared with the DUE types
    checker = TypeChecker()
    checker.add_source('"cat"."db"."events"', dict((*lake_schema.ALL_EVENTS, lake_schema.ALL_EVENTS_PARTITION)))
    # When a model's SQL is checked
    problems = checker.check_model("m", '"cat"."db"."m"', sql.replace("db.events", '"cat"."db"."events"'))
    # Then the first problem names the model, the column and what is wrong
    assert problems, sql
    assert problems[0].model == "m"
    assert column in problems[0].column
    assert message in problems[0].message


def test_checker_resolves_map_values_and_upstream_model_outputs():
    checker = TypeChecker()
    checker.add_source('"cat"."db"."events"', dict((*lake_schema.ALL_EVENTS, lake_schema.ALL_EVENTS_PARTITION)))
    assert (
        checker.check_model(
            "up",
            '"cat"."s"."up"',
            "select element_at(session, 'session_id') as sid, "
            'client.client_id as endpoint_id from "cat"."db"."events"',
        )
        == []
    )
    # the downstream model sees the upstream model's output types
    problems = checker.check_model("down", '"cat"."s"."down"', 'select sid from "cat"."s"."up" where sid = 1')
    assert [p.message for p in problems] == ["compares VARCHAR with INTEGER"]


# ------------------------------------------------ string-partitioned layouts


@pytest.fixture(scope="module")
def string_partitioned(tmp_path_factory):
    return compile_for_athena(
        tmp_path_factory.mktemp("strpart"),
        PROJECT,
        "--vars",
        '{ingest_partition_format: "%Y/%m/%d/%H", as_of: "2026-10-31 12:30:00"}',
    )


def test_string_partitioned_layout_compiles_with_string_bounds_and_type_checks(string_partitioned):
    # Given a lake whose ingest partition is a 'yyyy/MM/dd/HH' string (var ingest_partition_format)
    assert string_partitioned.compiled.success
    sql = (string_partitioned.models / "models" / "segments" / "seg_active_last_24h.sql").read_text()
    # Then the partition bounds are strings of that layout, constant, around as_of
    assert "ingest_timestamp >= '2026/10/29/12' and session_start.ingest_timestamp <= '2026/10/31/12'" in sql
    # and the whole project type-checks with the partition declared as a string
    manifest = json.loads((string_partitioned.target / "manifest.json").read_text())
    assert manifest["sources"]["source.lakeseg.due.all_events"]["columns"]["ingest_timestamp"]["data_type"] == "string"
    assert check_manifest(manifest) == []


def test_partition_layout_not_matching_the_declared_type_is_named(string_partitioned):
    # Given the string layout's SQL checked against a timestamp partition (the var and the lake disagree)
    manifest = json.loads((string_partitioned.target / "manifest.json").read_text())
    manifest["sources"]["source.lakeseg.due.all_events"]["columns"]["ingest_timestamp"]["data_type"] = "timestamp"
    problems = check_manifest(manifest)
    # Then the type check names the model, the column, and both types
    assert problems and problems[0].model == "stg_due__all_events"
    assert "ingest_timestamp" in problems[0].column
    assert "compares TIMESTAMP with VARCHAR" in problems[0].message


# ------------------------------------------------ declared vs found in the real table


def test_a_real_table_whose_type_differs_from_the_declared_one_is_named(monkeypatch):
    # Given a Glue table where session is a struct (as the old sample lake had it), in moto's Glue
    import boto3
    from moto import mock_aws

    from sync.dbt.type_check import compare_source_types, glue_column_types

    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    columns = [{"Name": n, "Type": t} for n, t in lake_schema.ALL_EVENTS if n != "awsaccountid"]
    columns[[c["Name"] for c in columns].index("session")]["Type"] = "struct<session_id:string,start_timestamp:bigint>"
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "due_eventdb"})
        glue.create_table(
            DatabaseName="due_eventdb",
            TableInput={
                "Name": "all_events",
                "StorageDescriptor": {"Columns": columns},
                "PartitionKeys": [{"Name": "ingest_timestamp", "Type": "timestamp"}],
            },
        )
        found = glue_column_types(glue, "due_eventdb", "all_events")
    declared = declared_sources()[("due", "all_events")]
    # When the declared types are compared with it
    problems = compare_source_types("due.all_events", declared, found)
    # Then exactly the session column is named, with both types
    assert [(p.model, p.column) for p in problems] == [("source due.all_events", "session")]
    assert problems[0].message == (
        "declared map(varchar, varchar), found row(session_id varchar, start_timestamp bigint) in the table"
    )


def test_the_sample_lake_matches_every_declared_source(tmp_path):
    from sync.dbt.type_check import compare_source_types, parquet_column_types

    generate(tmp_path / "lake", LakeSpec(endpoints=40, events_per_endpoint=5, days=3))
    con = duckdb.connect()
    for (source, table), declared in declared_sources().items():
        glob = "**/*.parquet" if source == "due" else "*.parquet"
        found = parquet_column_types(
            con, f"read_parquet('{tmp_path}/lake/{source}/{table}/{glob}', hive_partitioning = true)"
        )
        assert compare_source_types(f"{source}.{table}", declared, found) == [], (source, table)
