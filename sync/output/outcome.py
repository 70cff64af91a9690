"""What a scheduler does after `lakeseg run` exits: report the outcome.

Called by the CodeBuild buildspec (infra/buildspec.yml) and the GitHub Actions
workflow after every run, whatever happened:

* prints one EMF line (``RunsFinished`` = the heartbeat, ``RunsFailed``) to
  stdout, so the runner's log group turns it into metrics; with
  ``--put-metric-data`` (runners whose logs CloudWatch does not ingest) the
  same two figures go through PutMetricData instead;
* when the run did not exit 0, publishes one message to the SNS topic naming
  the run id, the exit code and every segment that was not synced, with the
  reason (no attribute values: reasons are lakeseg's own messages).

Usage: ``python -m sync.output.outcome --exit-code 1 --report build/report/run.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sync.core import aws
from sync.output.metrics import DEFAULT_NAMESPACE, OK_STATUSES, emf_lines, run_document

MEANING = {
    0: "every selected segment synced (or nothing to do)",
    1: "a segment failed, was skipped (its model or a test failed) or was refused",
    2: "usage or configuration error: nothing was synced",
}


def load_report(path: Path | None) -> dict | None:
    """The run's --json report; None when the run stopped before writing one."""
    if path is None or not path.exists():
        return None
    # dbt's own output comes first; the report is the JSON object that starts on a line of its own.
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line == "{"]
    if not starts:
        return None
    try:
        return json.loads("\n".join(lines[starts[-1] :]))
    except ValueError:
        return None


def not_ok_segments(report: dict | None) -> list[dict]:
    return [s for s in (report or {}).get("segments") or [] if s.get("status") not in OK_STATUSES]


def message(exit_code: int, report: dict | None, where: str) -> dict:
    return {
        "Outcome": "SUCCEEDED" if exit_code == 0 else "FAILED",
        "Source": "lakeseg run",
        "ExitCode": exit_code,
        "Meaning": MEANING.get(exit_code, "the run was killed or crashed (see the log)"),
        "RunId": (report or {}).get("run_id"),
        "Destination": (report or {}).get("destination"),
        "Error": (report or {}).get("error"),
        "Segments": [
            {"Segment": s.get("segment"), "Status": s.get("status"), "Reason": s.get("reason", "")}
            for s in not_ok_segments(report)
        ],
        "Where": where,
    }


def where_it_ran() -> str:
    """A pointer to the build or workflow run, for the person reading the alert."""
    if os.environ.get("CODEBUILD_BUILD_ARN"):
        return f"CodeBuild {os.environ['CODEBUILD_BUILD_ARN']}"
    if os.environ.get("GITHUB_RUN_ID"):
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{os.environ.get('GITHUB_REPOSITORY', '')}/actions/runs/{os.environ['GITHUB_RUN_ID']}"
    return os.uname().nodename


def publish_alert(sns, topic_arn: str, exit_code: int, report: dict | None, where: str) -> str:
    body = message(exit_code, report, where)
    failed = ", ".join(s["Segment"] for s in body["Segments"]) or "no segment report"
    subject = f"lakeseg run failed (exit {exit_code}): {failed}"[:100]
    resp = sns.publish(
        TopicArn=topic_arn,
        Subject=subject,
        Message=json.dumps(body, indent=2),
        MessageAttributes={
            "outcome": {"DataType": "String", "StringValue": "FAILED"},
            "source": {"DataType": "String", "StringValue": "lakeseg"},
        },
    )
    return resp["MessageId"]


def put_metric_data(cloudwatch, namespace: str, exit_code: int) -> None:
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": "RunsFinished", "Value": 1, "Unit": "Count"},
            {"MetricName": "RunsFailed", "Value": 0 if exit_code == 0 else 1, "Unit": "Count"},
        ],
    )


def report_outcome(
    exit_code: int,
    report_path: Path | None,
    *,
    topic_arn: str | None,
    namespace: str,
    put_metrics: bool,
    session=None,
    out=None,
) -> dict | None:
    report = load_report(report_path)
    failed = [s.get("segment", "") for s in not_ok_segments(report)]
    doc = run_document(exit_code, run_id=(report or {}).get("run_id"), failed_segments=failed, namespace=namespace)
    print(emf_lines([doc])[0], file=out or sys.stdout, flush=True)
    if put_metrics or (topic_arn and exit_code != 0):
        if session is None:
            session = aws.session()
        if put_metrics:
            put_metric_data(session.client("cloudwatch"), namespace, exit_code)
        if topic_arn and exit_code != 0:
            publish_alert(session.client("sns"), topic_arn, exit_code, report, where_it_ran())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync.output.outcome", description=__doc__.split("\n\n")[0])
    parser.add_argument("--exit-code", type=int, required=True, help="`lakeseg run`'s exit code")
    parser.add_argument("--report", type=Path, default=None, help="the run's --json output, if any")
    parser.add_argument(
        "--topic-arn",
        default=os.environ.get("LAKESEG_ALERT_TOPIC_ARN") or None,
        help="SNS topic for failures (default $LAKESEG_ALERT_TOPIC_ARN; none: no message)",
    )
    parser.add_argument("--namespace", default=os.environ.get("LAKESEG_METRICS_NAMESPACE") or DEFAULT_NAMESPACE)
    parser.add_argument(
        "--put-metric-data",
        action="store_true",
        help="also send the two run metrics with PutMetricData (runners without CloudWatch Logs)",
    )
    args = parser.parse_args(argv)
    report_outcome(
        args.exit_code,
        args.report,
        topic_arn=args.topic_arn,
        namespace=args.namespace,
        put_metrics=args.put_metric_data,
    )
    # The scheduler must see the run's own verdict.
    return args.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
