"""A pytest plugin that records every AWS API call lakeseg's own code makes (IAM conformance).

Loaded with ``-p tests.iam.recorder`` and ``LAKESEG_IAM_RECORD=<dir>``: each test process (each
xdist worker) appends one JSON line per call to ``<dir>/calls-<pid>.jsonl``.

How a call is recorded: every botocore client gets a ``provide-client-params`` handler (the first
event of a call, before Stubber and moto answer). The handler walks the Python stack outward:

- the call belongs to lakeseg when a frame of the ``sync`` package is met before any frame of
  moto (moto's Step Functions interpreter calls Pinpoint as the *state machine's* role) or of the
  tests (a fake that plays Athena and writes the UNLOAD's files); calls from test set-up code
  (creating buckets, seeding Glue) meet no ``sync`` frame and are skipped;
- the *component* is the first frame whose ``self`` is one of lakeseg's AWS-facing classes (or
  the module for function-level callers), and its configured roots (bucket and prefix of the
  state store, the import URL, the staging dir, the work group, ...) are recorded with it, so the
  evaluator can rebase the test's names onto a deployment's.

boto3's managed transfers (``upload_file``/``download_file``) run their S3 calls on worker threads
whose stack holds no ``sync`` frame; the plugin records them at ``S3Transfer`` on the caller's
thread instead, as the operations IAM sees (PutObject / GetObject) -- and skips the worker calls.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

ENV = "LAKESEG_IAM_RECORD"
REPO = Path(__file__).resolve().parents[2]
SYNC = str(REPO / "sync") + os.sep
TESTS = str(REPO / "tests") + os.sep
_lock = threading.Lock()

# class name -> (component, attributes that root its resources)
COMPONENTS = {
    "S3StateStore": ("state", ("bucket", "prefix", "kms_key_id")),
    "PinpointDestination": ("pinpoint", ("application_id", "import_s3_url", "mode", "state_machine_arn", "kms_key_id")),
    "CustomerProfilesDestination": ("customer_profiles", ("domain_name",)),
    "AthenaReader": ("athena_reader", ("bucket", "base", "work_group")),
    "GlueImportsTable": ("glue_imports", ("database",)),
    "GlueTables": ("lake_diff", ("database",)),  # the diff in Athena's tables (sync/run/pushdown)
}
# The Athena double (tests/pushdown/athena_double.py) passes these calls through to moto unchanged: a frame of
# them stands for Athena's API itself, not for a test's fake (its own S3 and Glue reads, Athena's, are skipped).
PASS_THROUGH = (
    str(REPO / "tests" / "pushdown" / "athena_double.py"),
    {"start_query_execution", "get_query_execution", "stop_query_execution"},
)
MODULES = {"digest_key": "digest", "outcome": "outcome"}
KEEP = {
    "Bucket",
    "Key",
    "Prefix",
    "Delete",
    "stateMachineArn",
    "executionArn",
    "name",
    "ApplicationId",
    "SegmentId",
    "JobId",
    "DomainName",
    "SegmentDefinitionName",
    "DatabaseName",
    "Name",
    "TableName",
    "WorkGroup",
    "QueryExecutionId",
    "QueryString",
    "QueryExecutionContext",
    "ResultConfiguration",
    "SecretId",
    "TopicArn",
    "Namespace",
    "SSEKMSKeyId",
    "ServerSideEncryption",
    "CopySource",
    "statusFilter",
    "ResourceArn",
}


def _component(frame) -> dict | None:
    """Walk outward from the hook: None for a call lakeseg did not make, else its component and roots."""
    in_sync = False
    while frame is not None:
        name = frame.f_code.co_filename
        if name == __file__ or (name == PASS_THROUGH[0] and frame.f_code.co_name in PASS_THROUGH[1]):
            frame = frame.f_back
            continue
        if not in_sync and (f"{os.sep}moto{os.sep}" in name or name.startswith(TESTS)):
            return None  # moto's own interpreter, or a test's fake answering for AWS
        if name.startswith(SYNC):
            in_sync = True
            me = frame.f_locals.get("self")
            known = COMPONENTS.get(type(me).__name__) if me is not None else None
            if known:
                comp, attrs = known
                return {"component": comp, "roots": {a: getattr(me, a, None) for a in attrs}}
            module = Path(name).stem
            if module in MODULES:
                return {"component": MODULES[module], "roots": {}}
        frame = frame.f_back
    return {"component": "unknown", "roots": {}} if in_sync else None


def _params(params: dict) -> dict:
    out = {}
    for key, value in params.items():
        if key not in KEEP:
            continue
        if key == "Delete":
            value = {"Objects": [{"Key": o.get("Key")} for o in value.get("Objects", [])]}
        out[key] = value
    if "TableInput" in params:
        out["TableName"] = params["TableInput"].get("Name")
    return out


def _write(record: dict) -> None:
    folder = os.environ.get(ENV)
    if not folder:
        return
    line = json.dumps(record, default=str, sort_keys=True)
    with _lock, open(Path(folder) / f"calls-{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
        f.write(line + "\n")


def record(service: str, operation: str, params: dict, region: str | None, frame, via: str = "api") -> None:
    found = _component(frame)
    if found is None:
        return
    _write(
        {"service": service, "operation": operation, "params": _params(params), "region": region, "via": via, **found}
    )


def _on_params(params, model, context=None, **_):
    """provide-client-params handler: record, never change the request (returns None)."""
    if _in_transfer(sys._getframe()):
        return None  # a managed transfer's worker: recorded at S3Transfer on the caller's thread
    service = model.service_model.metadata.get("signingName") or model.service_model.endpoint_prefix
    record(service, model.name, params, (context or {}).get("client_region"), sys._getframe(1))
    return None


def _in_transfer(frame) -> bool:
    while frame is not None:
        if f"{os.sep}s3transfer{os.sep}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def _install() -> None:
    import botocore.session
    from boto3.s3.transfer import S3Transfer

    create = botocore.session.Session.create_client

    def create_client(self, *args, **kwargs):
        client = create(self, *args, **kwargs)
        region = client.meta.region_name

        def handler(params, model, context=None, **kw):
            return _on_params(params, model, {"client_region": region}, **kw)

        client.meta.events.register("provide-client-params.*.*", handler)
        return client

    botocore.session.Session.create_client = create_client

    upload, download = S3Transfer.upload_file, S3Transfer.download_file

    def upload_file(self, filename, bucket, key, *args, **kwargs):
        extra = kwargs.get("extra_args") or (args[1] if len(args) > 1 else None) or {}
        record("s3", "PutObject", {"Bucket": bucket, "Key": key, **extra}, None, sys._getframe(1), via="transfer")
        return upload(self, filename, bucket, key, *args, **kwargs)

    def download_file(self, bucket, key, filename, *args, **kwargs):
        record("s3", "GetObject", {"Bucket": bucket, "Key": key}, None, sys._getframe(1), via="transfer")
        return download(self, bucket, key, filename, *args, **kwargs)

    S3Transfer.upload_file, S3Transfer.download_file = upload_file, download_file


def pytest_configure(config):
    if os.environ.get(ENV):
        Path(os.environ[ENV]).mkdir(parents=True, exist_ok=True)
        _install()
