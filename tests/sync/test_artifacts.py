"""Finding dbt's artifacts and deciding which segments may be synced."""

from __future__ import annotations

import json
import os
import time

import pytest

from sync.core.errors import ArtifactError
from sync.dbt.artifacts import load_artifacts, resolve_target_path
from sync.dbt.contract import load_segments

SEG = "model.p.seg_a"


def manifest(invocation="inv-1"):
    return {
        "metadata": {"invocation_id": invocation},
        "nodes": {
            SEG: {
                "unique_id": SEG,
                "resource_type": "model",
                "name": "seg_a",
                "path": "segments/seg_a.sql",
                "original_file_path": "models/segments/seg_a.sql",
                "schema": "main",
                "alias": "seg_a",
                "columns": {"endpoint_id": {"name": "endpoint_id", "meta": {"lakeseg": {"field": "Id"}}}},
                "config": {"meta": {"lakeseg": {"exit": "keep"}}},
            },
            "test.p.unique_seg_a_endpoint_id": {
                "unique_id": "test.p.unique_seg_a_endpoint_id",
                "resource_type": "test",
                "name": "unique_seg_a_endpoint_id",
                "attached_node": SEG,
                "column_name": "endpoint_id",
                "test_metadata": {"name": "unique"},
            },
        },
    }


def results(model="success", test="pass", invocation="inv-1", failures=0):
    rows = [{"unique_id": SEG, "status": model, "message": "boom" if model != "success" else None}]
    if test:
        rows.append({"unique_id": "test.p.unique_seg_a_endpoint_id", "status": test, "failures": failures})
    return {"metadata": {"invocation_id": invocation}, "results": rows}


def write(project, m=None, r=None, target="target"):
    d = project / target
    d.mkdir(parents=True, exist_ok=True)
    if m is not None:
        (d / "manifest.json").write_text(json.dumps(m))
    if r is not None:
        (d / "run_results.json").write_text(json.dumps(r))
    return d


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.delenv("DBT_TARGET_PATH", raising=False)
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    return tmp_path


def test_target_path_order(project, monkeypatch):
    # option > env > dbt_project.yml > "target"
    assert resolve_target_path(project) == project / "target"
    (project / "dbt_project.yml").write_text("name: p\ntarget-path: custom\n")
    assert resolve_target_path(project) == project / "custom"
    monkeypatch.setenv("DBT_TARGET_PATH", "from_env")
    assert resolve_target_path(project) == project / "from_env"
    assert resolve_target_path(project, "/abs/opt") == project / "/abs/opt"


@pytest.mark.parametrize(
    "missing,hint",
    [
        pytest.param("manifest", "dbt parse", id="no-manifest"),
        pytest.param("run_results", "dbt build", id="no-run-results"),
    ],
)
def test_missing_artifacts_name_the_dbt_command(project, missing, hint):
    write(project, m=None if missing == "manifest" else manifest(), r=None if missing == "run_results" else results())
    with pytest.raises(ArtifactError, match=hint):
        load_artifacts(project)


def test_mismatched_invocations_are_refused(project):
    write(project, manifest("inv-2"), results(invocation="inv-1"))
    with pytest.raises(ArtifactError, match="different dbt invocations.*dbt build"):
        load_artifacts(project)


def test_stale_artifacts_are_refused(project):
    write(project, manifest(), results())
    sql = project / "models" / "segments" / "seg_a.sql"
    sql.parent.mkdir(parents=True)
    sql.write_text("select 1")
    future = time.time() + 60
    os.utime(sql, (future, future))
    with pytest.raises(ArtifactError, match="older than models/segments/seg_a.sql"):
        load_artifacts(project)


@pytest.mark.parametrize(
    "model,test,ok,reason",
    [
        pytest.param("success", "pass", True, "", id="built-and-tested"),
        pytest.param("error", "skipped", False, "model error in the latest dbt invocation", id="model-failed"),
        pytest.param("success", "fail", False, "unique_seg_a_endpoint_id (fail, 3 failing rows)", id="test-failed"),
        pytest.param("success", "warn", False, "unique_seg_a_endpoint_id (warn", id="test-warned"),
        pytest.param("success", None, False, "did not run", id="tests-not-run"),
    ],
)
def test_eligibility(project, model, test, ok, reason):
    write(project, manifest(), results(model=model, test=test, failures=3))
    art = load_artifacts(project)
    verdict = art.eligibility(load_segments(art.manifest)[0])
    assert verdict.ok == ok
    assert reason in verdict.reason


def test_model_absent_from_results_is_not_built(project):
    r = results()
    r["results"] = []
    write(project, manifest(), r)
    art = load_artifacts(project)
    assert "not built in the latest dbt invocation" in art.eligibility(load_segments(art.manifest)[0]).reason


def test_a_test_that_errored_is_not_a_pass(project):
    """Guards issue 15 behaviour 6: a test whose SQL errored in dbt (status `error`) must not count as passed;
    verified to fail on a broken copy (sync/dbt/artifacts.py:Artifacts.eligibility refusing only `fail`/`warn`)."""
    # Given a build whose model succeeded but whose attached test errored (it never checked a row)
    write(project, manifest(), results(model="success", test="error"))
    art = load_artifacts(project)
    # When the segment's eligibility is decided
    verdict = art.eligibility(load_segments(art.manifest)[0])
    # Then it is not synced, and the reason names the test and its status
    assert not verdict.ok
    assert "unique_seg_a_endpoint_id (error)" in verdict.reason
    assert verdict.failed_tests == ["unique_seg_a_endpoint_id (error)"]
