"""The scheduled runner's build, executed here: infra/buildspec.yml's own
commands, run the way CodeBuild runs them, on a versioned project bundle
fetched from (moto) S3, with the environment the stack gives the CodeBuild
project, the state in S3 and the alert topic in SNS (a moto server, since the
build is another process).

What CodeBuild does that this reproduces (CodeBuild user guide, "Build
specification reference" and "Build phase transitions"): the bundle (S3 source,
one object version) is unpacked and the commands run from its root; with
buildspec version 0.2 every command of every phase runs in the same shell
instance, in order; a command that exits non-zero fails its phase and skips the
phase's remaining commands; a failed install or pre_build phase ends the build
(post_build does not run); a failed build phase still runs post_build; the
build fails if any phase failed. Environment variables set on the project take
precedence over the buildspec's `env.variables`.

The local differences, said plainly: `LAKESEG_TARGET=local` (dbt on DuckDB over
a small sample lake and the files destination; this machine has no Athena), so
the state goes through the local target's LAKESEG_STATE_DIR, set to the
stack's state URL in S3.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import socket
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cfnlint.decode import cfn_yaml

from sync.lake.sample_lake import LakeSpec, generate

from .conftest import h
from .test_metrics import emf_problems
from .test_schedule import REFS, resolve

pytestmark = pytest.mark.e2e

BUILDSPEC = h.REPO / "infra" / "buildspec.yml"
PHASES = ("install", "pre_build", "build", "post_build")
BUCKET = "lakeseg-prod"


def load_buildspec() -> dict:
    spec = yaml.safe_load(BUILDSPEC.read_text())
    assert spec["version"] == 0.2
    return spec


def test_the_buildspec_has_only_what_codebuild_understands_and_no_secret():
    spec = load_buildspec()
    assert set(spec) <= {"version", "run-as", "env", "proxy", "batch", "phases", "reports", "artifacts", "cache"}
    assert set(spec["phases"]) <= set(PHASES)
    for phase in spec["phases"].values():
        assert set(phase) <= {"run-as", "on-failure", "runtime-versions", "commands", "finally"}
        assert all(isinstance(c, str) for c in phase["commands"])
    assert set(spec["env"]) <= {
        "shell",
        "variables",
        "parameter-store",
        "exported-variables",
        "secrets-manager",
        "git-credential-helper",
    }
    # the digest key is the project's SECRETS_MANAGER variable (tests/infra/test_schedule.py), never a value here
    assert not any("KEY" in k or "SECRET" in k for k in spec["env"]["variables"])


def codebuild_script(spec: dict, status_file: Path) -> str:
    """One bash script running the phases with CodeBuild's transitions (see the module docstring)."""
    out = ["set +e", "export CODEBUILD_BUILD_SUCCEEDING=1"]
    for phase in PHASES:
        out.append(f"__phase_{phase}() {{")
        for i, command in enumerate((spec["phases"].get(phase) or {}).get("commands") or []):
            out.append(command)
            out.append(
                f'__rc=$?; if [ "$__rc" -ne 0 ]; then echo "[Container] Command {i + 1} of {phase} did not '
                f'exit successfully, exit status $__rc"; return "$__rc"; fi'
            )
        out.append("  return 0\n}")
    status = shlex.quote(str(status_file))
    out.append(f"""
__ended=0
for __p in install pre_build build post_build; do
  if [ "$__ended" -eq 1 ]; then break; fi
  if [ "$__p" = post_build ] || [ "$CODEBUILD_BUILD_SUCCEEDING" -eq 1 ]; then
    echo "[Container] Entering phase $__p"
    __phase_$__p; __r=$?
    echo "$__p $__r" >> {status}
    if [ "$__r" -ne 0 ]; then
      export CODEBUILD_BUILD_SUCCEEDING=0
      case "$__p" in install|pre_build) __ended=1 ;; esac
    fi
  fi
done
exit 0
""")
    return "\n".join(out)


@dataclass
class Build:
    phases: dict[str, int]
    log: str
    src: Path

    @property
    def succeeded(self) -> bool:
        return all(rc == 0 for rc in self.phases.values())

    def emf(self) -> list[dict]:
        return [json.loads(line) for line in self.log.splitlines() if line.startswith('{"_aws"')]


def project_environment(overrides: dict) -> dict:
    """The CodeBuild project's environment variables as the stack sets them (runner on), plus overrides."""
    template = json.loads(json.dumps(cfn_yaml.loads(h.TEMPLATE_PATH.read_text())))
    # Destination=files on the local (DuckDB) target: the rehearsal without a platform or Athena
    refs = {
        **REFS,
        "BucketName": BUCKET,
        "StatePrefix": "lakeseg/state",
        "Destination": "files",
        "ModelDatabasePrefix": "lakeseg",
        "AthenaStagingPrefix": "lakeseg/athena",
        "AthenaDataPrefix": "lakeseg/tables",
    }
    env = resolve(
        template["Resources"]["RunnerProject"]["Properties"]["Environment"]["EnvironmentVariables"],
        refs,
        {"HasDigestSecret": False, "UseAthena": False, "UsePinpoint": False, "UseCustomerProfiles": False},
    )
    assert all(v["Type"] == "PLAINTEXT" for v in env)
    return {**{v["Name"]: str(v["Value"]) for v in env}, **overrides}


def run_build(src: Path, env: dict, tmp: Path) -> Build:
    """Run the buildspec in ``src`` with ``env`` (project variables over the buildspec's)."""
    spec = yaml.safe_load((src / "infra" / "buildspec.yml").read_text())
    status = tmp / f"status-{src.name}"
    script = tmp / f"build-{src.name}.sh"
    script.write_text(codebuild_script(spec, status))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LAKESEG_", "DBT_", "VIRTUAL_ENV", "AWS_"))}
    full = {
        **base,
        **{k: str(v) for k, v in spec["env"]["variables"].items()},
        **env,
        "CODEBUILD_SRC_DIR": str(src),
        "CODEBUILD_BUILD_ARN": f"arn:aws:codebuild:us-east-1:123:build/x:{src.name}",
    }
    proc = subprocess.run(
        ["bash", str(script)], cwd=src, env=full, capture_output=True, text=True, timeout=900, check=False
    )
    assert status.exists(), proc.stdout + proc.stderr
    phases = {p: int(rc) for p, rc in (line.split() for line in status.read_text().splitlines())}
    return Build(phases, proc.stdout + proc.stderr, src)


def bundle_bytes(extra: dict[str, str] | None = None) -> bytes:
    """The project bundle: the repository's files (as `make bundle` packs them), plus ``extra`` files."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=h.REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in filter(None, listed):
            path = h.REPO / name
            if path.is_file() and not name.startswith(("tests/", "benchmarks/")):
                z.write(path, name)
        for name, text in (extra or {}).items():
            z.writestr(name, text)
    return buf.getvalue()


@pytest.fixture
def moto_server():
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_server, monkeypatch):
    env = {**h.FAKE_ENV, "AWS_ENDPOINT_URL": moto_server}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def client(service: str, endpoint: str):
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=h.FAKE_ENV["AWS_DEFAULT_REGION"])


BROKEN_SQL = "select endpoint_id, 'Gold' as tier from (values ('dup-1'), ('dup-1'), ('ok-2')) t(endpoint_id)\n"
BROKEN_YML = """version: 2
models:
  - name: seg_broken_tier
    description: A segment with a duplicated id. One row per endpoint (supposedly).
    config: {meta: {lakeseg: {exit: keep}}}
    columns:
      - name: endpoint_id
        config: {meta: {lakeseg: {field: Id}}}
        data_tests: [unique, not_null, pinpoint_max_length, pinpoint_no_control_chars]
      - name: tier
        config: {meta: {lakeseg: {field: User.UserAttributes.BrokenTier}}}
        data_tests: [pinpoint_max_length, pinpoint_no_control_chars]
"""


def test_the_runner_build_syncs_a_bundle_version_and_alerts_with_run_id_and_segment_when_one_fails(aws_env, tmp_path):
    endpoint = aws_env["AWS_ENDPOINT_URL"]
    s3, sns, sqs = client("s3", endpoint), client("sns", endpoint), client("sqs", endpoint)
    # given the stack's versioned bucket holding two versions of the bundle: a good one, then one with a broken segment
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    key = "lakeseg/bundle/lakeseg.zip"
    v1 = s3.put_object(Bucket=BUCKET, Key=key, Body=bundle_bytes())["VersionId"]
    v2 = s3.put_object(
        Bucket=BUCKET,
        Key=key,
        Body=bundle_bytes(
            {"models/segments/seg_broken_tier.sql": BROKEN_SQL, "models/segments/_broken__models.yml": BROKEN_YML}
        ),
    )["VersionId"]
    # and the alert topic, with a queue subscribed to read what on-call would get
    topic = sns.create_topic(Name="lakeseg-Topic")["TopicArn"]
    queue = sqs.create_queue(QueueName="on-call")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    lake = tmp_path / "lake"
    generate(lake, LakeSpec(endpoints=400))
    project_env = project_environment(
        {
            "LAKESEG_ALERT_TOPIC_ARN": topic,
            "LAKESEG_LAKE_PATH": str(lake),
            "LAKESEG_EXPORT_DIR": str(tmp_path / "exports"),
            # what CodeBuild puts in the SECRETS_MANAGER variable: the same key for every build, so a
            # fresh bundle does not look like a new key (which would send every member again)
            "LAKESEG_DIGEST_KEY": "k3y-fr0m-secrets-manager-0123456789",
        }
    )
    assert (project_env["LAKESEG_DESTINATION"], project_env["LAKESEG_TARGET"]) == ("files", "local")
    assert project_env["LAKESEG_STATE_URL"] == f"s3://{BUCKET}/lakeseg/state"  # infra/settings/files.yml reads it

    def build(version: str) -> Build:
        # DOWNLOAD_SOURCE: the pinned object version, unpacked
        src = tmp_path / f"src-{version[:8]}"
        body = s3.get_object(Bucket=BUCKET, Key=key, VersionId=version)["Body"].read()
        zipfile.ZipFile(io.BytesIO(body)).extractall(src)
        try:
            return run_build(src, {**aws_env, **project_env}, tmp_path)
        finally:
            shutil.rmtree(src / ".venv", ignore_errors=True)
            shutil.rmtree(src / ".tools", ignore_errors=True)

    # when the runner builds version 1
    first = build(v1)

    # then every phase succeeded, each segment published its figures, the heartbeat beat, no alert went out
    assert first.succeeded, first.log[-4000:]
    seg_docs = [d for d in first.emf() if "Segment" in d]
    [beat] = [d for d in first.emf() if "RunsFinished" in d]
    assert all(emf_problems(d) == [] for d in first.emf())
    seeds = sorted(f.stem for f in (h.REPO / "models" / "segments").glob("seg_*.sql"))
    assert sorted(d["Segment"] for d in seg_docs) == seeds
    assert all(d["SegmentFailed"] == 0 and d["Members"] > 0 for d in seg_docs)
    assert (beat["RunsFinished"], beat["RunsFailed"], beat["ExitCode"]) == (1, 0, 0)
    assert sqs.receive_message(QueueUrl=queue).get("Messages") is None
    # and the state (snapshots, run history) is in the stack's bucket
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="lakeseg/state/")["Contents"]]
    assert sum(k.endswith("/current.json") for k in keys) == len(seeds)
    [history_key] = [k for k in keys if k.startswith("lakeseg/state/history/")]
    assert beat["RunId"] in history_key

    # when the runner builds version 2, whose new segment fails its unique test
    second = build(v2)

    # then the build fails in post_build (the run exited 1), the others synced against the first run's state
    assert second.phases == {"install": 0, "pre_build": 0, "build": 0, "post_build": 1}, second.log[-4000:]
    [beat2] = [d for d in second.emf() if "RunsFinished" in d]
    assert (beat2["RunsFailed"], beat2["ExitCode"], beat2["FailedSegments"]) == (1, 1, ["seg_broken_tier"])
    by_segment = {d["Segment"]: d for d in second.emf() if "Segment" in d}
    assert by_segment["seg_broken_tier"]["Status"] == "skipped"
    assert {d["Status"] for s, d in by_segment.items() if s != "seg_broken_tier"} == {"unchanged"}
    # and on-call got one message naming the run id and the segment, the same run id as the history
    [msg] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    body = json.loads(msg["Body"])
    assert body["RunId"] == beat2["RunId"] and body["ExitCode"] == 1
    assert [s["Segment"] for s in body["Segments"]] == ["seg_broken_tier"]
    assert "unique" in body["Segments"][0]["Reason"]
    assert body["Where"].startswith("CodeBuild arn:aws:codebuild:")
    history = s3.list_objects_v2(Bucket=BUCKET, Prefix="lakeseg/state/history/")["Contents"]
    assert any(beat2["RunId"] in o["Key"] for o in history) and len(history) == 2


def test_a_failed_install_ends_the_build_without_running_the_sync(tmp_path):
    # given a bundle whose install phase fails (no Makefile), run with CodeBuild's transitions
    src = tmp_path / "src"
    (src / "infra").mkdir(parents=True)
    shutil.copy(BUILDSPEC, src / "infra" / "buildspec.yml")

    # when it builds
    build = run_build(src, {}, tmp_path)

    # then install failed and neither build nor post_build ran: only the build-failure rule can tell
    assert build.phases == {"install": 2}, build.log
    assert build.emf() == []
