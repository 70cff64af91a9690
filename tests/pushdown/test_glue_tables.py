"""The Glue tables the diff in Athena registers, request by request (botocore's Stubber checks each against
the Glue service model): the table input Athena reads Parquet through, replacing a killed run's table, and
dropping a run's tables or what killed runs left."""

from __future__ import annotations

import re

import boto3
import pytest
from botocore.stub import Stubber

from sync.run.pushdown import glue

PARQUET_TABLE = {
    "Name": "t1",
    "TableType": "EXTERNAL_TABLE",
    "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
    "StorageDescriptor": {
        "Columns": [{"Name": "id", "Type": "string"}, {"Name": "k1", "Type": "bigint"}],
        "Location": "s3://b/state/snapshots/x/",
        "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
    },
}


@pytest.fixture
def stubbed(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    client = boto3.client("glue", region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    "location", ["s3://b/state/snapshots/x/", "s3://b/state/snapshots/x"], ids=["folder", "no-slash"]
)
def test_a_table_is_an_external_parquet_table_over_a_folder(location):
    assert glue.table_input("t1", location, [("id", "string"), ("k1", "bigint")]) == PARQUET_TABLE


def test_registering_replaces_a_killed_runs_table_of_the_same_name_and_names_it_quoted(stubbed):
    client, stub = stubbed
    tables = glue.GlueTables(client, "db")
    # Given a table of that name left by a killed run, then none
    stub.add_response("delete_table", {}, {"DatabaseName": "db", "Name": "t1"})
    stub.add_response("create_table", {}, {"DatabaseName": "db", "TableInput": PARQUET_TABLE})
    stub.add_client_error("delete_table", service_error_code="EntityNotFoundException", http_status_code=400)
    stub.add_response("create_table", {}, {"DatabaseName": "db", "TableInput": {**PARQUET_TABLE, "Name": "t2"}})
    columns = [("id", "string"), ("k1", "bigint")]
    assert tables.register("t1", "s3://b/state/snapshots/x/", columns) == '"db"."t1"'
    assert tables.register("t2", "s3://b/state/snapshots/x/", columns) == '"db"."t2"'
    # When the run drops its tables, each is dropped once, an error on one does not stop the others
    stub.add_client_error("delete_table", service_error_code="InternalServiceException", http_status_code=500)
    stub.add_response("delete_table", {}, {"DatabaseName": "db", "Name": "t2"})
    tables.drop()
    tables.drop()  # nothing left to drop
    assert tables.created == []


def test_what_killed_runs_left_is_dropped_across_pages_except_this_runs(stubbed):
    client, stub = stubbed
    tables = glue.GlueTables(client, "db")
    mine, dead, gone, other = "seg_r2_snap", "seg_r1_snap", "seg_r0_key", "seg2_r1_snap"
    # Given two pages of tables: a dead run's and another segment's, then this run's and one already gone
    stub.add_response(
        "get_tables", {"TableList": [{"Name": dead}, {"Name": other}], "NextToken": "p2"}, {"DatabaseName": "db"}
    )
    stub.add_response("delete_table", {}, {"DatabaseName": "db", "Name": dead})
    stub.add_response(
        "get_tables", {"TableList": [{"Name": mine}, {"Name": gone}]}, {"DatabaseName": "db", "NextToken": "p2"}
    )
    stub.add_client_error("delete_table", service_error_code="EntityNotFoundException", http_status_code=400)
    # When the segment's leftovers are dropped, then only the dead runs' tables are, on every page
    dropped = tables.drop_matching(re.compile(r"seg_r[0-9]_(snap|key)"), keep="seg_r2")
    assert dropped == [dead, gone]


def test_segments_in_two_databases_each_get_the_tables_of_their_own_database_in_one_run():
    # Given the diff in Athena of one run, and segments whose models live in two databases
    from types import SimpleNamespace

    from sync.run.pushdown.lake import LakeDiff

    diff = LakeDiff(None, boto3.client("glue", region_name="us-east-1"), None, "files", "run-1")  # type: ignore[arg-type]
    a, b = (SimpleNamespace(name=f"seg_{n}", relation=SimpleNamespace(schema=f"db_{n}")) for n in "ab")
    # When each segment's tables are taken, then each registers in its own model's database, once per database
    tables_a, tables_b = diff._tables_for(a, sweep=False), diff._tables_for(b, sweep=False)
    assert (tables_a.database, tables_b.database) == ("db_a", "db_b")
    assert diff._tables_for(a, sweep=False) is tables_a


def test_a_run_names_a_segments_tables_in_glues_letters_with_an_eight_digit_owner_hash():
    # Given a segment name and a run id with letters Glue does not keep (capitals, dots, dashes)
    from sync.run.pushdown.lake import table_tag

    # When the run names the segment's tables, then they read lakeseg_diff_<segment>_<hash>__<run>
    tag = table_tag("files", "web.Users-2", "20261207T050000000Z-abc123")
    assert re.fullmatch(r"lakeseg_diff_web_users_2_[0-9a-f]{8}__20261207t050000000z_abc123", tag), tag
