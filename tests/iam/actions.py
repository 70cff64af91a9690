"""From a recorded call to the IAM requests it makes in one deployment.

A recorded call carries the test's own names (a moto bucket, a state machine the test created).
``Deployment`` holds the names a deployed stack gives the runner (read from the CodeBuild project's
environment, which the stack fills from its own resources), and ``requests`` rebases each call onto
them: an S3 key keeps its path below the component's root (state prefix, import prefix, Athena
staging dir), a state machine keeps its execution names, a Glue table its name.

IAM actions: ``<prefix>:<Operation>`` with the prefixes IAM uses (``mobiletargeting`` for Pinpoint,
``profile`` for Customer Profiles, ``states`` for Step Functions) and these exceptions:
S3 HeadObject -> s3:GetObject, ListObjects(V2) -> s3:ListBucket (with ``s3:prefix``), CopyObject ->
s3:GetObject on the source + s3:PutObject, multipart upload calls -> s3:PutObject, DeleteObjects ->
s3:DeleteObject per key. Calls a service makes with the caller's credentials are added: S3 with the
stack's CMK (kms:GenerateDataKey / kms:Decrypt via S3), and Athena's StartQueryExecution (Glue reads
of the query's database and table, S3 writes of the results and the UNLOAD under the staging dir).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .policy import Request

PREFIX = {
    "s3": "s3",
    "states": "states",
    "mobiletargeting": "mobiletargeting",
    "profile": "profile",
    "glue": "glue",
    "athena": "athena",
    "secretsmanager": "secretsmanager",
    "sns": "sns",
    "monitoring": "cloudwatch",
    "cloudwatch": "cloudwatch",
    "ssm": "ssm",
    "kms": "kms",
}
MULTIPART = {"CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}


def split_s3(url: str) -> tuple[str, str]:
    assert url.startswith("s3://"), url
    bucket, _, key = url[5:].partition("/")
    return bucket, "/".join(p for p in key.split("/") if p)


@dataclass(frozen=True)
class Deployment:
    """What a deployed stack hands the principal that runs lakeseg (env of the runner)."""

    partition: str
    region: str
    account: str
    env: dict
    kms_key_arn: str | None
    digest_secret_arn: str | None  # DigestKeySecretArn; unset: lakeseg reads lakeseg/digest-key

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account if account else ''}:{resource}"
        )

    def setting(self, name: str) -> str:
        value = self.env.get(name)
        if not value:
            raise LookupError(f"the runner's environment has no {name} (empty or missing in the stack)")
        return value


def _rebase(key: str, root: str, deploy_prefix: str) -> str:
    """The test's key below its component root -> the same path below the deployment's prefix."""
    root = root.strip("/")
    rel = key[len(root) + 1 :] if root and key.startswith(root + "/") else ("" if key == root else key)
    return "/".join(p for p in (deploy_prefix, rel) if p)


def _s3_root(call: dict, d: Deployment) -> tuple[str, str, str]:
    """(test root prefix, deployment bucket, deployment prefix) for an S3 call's component."""
    roots, comp = call["roots"], call["component"]
    if comp == "state":
        bucket, prefix = split_s3(d.setting("LAKESEG_STATE_URL"))
        return roots.get("prefix") or "", bucket, prefix
    if comp == "pinpoint":
        bucket, prefix = split_s3(d.setting("LAKESEG_IMPORT_S3_URL"))
        return split_s3(roots["import_s3_url"])[1], bucket, prefix
    if comp == "athena_reader":
        bucket, prefix = split_s3(d.setting("LAKESEG_ATHENA_STAGING_DIR"))
        return roots.get("base") or "", bucket, prefix
    raise LookupError(f"an S3 call from component {comp}, which has no S3 root in a deployment")


def _kms(d: Deployment, action: str) -> list[Request]:
    if not d.kms_key_arn:
        return []
    return [Request(action, d.kms_key_arn, {"kms:ViaService": f"s3.{d.region}.amazonaws.com"})]


def s3_requests(call: dict, d: Deployment) -> list[Request]:
    op, p = call["operation"], call["params"]
    root, bucket, prefix = _s3_root(call, d)
    obj = lambda key: f"arn:{d.partition}:s3:::{bucket}/{_rebase(key, root, prefix)}"  # noqa: E731
    if op in ("GetObject", "HeadObject"):
        return [Request("s3:GetObject", obj(p["Key"]))] + _kms(d, "kms:Decrypt")
    if op == "PutObject" or op in MULTIPART:
        return [Request("s3:PutObject", obj(p["Key"]))] + _kms(d, "kms:GenerateDataKey")
    if op == "AbortMultipartUpload":
        return [Request("s3:AbortMultipartUpload", obj(p["Key"]))]
    if op == "DeleteObject":
        return [Request("s3:DeleteObject", obj(p["Key"]))]
    if op == "DeleteObjects":
        return [Request("s3:DeleteObject", obj(o["Key"])) for o in p["Delete"]["Objects"]]
    if op in ("ListObjectsV2", "ListObjects"):
        listed = _rebase(p.get("Prefix", ""), root, prefix) + ("/" if p.get("Prefix", "").endswith("/") else "")
        return [Request("s3:ListBucket", f"arn:{d.partition}:s3:::{bucket}", {"s3:prefix": listed})]
    if op == "CopyObject":
        raise LookupError("CopyObject: lakeseg makes none; map its source before allowing it")
    raise LookupError(f"no IAM mapping for s3:{op}")


def _sm(d: Deployment) -> tuple[str, str]:
    arn = d.setting("LAKESEG_STATE_MACHINE_ARN")
    return arn, arn.split(":stateMachine:")[1]


def states_requests(call: dict, d: Deployment) -> list[Request]:
    op, p = call["operation"], call["params"]
    arn, name = _sm(d)
    if "executionArn" in p:
        execution = p["executionArn"].rsplit(":", 1)[1]
        return [Request(f"states:{op}", d.arn("states", f"execution:{name}:{execution}"))]
    return [Request(f"states:{op}", arn)]


def pinpoint_requests(call: dict, d: Deployment) -> list[Request]:
    op, p = call["operation"], call["params"]
    # The service authorization reference: project-level calls (import jobs, segment listing and
    # creation) on the project ("apps"), calls on one segment on the segment.
    app = d.arn("mobiletargeting", f"apps/{d.setting('LAKESEG_PINPOINT_APP_ID')}")
    if op in ("GetSegment", "UpdateSegment", "DeleteSegment"):
        return [Request(f"mobiletargeting:{op}", f"{app}/segments/{p['SegmentId']}")]
    return [Request(f"mobiletargeting:{op}", app)]


def profile_requests(call: dict, d: Deployment) -> list[Request]:
    op, p = call["operation"], call["params"]
    domain = d.arn("profile", f"domains/{d.setting('LAKESEG_PROFILES_DOMAIN')}")
    if "JobId" in p:
        return [Request(f"profile:{op}", f"{domain}/upload-jobs/{p['JobId']}")]
    if "SegmentDefinitionName" in p:
        return [Request(f"profile:{op}", f"{domain}/segment-definitions/{p['SegmentDefinitionName']}")]
    return [Request(f"profile:{op}", domain)]


def _glue(d: Deployment, action: str, database: str, table: str | None = None) -> list[Request]:
    out = [Request(action, d.arn("glue", "catalog")), Request(action, d.arn("glue", f"database/{database}"))]
    if table:
        out.append(Request(action, d.arn("glue", f"table/{database}/{table}")))
    return out


def glue_requests(call: dict, d: Deployment) -> list[Request]:
    op, p = call["operation"], call["params"]
    schema = d.setting("LAKESEG_ATHENA_SCHEMA")
    if call["component"] == "lake_diff":  # the diff in Athena's tables, in the segments' own database
        table = "*" if op == "GetTables" else (p.get("TableName") or p.get("Name"))
        return _glue(d, f"glue:{op}", f"{schema}_segments", table)
    database = f"{schema}_imports"  # GlueImportsTable: <schema>_imports
    table = p.get("TableName") if op not in ("GetDatabase", "CreateDatabase") else None
    return _glue(d, f"glue:{op}", database, table)


_FROM = re.compile(r'\bFROM\s+"([^"]+)"\."([^"]+)"', re.I)
_TO = re.compile(r"\bTO\s+'s3://([^/']+)/([^']*)'", re.I)
_TABLE = re.compile(r'"([^"]+)"\."(lakeseg_diff_[^"]+)"')
_STATE_FILE = re.compile(r"'s3://[^/']+/((?:[^']*/)?)((?:snapshots|keys|lake-scratch)/[^']*)'")


def _state_object(d: Deployment, rel: str) -> str:
    bucket, prefix = split_s3(d.setting("LAKESEG_STATE_URL"))
    return f"arn:{d.partition}:s3:::{bucket}/{'/'.join(p for p in (prefix, rel) if p)}"


def _lake_diff_requests(d: Deployment, sql: str) -> list[Request]:
    """What the diff in Athena's statements make Athena do with the caller's credentials (sync/run/pushdown):
    read its Glue tables (in the segments' database) and the state store's files they name (``"$path"``) --
    the snapshot, the digest's key table, the Ids to resend -- and, for a compaction, write a new base into
    the segment's snapshot folder."""
    schema = d.setting("LAKESEG_ATHENA_SCHEMA")
    t = _TO.search(sql)
    target = t.group(2) if t else ""
    out: list[Request] = []
    tables = {table for _db, table in _TABLE.findall(sql)}
    for table in sorted(tables):
        out += _glue(d, "glue:GetTable", f"{schema}_segments", table)
    # The files Athena reads: those named by "$path", and every file under the key's and the Ids' tables.
    read = {rel for _root, rel in _STATE_FILE.findall(sql) if not (target and target.endswith(rel))}
    if any(t.endswith("_key") for t in tables):
        read.add("keys/fingerprint/key.parquet")
    if any(t.endswith("_dirty") for t in tables):
        read.add("lake-scratch/destination/segment/run/dirty/dirty.parquet")
    if any(t.endswith("_base") for t in tables):  # a base Athena wrote: its folder, read whole
        read.add("snapshots/destination/segment/lake-run-0a1b2c3d/part-0.parquet")
    bucket, prefix = split_s3(d.setting("LAKESEG_STATE_URL"))
    for rel in sorted(read):
        out.append(Request("s3:GetObject", _state_object(d, rel)))
        out.append(
            Request(
                "s3:ListBucket", f"arn:{d.partition}:s3:::{bucket}", {"s3:prefix": f"{prefix}/{rel.rsplit('/', 1)[0]}/"}
            )
        )
        out += _kms(d, "kms:Decrypt")
    found = _STATE_FILE.search(f"'s3://{target}'") if target else None
    if found:  # a compaction: Athena writes the new base into the segment's snapshot folder
        out.append(Request("s3:PutObject", _state_object(d, f"{found.group(2).rstrip('/')}/part-0.parquet")))
        out += _kms(d, "kms:GenerateDataKey")
    return out


def athena_requests(call: dict, d: Deployment) -> list[Request]:
    op, p = call["operation"], call["params"]
    work_group = d.setting("LAKESEG_ATHENA_WORK_GROUP")
    out = [Request(f"athena:{op}", d.arn("athena", f"workgroup/{work_group}"))]
    if op != "StartQueryExecution":
        return out
    # What Athena does with the caller's credentials: read the catalog, write results and the UNLOAD.
    schema = d.setting("LAKESEG_ATHENA_SCHEMA")
    m = _FROM.search(p.get("QueryString", ""))
    if m:  # a query that reads a table resolves it in its context database (default without one)
        context_db = (p.get("QueryExecutionContext") or {}).get("Database") or "default"
        if context_db != "default":
            context_db = f"{schema}_segments"  # the reader reads segment models only
        out += _glue(d, "glue:GetDatabase", context_db)
        out += _glue(d, "glue:GetTable", f"{schema}_segments", m.group(2))
        data_bucket, data_prefix = split_s3(d.setting("LAKESEG_ATHENA_DATA_DIR"))
        out.append(Request("s3:GetObject", f"arn:{d.partition}:s3:::{data_bucket}/{data_prefix}/{m.group(2)}/x"))
        out.append(
            Request(
                "s3:ListBucket", f"arn:{d.partition}:s3:::{data_bucket}", {"s3:prefix": f"{data_prefix}/{m.group(2)}/"}
            )
        )
    sql = p.get("QueryString", "")
    if "lakeseg_diff_" in sql:
        out += _lake_diff_requests(d, sql)
    root = call["roots"].get("base") or ""
    bucket, prefix = split_s3(d.setting("LAKESEG_ATHENA_STAGING_DIR"))
    out.append(Request("s3:GetBucketLocation", f"arn:{d.partition}:s3:::{bucket}"))
    out.append(Request("s3:PutObject", f"arn:{d.partition}:s3:::{bucket}/{prefix}/query-id.csv"))
    t = _TO.search(sql)
    if t and _STATE_FILE.search(f"'s3://{t.group(2)}'"):
        pass  # a compaction's UNLOAD writes into the state store (above), not the staging dir
    elif t:
        target = _rebase(t.group(2).rstrip("/"), root, prefix)
        out.append(Request("s3:PutObject", f"arn:{d.partition}:s3:::{bucket}/{target}/part-0.parquet"))
        out.append(Request("s3:ListBucket", f"arn:{d.partition}:s3:::{bucket}", {"s3:prefix": target + "/"}))
    return out


def secret_requests(call: dict, d: Deployment) -> list[Request]:
    """The digest key: DigestKeySecretArn (CodeBuild reads it at build start; a person or the workflow
    names it in digest_key), else the secret the settings fall back to, lakeseg/digest-key."""
    return [
        Request(
            "secretsmanager:GetSecretValue",
            d.digest_secret_arn or d.arn("secretsmanager", "secret:lakeseg/digest-key-AbCdEf"),
        )
    ]


def outcome_requests(call: dict, d: Deployment) -> list[Request]:
    op = call["operation"]
    if op == "Publish":  # to a topic encrypted with the stack's CMK, SNS uses the key as the caller
        key = (
            [
                Request(a, d.kms_key_arn, {"kms:ViaService": f"sns.{d.region}.amazonaws.com"})
                for a in ("kms:GenerateDataKey", "kms:Decrypt")
            ]
            if d.kms_key_arn
            else []
        )
        return [Request("sns:Publish", d.setting("LAKESEG_ALERT_TOPIC_ARN"))] + key
    if op == "PutMetricData":
        return [
            Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": d.setting("LAKESEG_METRICS_NAMESPACE")})
        ]
    raise LookupError(f"no IAM mapping for the outcome step's {call['service']}:{op}")


def requests(call: dict, d: Deployment) -> list[Request]:
    comp, service = call["component"], call["service"]
    if comp == "digest":
        return secret_requests(call, d)
    if comp == "outcome":
        return outcome_requests(call, d)
    if service == "s3":
        return s3_requests(call, d)
    handler = {
        "states": states_requests,
        "mobiletargeting": pinpoint_requests,
        "profile": profile_requests,
        "glue": glue_requests,
        "athena": athena_requests,
    }.get(service)
    if handler is None:
        raise LookupError(f"no IAM mapping for {service}:{call['operation']} (component {comp})")
    return handler(call, d)


def codebuild_requests(stack_params: dict, d: Deployment, project: dict) -> list[tuple[str, Request]]:
    """What CodeBuild itself does with the runner role before and around the buildspec (AWS CodeBuild
    user guide, "service role"): fetch the S3 source (the bundle; its bucket's ACL and location first),
    write the build log, and read SECRETS_MANAGER environment variables at build start."""
    bucket, key = stack_params["BucketName"], stack_params["BundleKey"]
    log_group = project["LogsConfig"]["CloudWatchLogs"]["GroupName"]
    out = [
        ("fetch the bundle", Request("s3:GetObject", f"arn:{d.partition}:s3:::{bucket}/{key}")),
        ("check the bundle bucket", Request("s3:GetBucketAcl", f"arn:{d.partition}:s3:::{bucket}")),
        ("check the bundle bucket", Request("s3:GetBucketLocation", f"arn:{d.partition}:s3:::{bucket}")),
        (
            "write the build log",
            Request("logs:CreateLogStream", d.arn("logs", f"log-group:{log_group}:log-stream:build-1")),
        ),
        (
            "write the build log",
            Request("logs:PutLogEvents", d.arn("logs", f"log-group:{log_group}:log-stream:build-1")),
        ),
    ]
    if stack_params.get("BundleVersion"):
        out.append(
            ("fetch the pinned bundle", Request("s3:GetObjectVersion", f"arn:{d.partition}:s3:::{bucket}/{key}"))
        )
    if d.kms_key_arn:
        out.append(
            (
                "fetch the bundle",
                Request("kms:Decrypt", d.kms_key_arn, {"kms:ViaService": f"s3.{d.region}.amazonaws.com"}),
            )
        )
    for var in project["Environment"]["EnvironmentVariables"]:
        if var["Type"] == "SECRETS_MANAGER":
            out.append((f"read {var['Name']} at build start", Request("secretsmanager:GetSecretValue", var["Value"])))
    return out


def describe(call: dict) -> str:
    p = call["params"]
    what = ", ".join(f"{k}={p[k]}" for k in sorted(p) if k not in ("QueryString", "Delete"))
    return f"{call['component']}: {call['service']}:{call['operation']}({what})"
