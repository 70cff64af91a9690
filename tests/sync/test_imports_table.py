"""The imports table: a CSV-backed Glue table per segment (Athena) or a DuckDB
view (local) over the delivered import files, partitioned by run id."""

from __future__ import annotations

import random

import boto3
import duckdb
import pytest
from moto import mock_aws

from sync.core.errors import ConfigError
from sync.core.fields import has_control_chars, validate_value
from sync.core.import_files import write_import_files
from sync.dbt.contract import FieldMapping, Segment
from sync.readers.base import RelationRef
from sync.run.imports_table import (
    SERDE,
    SERDE_PARAMETERS,
    DuckDBImportsViews,
    GlueImportsTable,
    athena_ddl,
    register_all,
    table_input,
)
from tests.readers.opencsv23 import OpenCSVSerde, read_text_file

REGION = "us-east-1"
BUCKET = "imports"
ROWS = [("ep-1", 'Smith, Jr. says "hi"', "3"), ("ep-2", "José Nguyễn 田中", "0"), ("ep-3", "", "1")]


def segment(fields=("Id", "User.UserAttributes.FullName", "Metrics.Score")) -> Segment:
    cols = ("endpoint_id", "full_name", "score")
    return Segment(
        "model.p.seg_people",
        "seg_people",
        RelationRef(None, "s", "seg_people"),
        tuple(FieldMapping(c, f) for c, f in zip(cols, fields)),
        "keep",
        None,
        (),
        "",
    )


def import_files(tmp_path, seg=None, rows=ROWS):
    """Import files written by the real writer: header of field names, RFC-4180."""
    seg = seg or segment()
    con = duckdb.connect()
    con.execute("create table t (a varchar, b varchar, c varchar)")
    con.executemany("insert into t values (?, ?, ?)", rows)
    select = ", ".join(f'{c} as "{m.field}"' for c, m in zip("abc", seg.mappings))
    return write_import_files(con, f"select {select} from t order by a", tmp_path, 1_000_000)


@pytest.fixture
def glue_s3(monkeypatch):
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield boto3.client("glue", region_name=REGION), s3


def deliver(s3, files, run_id: str) -> str:
    """Upload as the Pinpoint destination lays files out: <prefix>/<run>/<segment>/part-<job>/..."""
    for f in files:
        s3.upload_file(str(f), BUCKET, f"lakeseg/imports/{run_id}/seg_people/part-1/{f.name}")
    return f"s3://{BUCKET}/lakeseg/imports/{run_id}/seg_people/"


def test_glue_table_is_csv_backed_partitioned_by_run_and_mapped_by_position(glue_s3, tmp_path):
    glue, s3 = glue_s3
    # Given a confirmed delivery of import files to S3
    location = deliver(s3, import_files(tmp_path / "f"), "20261126T030000Z-abc")
    # When it is registered
    GlueImportsTable(glue, "lakeseg_imports").register(segment(), "20261126T030000Z-abc", location)
    # Then Glue (moto, requests validated against Glue's model) holds a CSV-backed table
    table = glue.get_table(DatabaseName="lakeseg_imports", Name="seg_people")["Table"]
    sd = table["StorageDescriptor"]
    assert sd["SerdeInfo"]["SerializationLibrary"] == SERDE == "org.apache.hadoop.hive.serde2.OpenCSVSerde"
    assert sd["SerdeInfo"]["Parameters"] == {"separatorChar": ",", "quoteChar": '"', "escapeChar": "\u0001"}
    assert table["Parameters"]["skip.header.line.count"] == "1"
    assert table["PartitionKeys"] == [{"Name": "run_id", "Type": "string"}]
    # columns by position: warehouse names, every one a string, the Pinpoint field as comment
    assert [(c["Name"], c["Type"], c["Comment"]) for c in sd["Columns"]] == [
        ("endpoint_id", "string", "Id"),
        ("full_name", "string", "User.UserAttributes.FullName"),
        ("score", "string", "Metrics.Score"),
    ]
    [partition] = glue.get_partitions(DatabaseName="lakeseg_imports", TableName="seg_people")["Partitions"]
    assert partition["Values"] == ["20261126T030000Z-abc"]
    assert partition["StorageDescriptor"]["Location"] == location


def read_partition_as_athena_does(glue, s3, run_id: str) -> list[dict]:
    """Read a partition's files as Athena would from its Glue definition: Hive's OpenCSVSerde over opencsv 2.3
    (tests/readers/opencsv23.py) with the partition's SerDe parameters, header lines skipped, columns by position;
    every object under the location except names starting with _ or ."""
    table = glue.get_table(DatabaseName="lakeseg_imports", Name="seg_people")["Table"]
    [part] = [
        p
        for p in glue.get_partitions(DatabaseName="lakeseg_imports", TableName="seg_people")["Partitions"]
        if p["Values"] == [run_id]
    ]
    sd = part["StorageDescriptor"]
    assert sd["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.serde2.OpenCSVSerde"
    skip = int(table["Parameters"]["skip.header.line.count"])
    names = [c["Name"] for c in sd["Columns"]]
    bucket, _, prefix = sd["Location"][5:].partition("/")
    rows = []
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        if any(part.startswith(("_", ".")) for part in obj["Key"][len(prefix) :].split("/")):
            continue  # hidden from Athena
        data = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        for record in read_text_file(data, sd["SerdeInfo"]["Parameters"], len(names), skip):
            rows.append(dict(zip(names, record)))
    return rows


def test_comma_quote_and_non_ascii_values_read_back_through_the_table_definition(glue_s3, tmp_path):
    glue, s3 = glue_s3
    table = GlueImportsTable(glue, "lakeseg_imports")
    table.register(segment(), "run-1", deliver(s3, import_files(tmp_path / "1", rows=ROWS[:1]), "run-1"))
    table.register(segment(), "run-2", deliver(s3, import_files(tmp_path / "2"), "run-2"))
    got = read_partition_as_athena_does(glue, s3, "run-2")
    assert sorted(got, key=lambda r: r["endpoint_id"]) == [
        {"endpoint_id": "ep-1", "full_name": 'Smith, Jr. says "hi"', "score": "3"},
        {"endpoint_id": "ep-2", "full_name": "José Nguyễn 田中", "score": "0"},
        {"endpoint_id": "ep-3", "full_name": "", "score": "1"},
    ]
    assert len(read_partition_as_athena_does(glue, s3, "run-1")) == 1


# Values the contract allows (no control characters, at most 100 characters): what the writer must quote or
# double, what opencsv treats as an escape, and what a SerDe might trim.
TRICKY = {
    "comma": "Smith, Jr.",
    "doubled-quotes": 'say ""hi""',
    "quote-alone": '"',
    "two-quotes": '""',
    "quoted-whole": '"quoted"',
    "windows-path": "C:\\temp\\new",
    "double-backslash": "a\\\\b",
    "backslash-quote-at-end": 'He said "x\\"',
    "backslash-alone": "\\",
    "trailing-backslash": "x\\",
    "backslash-before-comma": "a\\,b",
    "leading-spaces-then-quote": '  "x"',
    "spaces": "  padded  ",
    "non-ascii": "José Nguyễn 田中 🎉",
    "apostrophe": "O'Brien",
    "csv-lookalike": '"a","b"',
    "empty": "",
}


@pytest.mark.parametrize("value", list(TRICKY.values()), ids=list(TRICKY))
def test_every_value_the_contract_allows_reads_back_exactly_through_the_athena_table(glue_s3, tmp_path, value):
    glue, s3 = glue_s3
    # Given a value the contract allows, in the middle and at the end of a row written by the real writer
    assert validate_value("User.UserAttributes.FullName", value) == []
    files = import_files(tmp_path / "f", rows=[("ep-1", value, value)])
    # When the files are delivered, registered, and read as Athena's SerDe reads them
    GlueImportsTable(glue, "lakeseg_imports").register(segment(), "run-1", deliver(s3, files, "run-1"))
    got = read_partition_as_athena_does(glue, s3, "run-1")
    # Then the row reads back exactly as written
    assert got == [{"endpoint_id": "ep-1", "full_name": value, "score": value}]


def test_random_values_of_the_allowed_alphabet_read_back_exactly(glue_s3, tmp_path):
    glue, s3 = glue_s3
    # Given 400 values drawn from the characters that matter to a CSV reader (plus letters), NULLs among them
    rng = random.Random(22)
    alphabet = ",\"\\ 'aZé田🎉" + "\u00a0"
    rows = [
        (
            f"ep-{n:03d}",
            None if n % 50 == 0 else "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))),
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 100))),
        )
        for n in range(400)
    ]
    files = import_files(tmp_path / "f", rows=rows)
    # When read as Athena's SerDe reads them
    GlueImportsTable(glue, "lakeseg_imports").register(segment(), "run-1", deliver(s3, files, "run-1"))
    got = read_partition_as_athena_does(glue, s3, "run-1")
    # Then each reads back as written, NULL as ''
    assert sorted((r["endpoint_id"], r["full_name"], r["score"]) for r in got) == [(a, b or "", c) for a, b, c in rows]


@pytest.mark.parametrize(
    "value,read",
    [
        ("C:\\temp\\new", "C:tempnew"),
        ("a\\\\b", "a\\b"),
        ('He said "x\\"', None),
        ("Smith, Jr.", "Smith, Jr."),
    ],
    ids=["windows-path-loses-backslashes", "double-backslash-halves", "backslash-quote-never-closes", "comma-unharmed"],
)
def test_the_old_escape_quote_lost_backslashes(tmp_path, value, read):
    # Given import files holding a value, written by the real writer
    [file] = import_files(tmp_path, rows=[("ep-1", value, "1")])
    # When read with the properties the table had before (escape '"'), which Hive turns into backslash
    [row] = read_text_file(file.read_bytes(), {"separatorChar": ",", "quoteChar": '"', "escapeChar": '"'}, 3, 1)
    # Then backslashes are lost (or the row's rest is NULL), while the chosen escape reads it exactly
    assert row[1] == read
    assert read_text_file(file.read_bytes(), SERDE_PARAMETERS, 3, 1) == [["ep-1", value, "1"]]


def test_partitions_registered_with_the_old_escape_are_given_the_new_one_once(glue_s3, tmp_path):
    glue, s3 = glue_s3
    old = {"separatorChar": ",", "quoteChar": '"', "escapeChar": '"'}
    # Given a table and a partition registered before, with escape '"', over a file holding backslashes
    files = import_files(tmp_path / "1", rows=[("ep-1", "C:\\temp\\new", "1")])
    location = deliver(s3, files, "run-1")
    table = table_input(segment(), "s3://imports/lakeseg/imports/")
    table["StorageDescriptor"]["SerdeInfo"]["Parameters"] = old
    glue.create_database(DatabaseInput={"Name": "lakeseg_imports"})
    glue.create_table(DatabaseName="lakeseg_imports", TableInput=table)
    glue.create_partition(
        DatabaseName="lakeseg_imports",
        TableName="seg_people",
        PartitionInput={"Values": ["run-1"], "StorageDescriptor": {**table["StorageDescriptor"], "Location": location}},
    )
    assert read_partition_as_athena_does(glue, s3, "run-1")[0]["full_name"] == "C:tempnew"
    # When the next run registers its delivery
    registry = GlueImportsTable(glue, "lakeseg_imports")
    registry.register(segment(), "run-2", deliver(s3, import_files(tmp_path / "2"), "run-2"))
    # Then the old partition reads with the new escape too, at its own location, and reads back exactly
    parts = {
        p["Values"][0]: p["StorageDescriptor"]
        for p in glue.get_partitions(DatabaseName="lakeseg_imports", TableName="seg_people")["Partitions"]
    }
    assert {k: sd["SerdeInfo"]["Parameters"] for k, sd in parts.items()} == {
        "run-1": SERDE_PARAMETERS,
        "run-2": SERDE_PARAMETERS,
    }
    assert parts["run-1"]["Location"] == location
    assert read_partition_as_athena_does(glue, s3, "run-1") == [
        {"endpoint_id": "ep-1", "full_name": "C:\\temp\\new", "score": "1"}
    ]
    # and a later registration does not list the partitions again
    calls = []
    glue.meta.events.register("before-call.glue.GetPartitions", lambda **kw: calls.append(kw))
    registry.register(segment(), "run-3", deliver(s3, import_files(tmp_path / "3"), "run-3"))
    assert calls == []


def test_the_escape_is_a_character_the_contract_refuses_in_every_value():
    # Given the table's escape character
    escape = SERDE_PARAMETERS["escapeChar"]
    # Then no value may hold it: the no-control-chars rule refuses it (so opencsv never meets an escape),
    # and it differs from the separator and the quote (opencsv would refuse it, and Hive would swap a '"')
    assert has_control_chars(escape)
    assert [p.rule for p in validate_value("User.UserAttributes.X", f"a{escape}b")] == ["no-control-chars"]
    assert len({escape, SERDE_PARAMETERS["separatorChar"], SERDE_PARAMETERS["quoteChar"]}) == 3 and escape != '"'
    assert OpenCSVSerde.from_parameters(SERDE_PARAMETERS).new_reader("x").parser.escape == escape


def test_registering_again_updates_table_and_partition(glue_s3, tmp_path):
    glue, s3 = glue_s3
    table = GlueImportsTable(glue, "lakeseg_imports")
    location = deliver(s3, import_files(tmp_path / "f"), "run-1")
    table.register(segment(), "run-1", location)
    # a new mapping: the table takes the latest columns, the partition is replaced, not duplicated
    renamed = segment(fields=("Id", "User.UserAttributes.Name", "Metrics.Score"))
    table.register(renamed, "run-1", location)
    cols = glue.get_table(DatabaseName="lakeseg_imports", Name="seg_people")["Table"]["StorageDescriptor"]["Columns"]
    assert cols[1]["Comment"] == "User.UserAttributes.Name"
    assert len(glue.get_partitions(DatabaseName="lakeseg_imports", TableName="seg_people")["Partitions"]) == 1


def test_ddl_spells_the_same_table(tmp_path):
    ddl = athena_ddl("lakeseg_imports", segment(), "s3://imports/lakeseg/imports/")
    assert "ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'" in ddl
    assert "WITH SERDEPROPERTIES ('separatorChar' = ',', 'quoteChar' = '\"', 'escapeChar' = '\\u0001')" in ddl
    assert "PARTITIONED BY (`run_id` string)" in ddl and "'skip.header.line.count' = '1'" in ddl
    assert "`full_name` string COMMENT 'User.UserAttributes.FullName'" in ddl
    assert table_input(segment(), "s3://x/y")["StorageDescriptor"]["Location"] == "s3://x/y/"


def test_a_column_athena_cannot_name_is_refused():
    bad = Segment(
        "model.p.seg", "seg", RelationRef(None, "s", "seg"), (FieldMapping("Full Name", "Id"),), "keep", None, (), ""
    )
    with pytest.raises(ConfigError, match="'full name' cannot name an Athena table or column"):
        table_input(bad, "s3://x/y")


def test_local_view_reads_every_run_with_run_id(tmp_path):
    # Given two runs delivered by the files destination: <exports>/<run_id>/<segment>/part-*.csv
    exports = tmp_path / "exports"
    for run, rows in (("run-1", ROWS[:1]), ("run-2", ROWS)):
        for f in import_files(tmp_path / run, rows=rows):
            dest = exports / run / "seg_people"
            dest.mkdir(parents=True, exist_ok=True)
            f.rename(dest / f.name)
    (exports / "run-2" / "seg_people" / "_delivery.json").write_text("{}")
    # When the delivery is registered locally
    views = DuckDBImportsViews(exports)
    views.register(segment(), "run-2", str(exports / "run-2" / "seg_people"))
    # Then the view shows exactly what each run delivered, as text, by the model's column names
    con = duckdb.connect(str(tmp_path / "lakeseg_imports.duckdb"), read_only=True)
    got = con.execute(
        "select endpoint_id, full_name, score from imports.seg_people where run_id = 'run-2' order by endpoint_id"
    ).fetchall()
    assert got == [("ep-1", 'Smith, Jr. says "hi"', "3"), ("ep-2", "José Nguyễn 田中", "0"), ("ep-3", "", "1")]
    assert con.execute("select count(*) from imports.seg_people where run_id = 'run-1'").fetchall() == [(1,)]


@pytest.mark.parametrize("value", [None, "", *TRICKY.values()], ids=["null", "empty-string", *TRICKY])
def test_the_local_view_reads_each_value_as_the_athena_table_does(glue_s3, tmp_path, value):
    glue, s3 = glue_s3
    # Given one run's import files holding a value (NULL, empty, or a tricky one)
    files = import_files(tmp_path / "f", rows=[("ep-1", value, "1")])
    exports = tmp_path / "exports"
    (exports / "run-1" / "seg_people").mkdir(parents=True)
    for f in files:
        (exports / "run-1" / "seg_people" / f.name).write_bytes(f.read_bytes())
    # When registered as the Athena table (read as its SerDe reads) and as the local view
    GlueImportsTable(glue, "lakeseg_imports").register(segment(), "run-1", deliver(s3, files, "run-1"))
    athena = read_partition_as_athena_does(glue, s3, "run-1")
    DuckDBImportsViews(exports).register(segment(), "run-1", str(exports / "run-1" / "seg_people"))
    con = duckdb.connect(str(tmp_path / "lakeseg_imports.duckdb"), read_only=True)
    local = con.execute("select endpoint_id, full_name, score from imports.seg_people").fetchall()
    # Then both give the same row: the value as written, NULL and empty both as ''
    assert [tuple(r.values()) for r in athena] == local == [("ep-1", value or "", "1")]


def test_a_failed_registration_is_a_note_not_a_failed_delivery():
    class Broken:
        def register(self, *a):
            raise RuntimeError("glue is down")

    notes: list[str] = []
    register_all(Broken(), segment(), "run-1", "s3://b/p/", notes)
    assert notes == ["imports table not updated: RuntimeError (its message is in the local log at debug level)"]
    register_all(None, segment(), "run-1", "s3://b/p/", notes)
    assert len(notes) == 1


@pytest.mark.parametrize(
    "target_type,dest,expected",
    [
        ("athena", {"type": "pinpoint"}, "GlueImportsTable"),
        ("duckdb", {"type": "files", "path": "/tmp/exports"}, "DuckDBImportsViews"),
        ("athena", {"type": "files", "path": "/tmp/exports"}, "DuckDBImportsViews"),
        ("duckdb", {"type": "pinpoint"}, "NoneType"),
    ],
    ids=["athena-pinpoint", "local-files", "athena-files", "local-pinpoint"],
)
def test_the_run_registers_where_the_files_went(target_type, dest, expected):
    from pathlib import Path

    from sync.app.wiring import build_imports_table
    from sync.dbt.profile import Target
    from sync.settings import Settings

    target = Target("lakeseg", "t", {"type": target_type, "schema": "lakeseg", "region_name": REGION})
    from pydantic import TypeAdapter

    from sync.settings import Destination

    settings = Settings("t", TypeAdapter(Destination).validate_python(dest), "state", 0.3, 1, "1GB", Path("w"))
    session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    table = build_imports_table(target, settings, session)
    assert type(table).__name__ == expected
    if expected == "GlueImportsTable":
        assert table.database == "lakeseg_imports"
