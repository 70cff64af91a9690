"""Run the real import tail (infra/import_tail.asl.json) offline.

moto executes the ASL (``mock_aws(config={"stepfunctions": {"execute_state_machine": True}})``)
and serves S3, SNS and SQS. moto has no Pinpoint import jobs, so Pinpoint is a
boto3 client with parameter validation on, answered either by botocore's
``Stubber`` (scripted cases) or by ``FakePinpoint`` (a stateful fake for cases
where several executions call Pinpoint in an unpredictable order); both check
every request and response against the real Pinpoint service model.

Where moto's ASL interpreter differs from AWS, ``moto_fidelity`` corrects the
fake, never the ASL:

1. the aws-sdk integration builds its own clients (``boto_client_for``); the
   Pinpoint one is swapped for ours;
2. AWS names SDK-integration errors ``Pinpoint.TooManyRequestsException``;
   moto only knows a few service names (``_SERVICE_ERROR_NAMES``) and would say
   ``pinpoint.…``; we add Pinpoint's;
3. moto's ASL lexer reads the key ``"RoleArn.$"`` as the Credentials keyword
   and keeps it as a literal key instead of a path; AWS resolves it like any
   other ``.$`` key. We resolve such keys as AWS does.

For speed only: the ANTLR parse tree of a definition is reused (moto parses
the definition on create and again on every execution, ~0.5 s each; the
evaluation components are still built fresh for every execution), and the
clients moto's interpreter builds for SNS come from one session per test run
instead of a fresh one (and fresh service models) per mock.

Imported as tests.destinations.pinpoint_harness by tests/infra, tests/destinations and tests/e2e.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.validate import validate_parameters

REPO = Path(__file__).resolve().parents[2]
ASL_PATH = REPO / "infra" / "import_tail.asl.json"
TEMPLATE_PATH = REPO / "infra" / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
APP_ID = "0123456789abcdef0123456789abcdef"
IMPORT_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/lakeseg-import"
SFN_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/lakeseg-import-tail"
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


# --------------------------------------------------------------------------- clients
_SESSION: list = []


def session() -> boto3.Session:
    """One boto3 session for the test run: service models load once, not per test.

    Created only after moto is imported, so moto's interception is part of it.
    """
    import moto  # noqa: F401  (registers moto's request interception for new sessions)

    if not _SESSION:
        _SESSION.append(boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"))
    return _SESSION[0]


def client(service: str):
    return session().client(service, region_name=REGION)


# --------------------------------------------------------------------------- the ASL
def asl_placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def render_asl(text: str | None = None, **subs) -> str:
    """Fill the definition substitutions as CloudFormation would (every one must be given)."""
    text = ASL_PATH.read_text() if text is None else text
    missing = asl_placeholders(text) - set(subs)
    if missing:
        raise KeyError(f"no value for definition substitution(s): {sorted(missing)}")
    return PLACEHOLDER.sub(lambda m: str(subs[m.group(1)]), text)


# --------------------------------------------------------------------------- moto fidelity
_PARSE_TREES: dict[str, object] = {}  # definition -> ANTLR tree (read-only once built)


@contextmanager
def moto_fidelity(pinpoint_client):
    """Make moto's ASL interpreter call ``pinpoint_client`` and behave like AWS (see module doc)."""
    from moto.stepfunctions.parser.asl.component.common.payload.payloadvalue.payloadbinding.payload_binding import (
        PayloadBindingStringExpressionSimple,
    )
    from moto.stepfunctions.parser.asl.component.common.payload.payloadvalue.payloadvaluelit.payload_value_str import (
        PayloadValueStr,
    )
    from moto.stepfunctions.parser.asl.component.common.string.string_expression import (
        StringContextPath,
        StringJsonPath,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as aws_sdk,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_sns as sns_task,
    )
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    clients: dict[tuple[str, str], object] = {}
    lock = threading.Lock()
    config = Config(parameter_validation=False, retries={"max_attempts": 0, "total_max_attempts": 1})

    def client_for(region, service, state_credentials=None):
        if service == "pinpoint":
            return pinpoint_client
        # What moto builds (no retries, no validation), from the run's session: models load once.
        with lock:
            key = (region, service)
            if key not in clients:
                clients[key] = session().client(service, region_name=region, config=config)
            return clients[key]

    real_binding = Preprocessor.visitPayload_binding_value

    def binding(self, ctx):
        bound = real_binding(self, ctx)
        value = getattr(bound, "payload_value", None)
        if bound.field.endswith(".$") and isinstance(value, PayloadValueStr):
            path = value.val
            if path.startswith("$$"):
                expr = StringContextPath(path)
            elif path.startswith("$"):
                expr = StringJsonPath(path)
            else:
                return bound
            return PayloadBindingStringExpressionSimple(field=bound.field[:-2], string_expression_simple=expr)
        return bound

    real_parse = AmazonStateLanguageParser.parse

    def parse(definition: str):
        tree = _PARSE_TREES.get(definition)
        if tree is None:
            program, tree = real_parse(definition)
            _PARSE_TREES[definition] = tree
            return program, tree
        return Preprocessor().visit(tree), tree

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(AmazonStateLanguageParser, "parse", staticmethod(parse)))
        stack.enter_context(mock.patch.object(aws_sdk, "boto_client_for", client_for))
        stack.enter_context(mock.patch.object(sns_task, "boto_client_for", client_for))
        stack.enter_context(mock.patch.dict(aws_sdk._SERVICE_ERROR_NAMES, {"pinpoint": "Pinpoint"}))
        stack.enter_context(mock.patch.object(Preprocessor, "visitPayload_binding_value", binding))
        yield


# --------------------------------------------------------------------------- Pinpoint fakes
def pinpoint_client():
    """A real Pinpoint client (parameter validation on) for a Stubber or FakePinpoint."""
    return client("pinpoint")


def job_response(job_id: str, status: str, s3_url: str = "s3://bucket/prefix/", **extra) -> dict:
    """An ImportJobResponse as Pinpoint returns it."""
    return {
        "ApplicationId": APP_ID,
        "CreationDate": "2026-11-25T03:00:00.000Z",
        "Definition": {"Format": "CSV", "RoleArn": IMPORT_ROLE_ARN, "S3Url": s3_url, "RegisterEndpoints": True},
        "Id": job_id,
        "JobStatus": status,
        "Type": "IMPORT",
        **extra,
    }


def stub_error(stubber, method: str, code: str, status: int) -> None:
    stubber.add_client_error(
        method,
        service_error_code=code,
        service_message=code,
        http_status_code=status,
        response_meta={"RequestId": f"req-{uuid.uuid4().hex[:8]}"},
    )


@dataclass
class FakeJob:
    id: str
    request: dict
    files: list[str]
    rows: int
    created: float
    polls: int = 0
    final: dict | None = None


Verdict = Callable[[FakeJob], dict]


def all_accepted(job: FakeJob) -> dict:
    return {
        "JobStatus": "COMPLETED",
        "TotalProcessed": job.rows,
        "TotalFailures": 0,
        "Failures": [],
        "TotalPieces": max(1, len(job.files)),
        "CompletedPieces": max(1, len(job.files)),
        "FailedPieces": 0,
    }


class FakePinpoint:
    """Pinpoint import jobs with state, for executions that interleave.

    Requests are validated by the client (parameter validation on) before they
    reach us; responses are validated against the service model here. A job
    reads its S3 folder (moto) when created, like Pinpoint does, and counts
    the CSV rows. It stays PROCESSING for ``polls`` GetImportJob calls and at
    least ``hold`` seconds, then ends with ``verdict(job)``.
    """

    def __init__(self, client, *, s3=None, polls: int = 1, hold: float = 0.0, verdict: Verdict = all_accepted):
        self.client = client
        self.s3 = s3
        self.polls = polls
        self.hold = hold
        self.verdict = verdict
        self.jobs: dict[str, FakeJob] = {}
        self.calls: list[tuple[str, dict]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._throttle: Counter = Counter()
        self._lock = threading.Lock()
        model = client.meta.service_model
        self._shapes = {
            op: model.operation_model(op).output_shape
            for op in (
                "CreateImportJob",
                "GetImportJob",
                "GetImportJobs",
                "GetSegments",
                "CreateSegment",
                "UpdateSegment",
            )
        }
        self.segments: dict[str, dict] = {}
        client.meta.events.register("before-parameter-build.pinpoint.*", self._keep_params)
        client.meta.events.register("before-call.pinpoint.*", self._answer)

    def throttle(self, operation: str, times: int) -> None:
        """The next ``times`` calls of ``operation`` get TooManyRequestsException (429)."""
        self._throttle[operation] += times

    def created(self) -> list[FakeJob]:
        return sorted(self.jobs.values(), key=lambda j: j.created)

    # botocore hooks ------------------------------------------------------------
    @staticmethod
    def _keep_params(params, context, **kwargs):
        context["lakeseg_api_params"] = json.loads(json.dumps(params, default=str))

    def _answer(self, model, context, **kwargs):
        op = model.name
        params = context.get("lakeseg_api_params", {})
        with self._lock:
            self.calls.append((op, params))
            if self._throttle[op] > 0:
                self._throttle[op] -= 1
                return self._error(429, "TooManyRequestsException", "Too many requests")
            handler = getattr(self, f"_{op}", None)
            if handler is None:
                raise AssertionError(f"FakePinpoint does not serve {op}")
            result = handler(params)
        if isinstance(result, tuple):
            return result
        validate_parameters(result, self._shapes[op])
        return AWSResponse(None, 200, {}, None), {
            **result,
            "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "fake"},
        }

    @staticmethod
    def _error(status: int, code: str, message: str):
        return AWSResponse(None, status, {}, None), {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": f"req-{uuid.uuid4().hex[:8]}"},
        }

    # operations ----------------------------------------------------------------
    def _CreateImportJob(self, params: dict):
        if params["ApplicationId"] != APP_ID:
            return self._error(404, "NotFoundException", "Resource not found")
        request = params["ImportJobRequest"]
        files, rows = self._read_folder(request["S3Url"])
        job = FakeJob(id=uuid.uuid4().hex, request=request, files=files, rows=rows, created=time.monotonic())
        self.jobs[job.id] = job
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return {"ImportJobResponse": job_response(job.id, "CREATED", request["S3Url"])}

    def _GetImportJob(self, params: dict):
        job = self.jobs.get(params["JobId"])
        if job is None or params["ApplicationId"] != APP_ID:
            return self._error(404, "NotFoundException", "Resource not found")
        job.polls += 1
        if job.final is None and job.polls >= self.polls and time.monotonic() - job.created >= self.hold:
            job.final = self.verdict(job)
            self.in_flight -= 1
        state = dict(job.final or {"JobStatus": "PROCESSING"})
        status = state.pop("JobStatus")
        return {"ImportJobResponse": job_response(job.id, status, job.request["S3Url"], **state)}

    def _GetImportJobs(self, params: dict):
        if params["ApplicationId"] != APP_ID:
            return self._error(404, "NotFoundException", "Resource not found")
        items = []
        for job in sorted(self.jobs.values(), key=lambda j: -j.created):
            state = dict(job.final or {"JobStatus": "PROCESSING"})
            status = state.pop("JobStatus")
            items.append(job_response(job.id, status, job.request["S3Url"], **state))
        return {"ImportJobsResponse": {"Item": items}}

    def _segment(self, seg_id: str, request: dict) -> dict:
        return {
            "ApplicationId": APP_ID,
            "Arn": f"arn:aws:mobiletargeting:{REGION}:{ACCOUNT}:apps/{APP_ID}/segments/{seg_id}",
            "CreationDate": "2026-11-25T03:00:00.000Z",
            "Id": seg_id,
            "Name": request["Name"],
            "Dimensions": request["Dimensions"],
            "SegmentType": "DIMENSIONAL",
            "Version": 1,
        }

    def _GetSegments(self, params: dict):
        return {"SegmentsResponse": {"Item": list(self.segments.values())}}

    def _CreateSegment(self, params: dict):
        seg = self._segment(uuid.uuid4().hex, params["WriteSegmentRequest"])
        self.segments[seg["Id"]] = seg
        return {"SegmentResponse": seg}

    def _UpdateSegment(self, params: dict):
        seg = self._segment(params["SegmentId"], params["WriteSegmentRequest"])
        self.segments[seg["Id"]] = {**seg, "Version": self.segments[seg["Id"]]["Version"] + 1}
        return {"SegmentResponse": self.segments[seg["Id"]]}

    def _read_folder(self, s3_url: str) -> tuple[list[str], int]:
        if self.s3 is None:
            return [], 0
        bucket, _, prefix = s3_url[5:].partition("/")
        files, rows = [], 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                body = self.s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode("utf-8")
                files.append(obj["Key"])
                rows += max(0, sum(1 for _ in csv.reader(io.StringIO(body))) - 1)
        return files, rows


# --------------------------------------------------------------------------- the deployed tail
@dataclass
class ImportTail:
    """The state machine, its topic and an SQS queue subscribed to the topic, all in moto."""

    sfn: object
    sqs: object
    state_machine_arn: str
    topic_arn: str
    queue_url: str
    seen: list[dict] = field(default_factory=list)

    def start(self, name: str, payload: dict) -> str:
        return self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(payload))[
            "executionArn"
        ]

    def wait(self, execution_arn: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            if time.monotonic() > deadline:
                raise AssertionError(f"{execution_arn} still running after {timeout} s")
            time.sleep(0.02)

    def messages(self) -> list[dict]:
        """Every SNS message delivered so far (raw delivery: the body is the report)."""
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not got:
                return list(self.seen)
            for m in got:
                self.seen.append(
                    {
                        "body": json.loads(m["Body"]),
                        "attributes": {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()},
                    }
                )
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def history(self, execution_arn: str) -> list[dict]:
        return self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]


def deploy_import_tail(poll_seconds: int = 0, max_polls: int = 1000, name: str = "lakeseg-import-tail") -> ImportTail:
    """Create what the stack creates for the tail (inside an active mock_aws)."""
    sns, sqs, sfn = client("sns"), client("sqs"), client("stepfunctions")
    topic_arn = sns.create_topic(Name=f"{name}-topic", Attributes={"KmsMasterKeyId": "alias/aws/sns"})["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"{name}-oncall")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    definition = render_asl(
        ImportRoleArn=IMPORT_ROLE_ARN, SnsTopicArn=topic_arn, PollIntervalSeconds=poll_seconds, MaxPolls=max_polls
    )
    arn = sfn.create_state_machine(name=name, definition=definition, roleArn=SFN_ROLE_ARN, type="STANDARD")[
        "stateMachineArn"
    ]
    return ImportTail(sfn=sfn, sqs=sqs, state_machine_arn=arn, topic_arn=topic_arn, queue_url=queue_url)
