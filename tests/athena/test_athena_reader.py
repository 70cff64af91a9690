"""The Athena reader against moto (Athena + S3), feeding the diff engine.

moto's Athena accepts queries but does not execute them, so the fixture plays
the engine for UNLOAD: it writes, into moto's S3 at the UNLOAD target, the
Parquet files Athena would write -- lowercase column names, as Athena does.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import time
from pathlib import Path

import boto3
import duckdb
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from sync.core.errors import ConfigError
from sync.core.import_files import write_import_files
from sync.dbt.contract import FieldMapping, Segment
from sync.readers.athena import AthenaQueryFailed, AthenaReader
from sync.readers.base import RelationRef
from sync.run.diff import changes_sql, prepare

REGION = "us-east-1"
BUCKET = "athena-results"
ROWS = [
    ("ep-1", "Smith, Jr.", 'say "hi"'),
    ("ep-2", "José Nguyễn", "plain"),
    ("ep-3", "田中", "a,b,c"),
    ("ep-4", None, ""),
]
UNLOAD = re.compile(
    r"UNLOAD \(SELECT (?P<cols>.+) FROM \"(?P<schema>[^\"]+)\"\.\"(?P<table>[^\"]+)\"\) TO '(?P<to>[^']+)'"
)


@pytest.fixture
def aws(monkeypatch):
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield boto3.client("athena", region_name=REGION), s3


class FakeAthenaEngine:
    """Executes the reader's UNLOAD against a local DuckDB table, into moto S3."""

    def __init__(self, s3, tmp: Path, tables: dict[str, list[tuple]], columns=("endpoint_id", "full_name", "note")):
        self.s3, self.tmp, self.tables, self.columns = s3, tmp, tables, columns
        self.queries: list[str] = []
        self.databases: list[str | None] = []

    def __call__(self, reader: AthenaReader):
        original = reader.run_query

        def run_query(sql: str, database: str | None = None, **kw) -> str:
            query_id = original(sql, database, **kw)  # moto: start + poll (SUCCEEDED at once)
            self.queries.append(sql)
            self.databases.append(database)
            m = UNLOAD.match(sql)
            assert m, sql
            rows = self.tables[m["table"]]
            if rows:
                con = duckdb.connect()
                con.execute(f"create table t ({', '.join(c + ' varchar' for c in self.columns)})")
                con.executemany(f"insert into t values ({', '.join('?' for _ in self.columns)})", rows)
                local = self.tmp / f"{query_id}.parquet"
                con.execute(f"copy (select {m['cols']} from t) to '{local}' (format parquet)")
                bucket, _, prefix = m["to"][5:].partition("/")
                self.s3.upload_file(str(local), bucket, f"{prefix}{query_id}_00000")
            return query_id

        reader.run_query = run_query
        return reader


def segment(columns=("endpoint_id", "full_name", "note")) -> Segment:
    fields = ("Id", "User.UserAttributes.FullName", "Attributes.Note")
    return Segment(
        "model.p.seg_people",
        "seg_people",
        RelationRef("awsdatacatalog", "lakeseg_segments", "seg_people"),
        tuple(FieldMapping(c, f) for c, f in zip(columns, fields)),
        "keep",
        None,
        (),
        "",
    )


def make_reader(athena, s3, **kw) -> AthenaReader:
    return AthenaReader(
        athena, s3, s3_staging_dir=f"s3://{BUCKET}/lakeseg/", work_group="primary", sleep=lambda s: None, **kw
    )


def test_reader_feeds_the_diff_engine_with_exact_values(aws, tmp_path):
    # Given a segment table on "Athena" with commas, quotes and non-ASCII text,
    # declared with mixed-case column names
    athena, s3 = aws
    engine = FakeAthenaEngine(s3, tmp_path, {"seg_people": ROWS})
    reader = engine(make_reader(athena, s3))
    seg = segment(columns=("Endpoint_ID", "Full_Name", "NOTE"))
    con = duckdb.connect()
    # When the reader stages it and the diff writes import files
    source = reader.stage(con, seg.relation, seg.columns, tmp_path / "work")
    prepared = prepare(con, seg, source, previous=None, workdir=tmp_path / "work")
    files = write_import_files(con, changes_sql(prepared), tmp_path / "out", 1_000_000)
    # Then Athena was asked for lowercase columns, and every value comes back exact
    assert 'SELECT "endpoint_id", "full_name", "note" FROM "lakeseg_segments"."seg_people"' in engine.queries[0]
    assert "format = 'PARQUET'" in engine.queries[0]
    with files[0].open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, strict=True))
    assert rows[0] == ["Id", "User.UserAttributes.FullName", "Attributes.Note"]
    assert sorted(rows[1:]) == sorted([a, b or "", c] for a, b, c in ROWS)
    # And cleanup removes what it wrote, in S3 and locally
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="lakeseg/lakeseg-unload/").get("KeyCount", 0) == 1
    reader.cleanup()
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="lakeseg/lakeseg-unload/").get("KeyCount", 0) == 0
    assert not (tmp_path / "work" / "athena").exists()


def test_empty_segment_yields_an_empty_relation_with_the_columns(aws, tmp_path):
    athena, s3 = aws
    reader = FakeAthenaEngine(s3, tmp_path, {"seg_people": []})(make_reader(athena, s3))
    con = duckdb.connect()
    source = reader.stage(con, segment().relation, segment().columns, tmp_path / "w")
    assert con.execute(f"select count(*) from {source}").fetchall() == [(0,)]
    assert [d[0] for d in con.execute(f"select * from {source}").description] == list(segment().columns)


def test_missing_column_is_named(aws, tmp_path):
    athena, s3 = aws
    engine = FakeAthenaEngine(s3, tmp_path, {"seg_people": ROWS})
    reader = engine(make_reader(athena, s3))
    original = reader.run_query
    # Athena "returns" a table without the note column
    reader.run_query = lambda sql, database=None, **kw: original(sql.replace(', "note"', ""), database, **kw)
    with pytest.raises(ConfigError, match="no column matching 'note'"):
        reader.stage(duckdb.connect(), segment().relation, segment().columns, tmp_path / "w")


def test_failed_query_reports_id_and_athena_message(tmp_path):
    # Given Athena answering FAILED (served by Stubber, validated against Athena's model)
    athena = boto3.client("athena", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(athena)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q-123"})
    stub.add_response(
        "get_query_execution", {"QueryExecution": {"QueryExecutionId": "q-123", "Status": {"State": "RUNNING"}}}
    )
    stub.add_response(
        "get_query_execution",
        {
            "QueryExecution": {
                "QueryExecutionId": "q-123",
                "Status": {
                    "State": "FAILED",
                    "StateChangeReason": "TABLE_NOT_FOUND: line 1:28: Table 'seg_people' does not exist",
                },
            }
        },
    )
    sleeps = []
    reader = AthenaReader(athena, None, s3_staging_dir=f"s3://{BUCKET}/x/", work_group="primary", sleep=sleeps.append)
    with stub, pytest.raises(AthenaQueryFailed, match=r"q-123 FAILED: TABLE_NOT_FOUND"):
        reader.run_query("select 1")
    assert sleeps == [0.5]  # polled with a pause, not a busy loop


def test_polling_backs_off_and_times_out(tmp_path):
    athena = boto3.client("athena", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(athena)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q-9"})
    for _ in range(5):
        stub.add_response(
            "get_query_execution", {"QueryExecution": {"QueryExecutionId": "q-9", "Status": {"State": "RUNNING"}}}
        )
    stub.add_response("stop_query_execution", {})
    sleeps = []
    reader = AthenaReader(
        athena,
        None,
        s3_staging_dir=f"s3://{BUCKET}/x/",
        sleep=sleeps.append,
        poll_seconds=1,
        max_poll_seconds=4,
        timeout_seconds=10,
        clock=lambda: sum(sleeps),
    )
    with stub, pytest.raises(AthenaQueryFailed, match="q-9 did not finish"):
        reader.run_query("select 1")
    assert sleeps == [1, 2, 4, 3]  # the last pause ends at the deadline


def test_profile_without_staging_dir_is_a_config_error():
    with pytest.raises(ConfigError, match="s3_staging_dir"):
        AthenaReader.from_profile({"type": "athena", "region_name": REGION}, boto3.Session(region_name=REGION))


# ------------------------------------------------- request shape (botocore Stubber)


def stubbed_athena():
    athena = boto3.client("athena", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return athena, Stubber(athena)


@pytest.mark.parametrize(
    "staging,expected",
    [
        ("s3://athena-results/lakeseg/", "s3://athena-results/lakeseg/"),
        ("s3://athena-results//lakeseg//x/", "s3://athena-results/lakeseg/x/"),
        ("s3://athena-results", "s3://athena-results/"),
        ("s3://athena-results/", "s3://athena-results/"),
    ],
    ids=["plain", "double-slashes", "bucket-only", "bucket-slash"],
)
def test_every_query_sends_the_result_location_with_the_work_group(staging, expected):
    # Given a work group that may not have a result location of its own
    athena, stub = stubbed_athena()
    stub.add_response(
        "start_query_execution",
        {"QueryExecutionId": "q-1"},
        {
            "QueryString": "select 1",
            "QueryExecutionContext": {"Catalog": "awsdatacatalog"},
            "ResultConfiguration": {"OutputLocation": expected},
            "WorkGroup": "primary",
        },
    )
    stub.add_response(
        "get_query_execution",
        {
            "QueryExecution": {
                "QueryExecutionId": "q-1",
                "Status": {"State": "SUCCEEDED"},
                "Statistics": {"DataScannedInBytes": 1234},
            }
        },
    )
    reader = AthenaReader(athena, None, s3_staging_dir=staging, work_group="primary", sleep=lambda s: None)
    # When a query runs, then the request (checked against Athena's model) carries both, without '//'
    with stub:
        assert reader.run_query("select 1") == "q-1"
    stub.assert_no_pending_responses()


def test_unload_prefix_has_no_double_slash(aws, tmp_path):
    athena, s3 = aws
    engine = FakeAthenaEngine(s3, tmp_path, {"seg_people": ROWS})
    reader = engine(
        AthenaReader(
            athena,
            s3,
            s3_staging_dir=f"s3://{BUCKET}//lakeseg//",
            work_group="primary",
            sleep=lambda s: None,
            new_id=lambda: "run1",
        )
    )
    reader.stage(duckdb.connect(), segment().relation, segment().columns, tmp_path / "w")
    assert f"TO 's3://{BUCKET}/lakeseg/lakeseg-unload/run1/'" in engine.queries[0]


def test_the_unload_runs_in_the_segments_database_never_in_default():
    # Given Athena (Stubber, checked against its model) and a segment table in lakeseg_segments
    athena, stub = stubbed_athena()
    stub.add_response(
        "start_query_execution",
        {"QueryExecutionId": "q-1"},
        {
            "QueryString": ANY,
            "WorkGroup": "primary",
            "QueryExecutionContext": {"Catalog": "awsdatacatalog", "Database": "lakeseg_segments"},
            "ResultConfiguration": {"OutputLocation": f"s3://{BUCKET}/lakeseg/"},
        },
    )
    stub.add_response(
        "get_query_execution", {"QueryExecution": {"QueryExecutionId": "q-1", "Status": {"State": "SUCCEEDED"}}}
    )
    s3 = boto3.client("s3", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    s3_stub = Stubber(s3)
    s3_stub.add_response("list_objects_v2", {"Contents": []})
    # When the reader unloads the segment
    with stub, s3_stub:
        make_reader(athena, s3).stage(duckdb.connect(), segment().relation, segment().columns, Path("w"))
    # Then the query's context database is the segment's (without one Athena resolves it in `default`,
    # which RunnerAthenaPolicy does not grant)
    stub.assert_no_pending_responses()


def test_each_segment_records_its_query_id_and_bytes_scanned(aws, tmp_path):
    # Given Athena reporting what the UNLOAD scanned
    athena, s3 = aws
    engine = FakeAthenaEngine(s3, tmp_path, {"seg_people": ROWS})
    reader = engine(make_reader(athena, s3))
    real_get = athena.get_query_execution

    def get_query_execution(**kw):
        out = real_get(**kw)
        out["QueryExecution"]["Statistics"] = {"DataScannedInBytes": 4096}
        return out

    athena.get_query_execution = get_query_execution
    # When a segment is staged
    seg = segment()
    reader.stage(duckdb.connect(), seg.relation, seg.columns, tmp_path / "w")
    # Then its query id and bytes scanned are kept, and make a note for the run report
    got = reader.stats[str(seg.relation)]
    assert got["data_scanned_bytes"] == 4096 and got["query_id"]
    assert reader.notes_for(seg.relation) == [f"athena query {got['query_id']} scanned 4096 bytes"]


@pytest.mark.parametrize(
    "value,expected", [("120", 120.0), ("", 3600.0), (None, 3600.0)], ids=["set", "empty", "unset"]
)
def test_query_timeout_comes_from_the_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("LAKESEG_ATHENA_QUERY_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("LAKESEG_ATHENA_QUERY_TIMEOUT", value)
    reader = AthenaReader.from_profile(
        {"type": "athena", "region_name": REGION, "s3_staging_dir": "s3://b/x/"},
        boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"),
    )
    assert reader.timeout_seconds == expected


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_bad_query_timeout_is_named(monkeypatch, value):
    monkeypatch.setenv("LAKESEG_ATHENA_QUERY_TIMEOUT", value)
    with pytest.raises(ConfigError, match="LAKESEG_ATHENA_QUERY_TIMEOUT"):
        AthenaReader.from_profile(
            {"type": "athena", "region_name": REGION, "s3_staging_dir": "s3://b/x/"},
            boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"),
        )


# ------------------------------------------------- no query outlives the run (issue 21, item 4)

RUNNING = {
    "QueryExecution": {
        "QueryExecutionId": "q-7",
        "Status": {"State": "RUNNING"},
        "Statistics": {"DataScannedInBytes": 5_000_000},
    }
}


def running_query(stub, polls: int = 1) -> None:
    stub.add_response("start_query_execution", {"QueryExecutionId": "q-7"})
    for _ in range(polls):
        stub.add_response("get_query_execution", RUNNING)


class Interrupted(Exception):
    pass


def _raise(exc):
    def sleep(_seconds):
        raise exc

    return sleep


@pytest.mark.parametrize("how", ["error-while-waiting", "athena-error-while-polling", "ctrl-c"])
def test_a_query_is_stopped_when_the_wait_ends_in_an_exception(how):
    # Given a query still running
    athena, stub = stubbed_athena()
    running_query(stub)
    sleep = lambda s: None  # noqa: E731
    expected: type[BaseException] = Interrupted
    if how == "error-while-waiting":
        sleep = _raise(Interrupted("network down"))
    elif how == "ctrl-c":
        sleep, expected = _raise(KeyboardInterrupt()), KeyboardInterrupt
    else:
        from botocore.exceptions import ClientError

        stub.add_client_error("get_query_execution", "InternalServerException", "try again", 500)
        expected = ClientError
    # When the wait ends early, then StopQueryExecution names the query (request checked against Athena's model)
    stub.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-7"})
    reader = AthenaReader(athena, None, s3_staging_dir=f"s3://{BUCKET}/x/", sleep=sleep)
    with stub, pytest.raises(expected):
        reader.run_query("select 1")
    stub.assert_no_pending_responses()


def test_a_query_is_stopped_on_sigterm():
    from sync.core.signals import Terminated, terminate_on_sigterm

    # Given a query running, and SIGTERM arriving while the run waits (CodeBuild's timeout or stop)
    athena, stub = stubbed_athena()
    running_query(stub)
    stub.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-7"})

    def codebuild_stops_the_build(_seconds):
        os.kill(os.getpid(), signal.SIGTERM)  # this test's own process, handled by the CLI's handler
        time.sleep(5)  # never reached: the handler raises first

    reader = AthenaReader(athena, None, s3_staging_dir=f"s3://{BUCKET}/x/", sleep=codebuild_stops_the_build)
    # When the CLI's SIGTERM handler is installed, then the signal ends the wait and the query is stopped
    with stub, terminate_on_sigterm(), pytest.raises(Terminated, match="SIGTERM"):
        reader.run_query("select 1")
    stub.assert_no_pending_responses()


def test_the_timeout_is_wall_time_however_long_each_poll_takes():
    # Given polls that each take 40 s (a slow API), pauses of 0.5 s, and a 100 s timeout
    athena, stub = stubbed_athena()
    running_query(stub, polls=3)
    stub.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-7"})
    now = [0.0]
    real = athena.get_query_execution

    def slow_poll(**kw):
        now[0] += 40
        return real(**kw)

    athena.get_query_execution = slow_poll
    reader = AthenaReader(
        athena,
        None,
        s3_staging_dir=f"s3://{BUCKET}/x/",
        sleep=lambda s: None,
        clock=lambda: now[0],
        timeout_seconds=100,
        poll_seconds=0.5,
    )
    # When the query keeps running, then it is stopped after 120 s of wall time (not 100 s of pauses)
    with stub, pytest.raises(AthenaQueryFailed, match=r"q-7 did not finish in 100s \(wall time\); stopped it"):
        reader.run_query("select 1")
    stub.assert_no_pending_responses()
    assert now[0] == 120


def start_requests(athena) -> list[dict]:
    """Every StartQueryExecution request as sent (after botocore validated it against Athena's model)."""
    seen: list[dict] = []
    athena.meta.events.register(
        "before-parameter-build.athena.StartQueryExecution", lambda params, **_kw: seen.append(dict(params))
    )
    return seen


def test_a_retried_start_sends_the_same_request_token(tmp_path):
    # Given a run whose first start of a segment's UNLOAD got no answer (Athena's 500), and is retried
    athena, stub = stubbed_athena()
    sent = start_requests(athena)
    stub.add_client_error("start_query_execution", "InternalServerException", "no answer", 500)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    stub.add_response(
        "get_query_execution",
        {
            "QueryExecution": {
                "QueryExecutionId": "q-1",
                "Status": {"State": "SUCCEEDED"},
                "Statistics": {"DataScannedInBytes": 10},
            }
        },
    )
    s3 = boto3.client("s3", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    s3_stub = Stubber(s3)
    s3_stub.add_response("list_objects_v2", {"KeyCount": 0})
    reader = AthenaReader(
        athena, s3, s3_staging_dir=f"s3://{BUCKET}/x/", sleep=lambda s: None, run_id="20261201T050000000Z-abc123"
    )
    seg = segment()
    with stub, s3_stub:
        with pytest.raises(Exception, match="no answer"):
            reader.stage(duckdb.connect(), seg.relation, seg.columns, tmp_path / "w")
        reader.stage(duckdb.connect(), seg.relation, seg.columns, tmp_path / "w")
    # Then both starts are the same request, token included: Athena runs the query once
    assert len(sent) == 2 and sent[0] == sent[1]
    assert sent[0]["ClientRequestToken"] == reader.request_token(seg.relation)
    assert "lakeseg-unload/20261201T050000000Z-abc123-" in sent[0]["QueryString"]  # the UNLOAD target too


@pytest.mark.parametrize(
    "other",
    [
        {
            "run_id": "20261201T050000000Z-abc123",
            "relation": RelationRef("awsdatacatalog", "lakeseg_segments", "seg_b"),
        },
        {"run_id": "20261202T050000000Z-def456", "relation": None},
    ],
    ids=["another-segment", "another-run"],
)
def test_the_request_token_is_the_run_and_segments_own(other):
    athena, _ = stubbed_athena()
    mine = AthenaReader(athena, None, s3_staging_dir=f"s3://{BUCKET}/x/", run_id="20261201T050000000Z-abc123")
    theirs = AthenaReader(athena, None, s3_staging_dir=f"s3://{BUCKET}/x/", run_id=other["run_id"])
    relation = segment().relation
    token = mine.request_token(relation)
    # the same run and segment give the same token (32 to 128 characters, as Athena requires)
    assert token == AthenaReader(
        athena, None, s3_staging_dir=f"s3://{BUCKET}/x/", run_id="20261201T050000000Z-abc123"
    ).request_token(relation)
    assert 32 <= len(token) <= 128
    # another segment, or another run, gets another one
    assert theirs.request_token(other["relation"] or relation) != token


def test_the_start_carries_the_token(tmp_path):
    athena, stub = stubbed_athena()
    reader = AthenaReader(
        athena, None, s3_staging_dir=f"s3://{BUCKET}/x/", sleep=lambda s: None, run_id="20261201T050000000Z-abc123"
    )
    token = reader.request_token(segment().relation)
    stub.add_response(
        "start_query_execution",
        {"QueryExecutionId": "q-1"},
        {
            "QueryString": "select 1",
            "QueryExecutionContext": {"Catalog": "awsdatacatalog"},
            "ResultConfiguration": {"OutputLocation": f"s3://{BUCKET}/x/"},
            "ClientRequestToken": token,
        },
    )
    stub.add_response(
        "get_query_execution", {"QueryExecution": {"QueryExecutionId": "q-1", "Status": {"State": "SUCCEEDED"}}}
    )
    with stub:
        reader.run_query("select 1", token=token)
    stub.assert_no_pending_responses()


def test_bytes_scanned_by_a_stopped_query_are_reported(tmp_path):
    # Given a segment whose UNLOAD times out after scanning 5 MB
    athena, stub = stubbed_athena()
    running_query(stub, polls=3)
    stub.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-7"})
    now = [0.0]
    reader = AthenaReader(
        athena,
        None,
        s3_staging_dir=f"s3://{BUCKET}/x/",
        timeout_seconds=1,
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock=lambda: now[0],
    )
    seg = segment()
    with stub, pytest.raises(AthenaQueryFailed):
        reader.stage(duckdb.connect(), seg.relation, seg.columns, tmp_path / "w")
    # Then what it scanned (Athena bills it) is still the segment's figure
    assert reader.stats_for(seg.relation) == {"query_id": "q-7", "data_scanned_bytes": 5_000_000}
