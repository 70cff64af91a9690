"""Run metrics: the EMF lines `lakeseg run --metrics emf` prints per segment and
the outcome line (heartbeat) of sync/output/outcome.py, validated against the EMF
specification; the failure message the outcome step publishes to SNS (moto)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from sync.output import metrics, outcome
from sync.run.engine import RunReport, SegmentReport

SCHEMA = json.loads((Path(__file__).parent / "emf.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def emf_problems(doc: dict) -> list[str]:
    """The EMF specification: the schema, plus what a schema cannot say about members."""
    problems = [e.message for e in VALIDATOR.iter_errors(doc)]
    if problems:
        return problems
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for dims in directive["Dimensions"]:
            for key in dims:
                if not isinstance(doc.get(key), str):
                    problems.append(f"dimension {key} is not a top-level string member")
        for metric in directive["Metrics"]:
            value = doc.get(metric["Name"])
            values = value if isinstance(value, list) else [value]
            if (
                not values
                or len(values) > 100
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            ):
                problems.append(f"metric {metric['Name']} has no numeric top-level value ({value!r})")
    return problems


def plan(rows, entered, changed, exited, to_send):
    return {
        "segment": "x",
        "rows": rows,
        "previous_rows": rows - entered + exited,
        "entered": entered,
        "changed": changed,
        "exited": exited,
        "unchanged": rows - entered - changed,
        "exit_rows": exited,
        "full_refresh": False,
        "full_refresh_reason": "",
        "first_sync": False,
        "to_send": to_send,
    }


def sample_report() -> RunReport:
    return RunReport(
        run_id="20261126T050000123Z-abc123",
        command="run",
        target="athena",
        destination="pinpoint-app1",
        state="s3://bucket/lakeseg/state",
        started_at="2026-11-26T05:00:00+00:00",
        finished_at="2026-11-26T05:03:00+00:00",
        status="failed",
        segments=[
            SegmentReport("seg_email_clickers", "synced", plan=plan(1000, 40, 10, 5, 55), duration_s=12.5),
            SegmentReport(
                "seg_lifecycle_stage", "unchanged", "nothing changed", plan=plan(500, 0, 0, 0, 0), duration_s=1.25
            ),
            SegmentReport("seg_dup_ids", "skipped", "test unique_seg_dup_ids_endpoint_id failed"),
            SegmentReport(
                "seg_unengaged_by_state", "failed", "import job FAILED", plan=plan(80, 80, 0, 0, 80), duration_s=30.0
            ),
        ],
    )


# --------------------------------------------------------------------------- per segment


def test_every_segment_gets_one_valid_emf_document_with_its_figures():
    # given a run report with a synced, an unchanged, a skipped and a failed segment
    report = sample_report().as_dict()

    # when it becomes EMF lines
    lines = metrics.emf_lines(metrics.segment_documents(report, namespace="lakeseg/prod", timestamp_ms=1_700_000))

    # then one compact line per segment, each valid EMF
    assert len(lines) == 4 and all("\n" not in line for line in lines)
    docs = {d["Segment"]: d for d in map(json.loads, lines)}
    for doc in docs.values():
        assert emf_problems(doc) == []
        directive = doc["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "lakeseg/prod"
        assert directive["Dimensions"] == [["Destination", "Segment"]]
        assert doc["_aws"]["Timestamp"] == 1_700_000 and doc["RunId"] == report["run_id"]
    clickers = docs["seg_email_clickers"]
    assert {
        k: clickers[k]
        for k in ("Members", "Entered", "Changed", "Exited", "Sent", "Quarantined", "DurationSeconds", "SegmentFailed")
    } == {
        "Members": 1000,
        "Entered": 40,
        "Changed": 10,
        "Exited": 5,
        "Sent": 55,
        "Quarantined": 0,
        "DurationSeconds": 12.5,
        "SegmentFailed": 0,
    }
    # a failed delivery sent nothing that counts; a skipped segment reports no counts it does not know
    assert (docs["seg_unengaged_by_state"]["Sent"], docs["seg_unengaged_by_state"]["SegmentFailed"]) == (0, 1)
    skipped = docs["seg_dup_ids"]
    assert "Members" not in skipped and skipped["SegmentFailed"] == 1 and skipped["Status"] == "skipped"
    assert [m["Name"] for m in skipped["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == [
        "Quarantined",
        "DurationSeconds",
        "SegmentFailed",
    ]
    units = {m["Name"]: m["Unit"] for m in clickers["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["DurationSeconds"] == "Seconds" and units["Members"] == "Count"


@pytest.mark.parametrize(
    "quarantined, expected",
    [
        pytest.param(None, 0, id="field-missing"),
        pytest.param(7, 7, id="a-count"),
        pytest.param(["id-1", "id-2"], 2, id="a-list-of-ids"),
        pytest.param([{"id": "a", "message": "m", "attempts": 1, "first_run_id": "r"}], 1, id="a-list-of-rows"),
    ],
)
def test_quarantined_is_read_from_the_segment_report_or_taken_as_zero(quarantined, expected):
    seg = {"segment": "s", "status": "synced", "plan": plan(10, 1, 0, 0, 1), "duration_s": 1}
    if quarantined is not None:
        seg["quarantined"] = quarantined
    assert metrics.segment_values(seg)["Quarantined"] == expected


@pytest.mark.parametrize(
    "breakage",
    ["no-timestamp", "unknown-unit", "metric-without-value", "dimension-not-a-string", "too-many-dimensions"],
)
def test_the_emf_check_rejects_documents_that_break_the_specification(breakage):
    # given a valid document with one thing broken
    doc = metrics.segment_documents(sample_report().as_dict(), timestamp_ms=1)[0]
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    if breakage == "no-timestamp":
        del doc["_aws"]["Timestamp"]
    elif breakage == "unknown-unit":
        directive["Metrics"][0]["Unit"] = "Rows"
    elif breakage == "metric-without-value":
        del doc[directive["Metrics"][0]["Name"]]
    elif breakage == "dimension-not-a-string":
        doc["Segment"] = 3
    else:
        directive["Dimensions"] = [[f"d{i}" for i in range(31)]]
    # then the check names a problem
    assert emf_problems(doc)


# --------------------------------------------------------------------------- the run's outcome


@pytest.mark.parametrize(
    "exit_code, failed",
    [pytest.param(0, 0, id="ok"), pytest.param(1, 1, id="segment-failed"), pytest.param(2, 1, id="config-error")],
)
def test_the_outcome_line_is_valid_emf_with_the_heartbeat_and_the_failure_flag(exit_code, failed):
    doc = metrics.run_document(exit_code, run_id="r1", failed_segments=["b", "a"], timestamp_ms=5)
    assert emf_problems(doc) == []
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]
    assert (doc["RunsFinished"], doc["RunsFailed"], doc["ExitCode"]) == (1, failed, exit_code)
    assert doc["FailedSegments"] == ["a", "b"]


@pytest.fixture
def topic_queue(aws):
    """An SNS topic with an SQS subscription that receives the raw messages (moto)."""
    import boto3

    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    def received() -> list[dict]:
        msgs = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get(
            "Messages", []
        )
        return msgs

    return topic, received


def test_a_failed_run_publishes_one_message_naming_run_id_and_segments(topic_queue, tmp_path, capsys):
    # given the --json output of a run that failed (dbt's output above the report)
    topic, received = topic_queue
    report_file = tmp_path / "run.json"
    report_file.write_text("dbt says {hello}\n" + json.dumps(sample_report().as_dict(), indent=2) + "\n")

    # when the outcome step reports exit code 1
    outcome.report_outcome(1, report_file, topic_arn=topic, namespace="lakeseg", put_metrics=False)

    # then the log gets the heartbeat line and the topic one message with the run id and the failed segments
    line = json.loads(capsys.readouterr().out.strip())
    assert (line["RunsFinished"], line["RunsFailed"], line["RunId"]) == (1, 1, "20261126T050000123Z-abc123")
    [msg] = received()
    body = json.loads(msg["Body"])
    assert body["RunId"] == "20261126T050000123Z-abc123" and body["ExitCode"] == 1
    assert [(s["Segment"], s["Status"]) for s in body["Segments"]] == [
        ("seg_dup_ids", "skipped"),
        ("seg_unengaged_by_state", "failed"),
    ]
    assert msg["MessageAttributes"]["outcome"]["StringValue"] == "FAILED"


def test_a_configuration_error_without_a_report_still_alerts(topic_queue, tmp_path, capsys):
    topic, received = topic_queue
    outcome.report_outcome(2, tmp_path / "missing.json", topic_arn=topic, namespace="lakeseg", put_metrics=False)
    [msg] = received()
    body = json.loads(msg["Body"])
    assert (body["ExitCode"], body["RunId"], body["Segments"]) == (2, None, [])
    assert "configuration" in body["Meaning"]


def test_a_successful_run_sends_no_message_but_still_beats(topic_queue, tmp_path, capsys):
    topic, received = topic_queue
    outcome.report_outcome(0, None, topic_arn=topic, namespace="lakeseg", put_metrics=False)
    assert received() == []
    assert json.loads(capsys.readouterr().out)["RunsFinished"] == 1


def test_put_metric_data_sends_the_same_two_figures(aws, capsys):
    # given a runner whose logs CloudWatch does not read (GitHub Actions)
    import boto3

    # when it reports a failed run with --put-metric-data
    outcome.report_outcome(1, None, topic_arn=None, namespace="lakeseg/gh", put_metrics=True)

    # then CloudWatch has RunsFinished and RunsFailed in the namespace
    listed = boto3.client("cloudwatch").list_metrics(Namespace="lakeseg/gh")["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == ["RunsFailed", "RunsFinished"]


def test_the_outcome_command_exits_with_the_runs_exit_code(aws, capsys):
    assert outcome.main(["--exit-code", "1"]) == 1
    assert outcome.main(["--exit-code", "0"]) == 0


# --------------------------------------------------------------------------- the CLI hook


@pytest.mark.parametrize("to_file", [pytest.param(False, id="stderr"), pytest.param(True, id="metrics-file")])
def test_lakeseg_sync_with_metrics_emf_prints_one_line_per_segment(monkeypatch, tmp_path, to_file):
    # given a sync whose report is the sample (the engine is not under test here)
    from sync import cli
    from sync.app import wiring as runtime

    monkeypatch.setattr(runtime, "run_sync", lambda req, **kw: sample_report())
    args = ["sync", "--project-dir", str(tmp_path), "--metrics", "emf", "--metrics-namespace", "ns1"]
    if to_file:
        args += ["--metrics-file", str(tmp_path / "m" / "emf.log")]

    # when it runs
    result = CliRunner().invoke(cli.main, args, catch_exceptions=False)

    # then the exit code is the run's, and every segment has one valid EMF line
    assert result.exit_code == 1
    text = (tmp_path / "m" / "emf.log").read_text() if to_file else result.stderr
    docs = [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]
    assert sorted(d["Segment"] for d in docs) == sorted(s.segment for s in sample_report().segments)
    assert all(emf_problems(d) == [] and d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ns1" for d in docs)


def test_without_metrics_nothing_extra_is_printed(monkeypatch, tmp_path):
    from sync import cli
    from sync.app import wiring as runtime

    monkeypatch.setattr(runtime, "run_sync", lambda req, **kw: sample_report())
    monkeypatch.delenv("LAKESEG_METRICS", raising=False)
    result = CliRunner().invoke(cli.main, ["sync", "--project-dir", str(tmp_path)], catch_exceptions=False)
    assert '"_aws"' not in result.output + result.stderr


def test_a_partial_segment_counts_as_sent_and_failed_with_its_quarantined_rows():
    # given a segment delivered and committed with two rows quarantined (status partial)
    seg = {
        "segment": "s",
        "status": "partial",
        "plan": plan(10, 4, 0, 0, 4),
        "duration_s": 2,
        "quarantined": [{"id": "a", "message": "bad"}, {"id": "b", "message": "bad"}],
    }
    values = metrics.segment_values(seg)
    # then what was sent counts, the rejected rows are quarantined, and the segment needs attention
    assert (values["Sent"], values["Quarantined"], values["SegmentFailed"]) == (4, 2, 1)
