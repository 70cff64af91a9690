"""Bad, missing or stale dbt artifacts: exit 2 with a message naming the file and the dbt
command to run -- nothing sent, nothing committed, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.bad_inputs.conftest import no_traceback

pytestmark = pytest.mark.e2e


def _results(doc: dict, fn) -> dict:
    doc = dict(doc)
    doc["results"] = fn(doc["results"])
    return doc


# (id, file, how to break it: a function of the parsed document or raw text, words the message must contain)
ARTIFACT_CASES = [
    ("run-results-empty-list", "run_results.json", lambda d: [], ["run_results.json", "JSON list", "dbt build"]),
    (
        "run-results-without-unique-id",
        "run_results.json",
        lambda d: _results(d, lambda rs: [{k: v for k, v in r.items() if k != "unique_id"} for r in rs]),
        ["run_results.json", "unique_id", "dbt build"],
    ),
    (
        "run-results-results-not-a-list",
        "run_results.json",
        lambda d: {**d, "results": {"a": 1}},
        ["'results' list", "dbt build"],
    ),
    (
        "run-results-result-a-string",
        "run_results.json",
        lambda d: _results(d, lambda rs: ["model.x"]),
        ["result #1", "dbt build"],
    ),
    ("run-results-truncated", "run_results.json", '{"metadata": {', ["run_results.json", "unreadable", "dbt build"]),
    ("run-results-missing", "run_results.json", None, ["run_results.json", "not found", "dbt build"]),
    ("manifest-empty-object", "manifest.json", lambda d: {}, ["manifest.json", "no nodes", "dbt parse"]),
    ("manifest-a-list", "manifest.json", lambda d: [], ["manifest.json", "JSON list", "dbt parse"]),
    (
        "manifest-without-segments",
        "manifest.json",
        lambda d: {**d, "nodes": {k: v for k, v in d["nodes"].items() if v["resource_type"] != "model"}},
        ["declares no segment models", "--target-path", "dbt parse"],
    ),
    (
        "manifest-node-malformed",
        "manifest.json",
        lambda d: {**d, "nodes": {**d["nodes"], "model.x.y": 5}},
        ["malformed nodes", "model.x.y", "dbt parse"],
    ),
    ("manifest-truncated", "manifest.json", '{"nodes": ', ["manifest.json", "unreadable", "dbt parse"]),
    ("manifest-missing", "manifest.json", None, ["manifest.json", "not found", "dbt parse"]),
    (
        "invocations-differ",
        "manifest.json",
        lambda d: {**d, "metadata": {**d["metadata"], "invocation_id": "another-invocation"}},
        ["different dbt invocations", "dbt build"],
    ),
]


def broken_target(corpus, tmp_path: Path, name: str, how) -> Path:
    target = tmp_path / "target"
    target.mkdir()
    for artifact in ("manifest.json", "run_results.json"):
        shutil.copy(corpus.build.target_path / artifact, target / artifact)
    path = target / name
    if how is None:
        path.unlink()
    elif isinstance(how, str):
        path.write_text(how)
    else:
        path.write_text(json.dumps(how(json.loads(path.read_text()))))
    return target


@pytest.mark.parametrize("name,how,words", [c[1:] for c in ARTIFACT_CASES], ids=[c[0] for c in ARTIFACT_CASES])
def test_bad_artifacts_name_the_file_and_the_dbt_command(corpus, tmp_path, name, how, words):
    # given a target directory with one broken artifact
    target = broken_target(corpus, tmp_path, name, how)
    # when syncing
    out = corpus.sync("seg_ok", target_path=target)
    # then exit 2 naming the file and what to run; nothing sent or committed
    assert out.exit_code == 2, out.output
    for word in words:
        assert word in out.stderr, out.stderr
    assert no_traceback(out)
    corpus.assert_nothing_sent()
    corpus.assert_nothing_committed()


@pytest.mark.parametrize(
    "name,how,words",
    [c[1:] for c in ARTIFACT_CASES if c[1] == "manifest.json" and c[0] != "invocations-differ"],
    ids=[c[0] for c in ARTIFACT_CASES if c[1] == "manifest.json" and c[0] != "invocations-differ"],
)
def test_check_refuses_a_bad_manifest_too(corpus, tmp_path, name, how, words):
    target = broken_target(corpus, tmp_path, name, how)
    out = corpus.invoke("check", "--no-parse", target_path=target)
    assert out.exit_code == 2 and "manifest.json" in out.stderr and no_traceback(out), out.output


# Staleness: any file that shapes the manifest, edited after the build.
STALE_CASES = [
    ("segment-yaml", "models/segments/_segments__models.yml"),
    ("segment-sql", "models/segments/seg_ok.sql"),
    ("macro", "macros/tests/pinpoint_rules.sql"),
    ("dbt-project-yml", "dbt_project.yml"),
    ("new-model-file", "models/segments/seg_added_later.sql"),
]


@pytest.fixture
def project_copy(corpus, tmp_path) -> Path:
    """A copy of the built project (file times kept), to edit without disturbing other cases."""
    copy = tmp_path / "project"
    shutil.copytree(corpus.project, copy)  # copy2 keeps modification times
    return copy


@pytest.mark.parametrize("relative", [p for _, p in STALE_CASES], ids=[i for i, _ in STALE_CASES])
def test_artifacts_older_than_a_project_file_are_stale(corpus, project_copy, relative):
    # given a project file edited (or added) after the last dbt build
    path = project_copy / relative
    if not path.exists():
        path.write_text("select 1 as endpoint_id\n")
    later = time.time() + 5
    os.utime(path, (later, later))
    # when syncing
    out = corpus.sync("seg_ok", project=project_copy)
    # then exit 2, naming the file and `dbt build`; nothing sent or committed
    assert out.exit_code == 2, out.output
    assert relative in out.stderr and "dbt build" in out.stderr and no_traceback(out)
    corpus.assert_nothing_sent()
    corpus.assert_nothing_committed()


def test_an_untouched_copy_is_not_stale(corpus, project_copy):
    out = corpus.sync("seg_ok", project=project_copy)
    assert out.exit_code == 0, out.output
