"""Amazon Connect Customer Profiles, offline: a model-validated fake and a real HTTPS upload server.

moto (5.x) has no customer-profiles service. ``FakeCustomerProfiles`` answers a
real boto3 ``customer-profiles`` client through botocore's event hooks (like
``FakePinpoint``): the client validates every request against the service
model (parameter validation on), and every response is validated against the
operation's output shape here before botocore sees it.

``UploadServer`` is a real HTTPS server (``http.server`` in a thread, TLS with
a throwaway self-signed certificate for 127.0.0.1) standing in for the S3
pre-signed URL. It accepts only ``PUT`` of a URL the fake issued and not yet
expired, with the three SSE-C headers: the job's ClientToken as key, the
base64 MD5 of that key, AES256. The body it stores is what the fake later
"ingests" on StartUploadJob, so tests compare it byte for byte with the CSV.

Profiles the fake ingests carry an expiry of DataExpiry days from the fake's
clock, so a test with a controllable clock can ask which profiles are alive.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import ipaddress
import json
import os
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from botocore.validate import validate_parameters

REGION = "us-east-1"
ACCOUNT = "123456789012"
DOMAIN = "lakeseg-test"
URL_LIFETIME = dt.timedelta(minutes=15)


class Clock:
    """A controllable UTC wall clock shared by the fake, the server and the code under test."""

    def __init__(self, start: dt.datetime | None = None):
        self.now = start or dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs) -> None:
        self.now += dt.timedelta(**kwargs)


_SESSION: list = []


def session():
    """One boto3 session per test run (service models load once)."""
    import boto3

    if not _SESSION:
        _SESSION.append(boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"))
    return _SESSION[0]


def client():
    """A real customer-profiles client (parameter validation on).

    The fake answers every call before it is sent: the credentials are never used.
    """
    return session().client("customer-profiles", region_name=REGION)


# --------------------------------------------------------------------------- TLS for 127.0.0.1
def self_signed(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for 127.0.0.1 (the certificate is also the CA bundle)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


@dataclass
class Issued:
    job_id: str
    token: str
    valid_until: dt.datetime


@dataclass
class Put:
    path: str
    status: int
    reason: str
    headers: dict


class UploadServer:
    """HTTPS on 127.0.0.1 that takes pre-signed PUTs the way S3 does with SSE-C (see module doc)."""

    def __init__(self, tls: tuple[Path, Path], clock: Clock):
        self.clock = clock
        self.issued: dict[str, Issued] = {}  # url path -> what the fake issued
        self.bodies: dict[str, bytes] = {}  # job id -> body stored
        self.puts: list[Put] = []
        self.fail_next: list[int] = []  # statuses to answer instead of storing, in order
        self.expire_in_transit = 0  # answer the next N uploads 403 "Request has expired"
        self.ok_status = 200  # the status a stored upload is answered with (S3 answers 200)
        self.delay = 0.0  # seconds to wait before answering a PUT (a slow network)
        self._lock = threading.Lock()
        self.cert, key = tls
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, status: int, reason: str) -> None:
                with server._lock:
                    server.puts.append(Put(self.path, status, reason, {k.lower(): v for k, v in self.headers.items()}))
                body = b"" if status == 204 else f"<Error><Code>{reason}</Code></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._answer(405, "MethodNotAllowed")

            do_POST = do_GET

            def do_PUT(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if server.delay:
                    time.sleep(server.delay)
                issued = server.issued.get(self.path)
                if issued is None:
                    return self._answer(403, "SignatureDoesNotMatch")
                if server.clock() >= issued.valid_until:
                    return self._answer(403, "AccessDenied: Request has expired")
                if server.expire_in_transit:
                    server.expire_in_transit -= 1
                    return self._answer(403, "AccessDenied: Request has expired")
                h = {k.lower(): v for k, v in self.headers.items()}
                key = base64.b64decode(issued.token)
                if h.get("x-amz-server-side-encryption-customer-algorithm") != "AES256":
                    return self._answer(400, "InvalidEncryptionAlgorithmError")
                if h.get("x-amz-server-side-encryption-customer-key") != issued.token:
                    return self._answer(403, "AccessDenied: wrong customer key")
                if (
                    h.get("x-amz-server-side-encryption-customer-key-md5")
                    != base64.b64encode(hashlib.md5(key).digest()).decode()
                ):
                    return self._answer(400, "InvalidArgument: The calculated MD5 hash of the key did not match")
                if server.fail_next:
                    return self._answer(server.fail_next.pop(0), "InternalError")
                with server._lock:
                    server.bodies[issued.job_id] = body
                self._answer(server.ok_status, "OK")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def issue(self, job_id: str, valid_until: dt.datetime) -> tuple[str, str]:
        token = base64.b64encode(os.urandom(32)).decode()
        path = f"/lakeseg-uploads/{job_id}/{uuid.uuid4().hex}?X-Amz-Signature={uuid.uuid4().hex}"
        self.issued[path] = Issued(job_id, token, valid_until)
        return f"https://127.0.0.1:{self.port}{path}", token

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------- the service
@dataclass
class FakeUploadJob:
    id: str
    name: str
    fields: dict
    unique_key: str
    expiry: int
    created: dt.datetime
    status: str = "CREATED"
    polls: int = 0
    rows: list[dict] = field(default_factory=list)
    summary: dict | None = None
    reason: str | None = None


Verdict = Callable[[FakeUploadJob], tuple[str, set]]  # (final status, unique-key values refused)


def accept_all(job: FakeUploadJob) -> tuple[str, set]:
    return "SUCCEEDED", set()


class FakeCustomerProfiles:
    """Upload jobs, segment definitions and a domain with state (see module doc)."""

    OPS = (
        "GetDomain",
        "ListUploadJobs",
        "CreateUploadJob",
        "GetUploadJobPath",
        "StartUploadJob",
        "GetUploadJob",
        "StopUploadJob",
        "GetSegmentDefinition",
        "CreateSegmentDefinition",
        "DeleteSegmentDefinition",
    )

    def __init__(
        self, client, server: UploadServer, clock: Clock, *, polls: int = 1, verdict: Verdict = accept_all, events=None
    ):
        """Answer ``client``; with ``events`` (a boto3 Session's), every client made from it afterwards."""
        self.client = client
        self.server = server
        self.clock = clock
        self.polls = polls
        self.verdict = verdict
        self.domain = DOMAIN
        self.jobs: dict[str, FakeUploadJob] = {}
        self.calls: list[tuple[str, dict]] = []
        self.profiles: dict[str, dict] = {}  # unique key value -> attributes + "_expires"
        self.definitions: dict[str, dict] = {}
        self.expired_paths = 0  # the next N GetUploadJobPath answers are already past ValidUntil
        self.hang = False  # jobs never finish
        self.create_then_fail = 0  # the next N CreateUploadJob create a job, then answer 500
        self.denied: set[str] = set()  # operations answered AccessDeniedException
        self.unreachable: set[str] = set()  # operations that fail to connect (EndpointConnectionError)
        self.errors: dict[str, list[tuple[int, str, bool]]] = {}  # op -> (status, code, after doing it), in order
        self.page_size = 100  # ListUploadJobs items per page (at most MaxResults)
        self.list_without_status: set[str] = set()  # job ids listed without a Status
        self.path_validity: list = []  # next GetUploadJobPath answers: ValidUntil - now (None: no ValidUntil)
        self.naive_valid_until = False  # ValidUntil without a time zone (UTC)
        self.path_url: str | None = None  # answer this Url instead of the upload server's
        self.path_token: str | None = None  # answer this ClientToken instead of a fresh key
        self.in_flight = self.max_in_flight = 0
        self._throttle: Counter = Counter()
        self._lock = threading.RLock()
        model = client.meta.service_model
        self._shapes = {op: model.operation_model(op).output_shape for op in self.OPS}
        events = events or client.meta.events
        events.register("before-parameter-build.customer-profiles.*", self._keep_params)
        events.register("before-call.customer-profiles.*", self._answer)

    def throttle(self, operation: str, times: int) -> None:
        self._throttle[operation] += times

    def fail(
        self, operation: str, status: int, code: str, *, times: int = 1, after: bool = False, skip: int = 0
    ) -> None:
        """Answer ``times`` calls of ``operation`` (after ``skip`` normal ones) with an error; ``after``: do the
        call's work first, as a server that fails after acting does."""
        self.errors.setdefault(operation, []).extend([None] * skip + [(status, code, after)] * times)

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def alive(self, at: dt.datetime | None = None) -> dict[str, dict]:
        at = at or self.clock()
        return {k: v for k, v in self.profiles.items() if v["_expires"] > at}

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
                return self._error(429, "ThrottlingException", "Rate exceeded")
            if op in self.unreachable:
                raise EndpointConnectionError(endpoint_url=f"https://profile.{REGION}.amazonaws.com/")
            if op in self.denied:
                return self._error(403, "AccessDeniedException", "not authorized")
            if params.get("DomainName") != self.domain:
                return self._error(404, "ResourceNotFoundException", "Domain not found")
            planned = self.errors.get(op)
            error = planned.pop(0) if planned else None
            if error is not None:
                status, code, after = error
                if after:
                    getattr(self, f"_{op}")(params)
                return self._error(status, code, "injected")
            result = getattr(self, f"_{op}")(params)
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
    def _GetDomain(self, params):
        return {
            "DomainName": self.domain,
            "DefaultExpirationDays": 366,
            "CreatedAt": self.clock(),
            "LastUpdatedAt": self.clock(),
        }

    def _item(self, job: FakeUploadJob) -> dict:
        item = {
            "JobId": job.id,
            "DisplayName": job.name,
            "Status": job.status,
            "CreatedAt": job.created,
            "DataExpiry": job.expiry,
        }
        if job.id in self.list_without_status:
            del item["Status"]
        if job.reason:
            item["StatusReason"] = job.reason
        return item

    def _ListUploadJobs(self, params):
        jobs = sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)
        start = int(params.get("NextToken") or 0)
        end = start + min(self.page_size, params.get("MaxResults", 20))
        page = {"Items": [self._item(j) for j in jobs[start:end]]}
        if end < len(jobs):
            page["NextToken"] = str(end)
        return page

    def _CreateUploadJob(self, params):
        job = FakeUploadJob(
            uuid.uuid4().hex,
            params["DisplayName"],
            params["Fields"],
            params["UniqueKey"],
            params.get("DataExpiry", 14),
            self.clock(),
        )
        self.jobs[job.id] = job
        if self.create_then_fail:
            self.create_then_fail -= 1
            return self._error(500, "InternalServerException", "internal error")
        return {"JobId": job.id}

    def _job(self, params):
        return self.jobs.get(params["JobId"])

    def _GetUploadJobPath(self, params):
        job = self._job(params)
        if job is None:
            return self._error(404, "ResourceNotFoundException", "Job not found")
        if self.expired_paths:
            self.expired_paths -= 1
            lifetime = dt.timedelta(seconds=-1)
        else:
            lifetime = self.path_validity.pop(0) if self.path_validity else URL_LIFETIME
        valid_until = self.clock() + (lifetime if lifetime is not None else URL_LIFETIME)
        url, token = self.server.issue(job.id, valid_until)
        out = {"Url": self.path_url or url, "ClientToken": self.path_token or token}
        if lifetime is not None:
            out["ValidUntil"] = valid_until.replace(tzinfo=None) if self.naive_valid_until else valid_until
        return out

    def _StartUploadJob(self, params):
        job = self._job(params)
        if job is None:
            return self._error(404, "ResourceNotFoundException", "Job not found")
        if job.status != "CREATED":
            return self._error(400, "BadRequestException", f"job is {job.status}")
        body = self.server.bodies.get(job.id)
        job.status = "IN_PROGRESS"
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if body is None:
            self._finish(job, "FAILED", reason="VALIDATION_FAILURE")
            return {}
        reader = csv.DictReader(io.StringIO(body.decode("utf-8"), newline=""))
        if sorted(reader.fieldnames or []) != sorted(job.fields) or job.unique_key not in job.fields:
            self._finish(job, "FAILED", reason="VALIDATION_FAILURE")
            return {}
        job.rows = list(reader)
        return {}

    def _finish(self, job: FakeUploadJob, status: str, refused: set = frozenset(), reason: str | None = None):
        job.status, job.reason = status, reason
        self.in_flight -= 1
        failed = created = updated = 0
        if status in ("SUCCEEDED", "PARTIALLY_SUCCEEDED"):
            for row in job.rows:
                key = row[job.unique_key]
                if key in refused:
                    failed += 1
                    continue
                target = {job.fields[c]["Target"]: v for c, v in row.items() if c != job.unique_key}
                if key in self.profiles and self.profiles[key]["_expires"] > self.clock():
                    updated += 1
                else:
                    created += 1
                    self.profiles[key] = {}
                expires = self.clock() + dt.timedelta(days=job.expiry)
                self.profiles[key].update(target)
                self.profiles[key]["_expires"] = max(expires, self.profiles[key].get("_expires", expires))
        job.summary = {"CreatedRecords": created, "UpdatedRecords": updated, "FailedRecords": failed}

    def _GetUploadJob(self, params):
        job = self._job(params)
        if job is None:
            return self._error(404, "ResourceNotFoundException", "Job not found")
        if job.status == "IN_PROGRESS":
            job.polls += 1
            if job.polls >= self.polls and not self.hang:
                status, refused = self.verdict(job)
                if status == "SUCCEEDED" and refused:
                    status = "PARTIALLY_SUCCEEDED"
                self._finish(job, status, refused, "INTERNAL_FAILURE" if status == "FAILED" else None)
        out = {
            "JobId": job.id,
            "DisplayName": job.name,
            "Status": job.status,
            "CreatedAt": job.created,
            "Fields": job.fields,
            "UniqueKey": job.unique_key,
            "DataExpiry": job.expiry,
        }
        if job.summary is not None:
            out["ResultsSummary"] = job.summary
            out["CompletedAt"] = self.clock()
        if job.reason:
            out["StatusReason"] = job.reason
        return out

    def _StopUploadJob(self, params):
        job = self._job(params)
        if job is None:
            return self._error(404, "ResourceNotFoundException", "Job not found")
        if job.status in ("CREATED", "IN_PROGRESS"):
            if job.status == "IN_PROGRESS":
                self.in_flight -= 1
            job.status = "STOPPED"
        return {}

    def _GetSegmentDefinition(self, params):
        found = self.definitions.get(params["SegmentDefinitionName"])
        if found is None:
            return self._error(404, "ResourceNotFoundException", "Segment definition not found")
        return found

    def _CreateSegmentDefinition(self, params):
        name = params["SegmentDefinitionName"]
        if name in self.definitions:
            return self._error(400, "BadRequestException", "already exists")
        self.definitions[name] = {
            "SegmentDefinitionName": name,
            "DisplayName": params["DisplayName"],
            "SegmentGroups": params["SegmentGroups"],
            "CreatedAt": self.clock(),
            "Tags": params.get("Tags", {}),
            **({"Description": params["Description"]} if "Description" in params else {}),
            "SegmentDefinitionArn": f"arn:aws:profile:{REGION}:{ACCOUNT}:domains/{self.domain}/"
            f"segment-definitions/{name}",
        }
        return {k: v for k, v in self.definitions[name].items() if k != "SegmentGroups"}

    def _DeleteSegmentDefinition(self, params):
        if self.definitions.pop(params["SegmentDefinitionName"], None) is None:
            return self._error(404, "ResourceNotFoundException", "Segment definition not found")
        return {"Message": "deleted"}


# --------------------------------------------------------------------------- test helpers
RUN_ID = "20261125T030000123Z-abc123"
FIELDS = ("Id", "Address", "ChannelType", "User.UserAttributes.HasClicked", "Metrics.Opens")


class Sleeps:
    """The destination's ``sleep``: records each wait and never sleeps.

    A wait that never ends (a poll whose job never finishes, when the code under
    test is broken) fails the test after ``limit`` waits instead of looping until
    the poll's deadline hours later.
    """

    def __init__(self, limit: int = 200, then: Callable[[int], None] | None = None):
        self.calls: list[float] = []
        self.limit = limit
        self.then = then  # called with the number of waits so far: time passing, for the fake

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if len(self.calls) > self.limit:
            raise AssertionError(f"more than {self.limit} waits: a wait that never ends")
        if self.then:
            self.then(len(self.calls))


def write_csv(path: Path, rows: int, start: int = 0) -> Path:
    """An import file as the sync writes it (Pinpoint header ``FIELDS``), ``rows`` rows from ep-<start>."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(FIELDS)
        for i in range(start, start + rows):
            channel = "SMS" if i % 3 == 0 else "EMAIL"
            address = f"+1555000{i:04d}" if channel == "SMS" else f"user{i}@example.com"
            w.writerow([f"ep-{i}", address, channel, "Yes, really" if i % 2 else "Yes", str(i)])
    return path


def delivery(files, segment="seg_email_clickers", run_id=RUN_ID, segment_name=None, segment_filter=None):
    from sync.destinations.base import SegmentDelivery

    return SegmentDelivery(
        run_id=run_id,
        segment=segment,
        files=tuple(files),
        fields=FIELDS,
        counts={"rows": 10, "entered": 10, "changed": 0, "exited": 0, "unchanged": 0},
        segment_name=segment_name,
        segment_filter=segment_filter or {},
    )


def destination(fake, server, clock, **overrides):
    """The destination under test, talking to ``fake`` and trusting ``server``'s certificate; no real waits."""
    from sync.destinations.customer_profiles import CustomerProfilesDestination

    # http_timeout: a local PUT takes milliseconds; an upload that hangs (a broken body) fails in seconds, not 5 min
    settings = dict(
        domain_name=DOMAIN,
        poll_seconds=0,
        retry_base_seconds=0,
        verify=str(server.cert),
        wall_clock=clock,
        sleep=Sleeps(),
        http_timeout=10,
    )
    settings.update(overrides)
    return CustomerProfilesDestination(profiles=fake.client, **settings)


def expected_csv(path: Path) -> bytes:
    """The upload the mapping promises, computed independently of the destination's code."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["AccountNumber", "EmailAddress", "PhoneNumber", "HasClicked", "Opens"])
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            email = row["Address"] if row["ChannelType"] == "EMAIL" else ""
            phone = row["Address"] if row["ChannelType"] == "SMS" else ""
            w.writerow([row["Id"], email, phone, row["User.UserAttributes.HasClicked"], row["Metrics.Opens"]])
    return out.getvalue().encode()


def logs(caplog, logger: str = "sync.destinations.customer_profiles") -> list[tuple[str, str]]:
    """The destination's log lines, (level, message), in order."""
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == logger]


def only_job(fake) -> str:
    """The id of the one upload job the fake holds (fails when there is not exactly one)."""
    (job_id,) = fake.jobs
    return job_id
