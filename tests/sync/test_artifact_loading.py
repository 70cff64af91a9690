"""Loading dbt's artifacts from hand-written dicts: where they are found, what makes them unusable,
and when they are older than the project. Every refusal is compared whole: it names the file and
the dbt command that fixes it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sync.core.errors import ArtifactError
from sync.dbt import artifacts as artifacts_module
from sync.dbt.artifacts import (
    Artifacts,
    load_artifacts,
    load_manifest,
    require_segments,
    resolve_target_path,
    shaping_files,
)

SEG = "model.p.seg_a"
TEST = "test.p.unique_seg_a_endpoint_id"
PARSE = "run `dbt parse` or `dbt build`"
BUILD = "run `dbt build` (or `lakeseg run`)"
# A fixed moment well in the past: artifacts and project files get mtimes around it.
T0 = 1_700_000_000


def segment_node() -> dict:
    return {
        "unique_id": SEG,
        "resource_type": "model",
        "name": "seg_a",
        "path": "segments/seg_a.sql",
        "schema": "main",
        "columns": {"endpoint_id": {"name": "endpoint_id", "meta": {"lakeseg": {"field": "Id"}}}},
        "config": {"meta": {"lakeseg": {"exit": "keep"}}},
    }


def manifest(**metadata) -> dict:
    return {
        "metadata": metadata,
        "nodes": {
            SEG: segment_node(),
            TEST: {
                "unique_id": TEST,
                "resource_type": "test",
                "name": "unique_seg_a_endpoint_id",
                "attached_node": SEG,
                "column_name": "endpoint_id",
                "test_metadata": {"name": "unique"},
            },
        },
    }


def run_results(**metadata) -> dict:
    return {
        "metadata": metadata,
        "results": [{"unique_id": SEG, "status": "success"}, {"unique_id": TEST, "status": "pass", "failures": 0}],
    }


def set_mtime(path: Path, seconds: float) -> None:
    ns = int(seconds * 1_000_000_000)
    os.utime(path, ns=(ns, ns))


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.delenv("DBT_TARGET_PATH", raising=False)
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    set_mtime(tmp_path / "dbt_project.yml", T0 - 3600)
    return tmp_path


def write(project: Path, m=None, r=None, *, at: float = T0) -> Path:
    """The two artifacts in ``project/target`` (a raw string is written as is), both modified at ``at``."""
    target = project / "target"
    target.mkdir(exist_ok=True)
    for name, doc in (("manifest.json", m), ("run_results.json", r)):
        if doc is not None:
            (target / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))
            set_mtime(target / name, at)
    return target


def project_file(project: Path, relative: str, at: float) -> Path:
    path = project / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("select 1")
    set_mtime(path, at)
    return path


def stale(project: Path, names: str) -> str:
    return f"dbt artifacts in {project / 'target'} are older than {names} (edited after the last dbt build): {BUILD}"


def refusal(project: Path) -> str:
    with pytest.raises(ArtifactError) as caught:
        load_artifacts(project)
    return str(caught.value)


# ------------------------------------------------------------------ target path
@pytest.mark.parametrize(
    "option,env,project_yml,expected",
    [
        pytest.param(None, None, "name: p\n", "target", id="dbt-default"),
        pytest.param(None, None, None, "target", id="no-project-file"),
        pytest.param(None, None, "", "target", id="empty-project-file"),
        pytest.param(None, None, "name: p\ntarget-path: custom\n", "custom", id="project-file"),
        pytest.param(None, None, "name: [unclosed\n", "target", id="project-file-not-yaml"),
        pytest.param(None, None, "- target-path\n", "target", id="project-file-a-list"),
        pytest.param(None, "from_env", "name: p\ntarget-path: custom\n", "from_env", id="env-over-project-file"),
        pytest.param(None, "", "name: p\ntarget-path: custom\n", "custom", id="empty-env-is-unset"),
        pytest.param("opt", "from_env", "name: p\ntarget-path: custom\n", "opt", id="option-over-env"),
        pytest.param("", "from_env", None, "from_env", id="empty-option-is-unset"),
        pytest.param("/abs/opt", None, None, "/abs/opt", id="absolute-option"),
        pytest.param(None, "/abs/env", None, "/abs/env", id="absolute-env"),
        pytest.param(None, None, "target-path: /abs/yml\n", "/abs/yml", id="absolute-in-project-file"),
    ],
)
def test_target_path_order(tmp_path, monkeypatch, option, env, project_yml, expected):
    # Given an option, DBT_TARGET_PATH and dbt_project.yml's target-path, each set or not
    if env is None:
        monkeypatch.delenv("DBT_TARGET_PATH", raising=False)
    else:
        monkeypatch.setenv("DBT_TARGET_PATH", env)
    if project_yml is not None:
        (tmp_path / "dbt_project.yml").write_text(project_yml)
    # When the target path is resolved
    resolved = resolve_target_path(tmp_path, option)
    # Then the first one set wins, relative to the project unless absolute
    assert resolved == (Path(expected) if expected.startswith("/") else tmp_path / expected)


# ------------------------------------------------------------- unusable files
@pytest.mark.parametrize(
    "content,expected",
    [
        pytest.param(None, "dbt manifest not found at {path}: " + PARSE, id="missing"),
        pytest.param(
            "{",
            "dbt manifest at {path} is unreadable (Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)): " + PARSE,
            id="not-json",
        ),
        pytest.param(
            "[1]",
            "dbt manifest at {path} is not a dbt artifact (a JSON list, expected an object): " + PARSE,
            id="a-list",
        ),
        pytest.param(
            "{}", "dbt manifest at {path} has no nodes (is it a dbt manifest of this project?): " + PARSE, id="no-nodes"
        ),
        pytest.param(
            '{"nodes": {}}',
            "dbt manifest at {path} has no nodes (is it a dbt manifest of this project?): " + PARSE,
            id="empty-nodes",
        ),
        pytest.param(
            '{"nodes": ["model.p.a"]}',
            "dbt manifest at {path} has no nodes (is it a dbt manifest of this project?): " + PARSE,
            id="nodes-a-list",
        ),
    ],
)
def test_an_unusable_manifest_is_refused(project, content, expected):
    # Given a target folder whose manifest is missing, not JSON, or has no nodes
    target = write(project, content, run_results())
    # When the artifacts are loaded
    # Then the refusal names the file and dbt parse
    assert refusal(project) == expected.format(path=target / "manifest.json")


@pytest.mark.parametrize(
    "nodes,listed",
    [
        pytest.param({"a": "model.p.a"}, "a", id="node-not-a-mapping"),
        pytest.param({"a": {"resource_type": "model"}}, "a", id="no-unique-id"),
        pytest.param({"a": {"unique_id": 7, "resource_type": "model"}}, "a", id="unique-id-not-text"),
        pytest.param({"a": {"unique_id": "a"}}, "a", id="no-resource-type"),
        pytest.param({"a": {"unique_id": "a", "resource_type": ["model"]}}, "a", id="resource-type-not-text"),
        pytest.param({**{k: None for k in "abcd"}, "e": segment_node()}, "a, b, c", id="first-three-named"),
    ],
)
def test_a_manifest_with_malformed_nodes_is_refused(tmp_path, nodes, listed):
    # Given a manifest whose nodes lack a textual unique_id or resource_type
    (tmp_path / "manifest.json").write_text(json.dumps({"nodes": {SEG: segment_node(), **nodes}}))
    # When it is loaded
    with pytest.raises(ArtifactError) as caught:
        load_manifest(tmp_path)
    # Then the refusal names (the first three of) them
    assert str(caught.value) == f"dbt manifest at {tmp_path / 'manifest.json'} has malformed nodes ({listed}): {PARSE}"


def test_a_well_formed_manifest_is_returned_as_read(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest()))
    assert load_manifest(tmp_path) == manifest()


@pytest.mark.parametrize(
    "content,expected",
    [
        pytest.param(None, "dbt run results not found at {path}: " + BUILD, id="missing"),
        pytest.param(
            "nope",
            "dbt run results at {path} is unreadable (Expecting value: line 1 column 1 (char 0)): " + BUILD,
            id="not-json",
        ),
        pytest.param(
            '"text"',
            "dbt run results at {path} is not a dbt artifact (a JSON str, expected an object): " + BUILD,
            id="a-string",
        ),
        pytest.param("{}", "dbt run results at {path} have no 'results' list: " + BUILD, id="no-results"),
        pytest.param(
            '{"results": {}}', "dbt run results at {path} have no 'results' list: " + BUILD, id="results-a-mapping"
        ),
        pytest.param(
            '{"results": [{"unique_id": "a", "status": "pass"}, "b"]}',
            "dbt run results at {path}: result #2 has no unique_id/status (not written by dbt?): " + BUILD,
            id="result-not-a-mapping",
        ),
        pytest.param(
            '{"results": [{"status": "pass"}]}',
            "dbt run results at {path}: result #1 has no unique_id/status (not written by dbt?): " + BUILD,
            id="no-unique-id",
        ),
        pytest.param(
            '{"results": [{"unique_id": "a", "status": "pass"}, {"unique_id": "b", "status": null}]}',
            "dbt run results at {path}: result #2 has no unique_id/status (not written by dbt?): " + BUILD,
            id="status-null",
        ),
    ],
)
def test_unusable_run_results_are_refused(project, content, expected):
    # Given a good manifest and run results that are missing, not JSON, or not dbt's
    target = write(project, manifest(), content)
    # When the artifacts are loaded
    # Then the refusal names the file and dbt build
    assert refusal(project) == expected.format(path=target / "run_results.json")


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(
            {"unique_id": "model.p.stg", "resource_type": "model", "path": "staging/stg.sql"}, id="a-staging-model"
        ),
        pytest.param({"unique_id": "seed.p.s", "resource_type": "seed", "path": "segments/s.csv"}, id="a-seed"),
    ],
)
def test_a_manifest_without_segments_is_the_wrong_project(project, other):
    # Given a manifest whose only node is not a segment model
    target = write(project, {"nodes": {other["unique_id"]: other}}, run_results())
    # When the artifacts are loaded
    # Then the refusal says to check the project folder and target path
    assert refusal(project) == (
        f"dbt manifest at {target / 'manifest.json'} declares no segment models (models in models/segments/ or "
        f"with config.meta.lakeseg): check --project-dir / --target-path, then {PARSE}"
    )


def test_a_manifest_without_nodes_declares_no_segments(tmp_path):
    with pytest.raises(ArtifactError, match=r"^dbt manifest at /x/manifest.json declares no segment models "):
        require_segments({}, Path("/x/manifest.json"))


def test_artifacts_of_different_invocations_are_refused(project):
    # Given a manifest written by a later dbt parse than the run results
    target = write(project, manifest(invocation_id="inv-2"), run_results(invocation_id="inv-1"))
    # When the artifacts are loaded
    # Then they are refused as a pair
    assert refusal(project) == (
        f"{target}/manifest.json and run_results.json come from different dbt invocations "
        f"(a later `dbt parse`/`dbt compile` replaced the manifest): {BUILD}"
    )


@pytest.mark.parametrize(
    "m,r",
    [
        pytest.param(manifest(invocation_id="inv-1"), run_results(invocation_id="inv-1"), id="same-invocation"),
        pytest.param(manifest(), run_results(invocation_id="inv-1"), id="manifest-without-id"),
        pytest.param(manifest(invocation_id="inv-1"), run_results(), id="results-without-id"),
        pytest.param({"nodes": manifest()["nodes"]}, {"results": run_results()["results"]}, id="no-metadata"),
    ],
)
def test_artifacts_that_may_belong_together_load(project, m, r):
    # Given artifacts whose invocation ids agree, or one of them has none
    target = write(project, m, r)
    # When they are loaded
    art = load_artifacts(project)
    # Then they are returned as read
    assert (art.target_dir, art.manifest, art.run_results) == (target, m, r)


def test_the_target_path_option_is_where_the_artifacts_are_read(project):
    # Given artifacts in build/ only
    target = write(project, manifest(), run_results())
    target.rename(project / "build")
    # When they are loaded with target path "build"
    art = load_artifacts(project, "build")
    # Then they are found there
    assert art.target_dir == project / "build"


@pytest.mark.parametrize(
    "r,invocation,generated",
    [
        pytest.param(
            {"metadata": {"invocation_id": "inv-1", "generated_at": "2026-01-02T03:04:05Z"}},
            "inv-1",
            "2026-01-02T03:04:05Z",
            id="metadata",
        ),
        pytest.param({}, None, None, id="no-metadata"),
        pytest.param({"metadata": None}, None, None, id="null-metadata"),
    ],
)
def test_the_invocation_comes_from_the_run_results(r, invocation, generated):
    art = Artifacts(Path("target"), {"metadata": {"invocation_id": "other"}}, r)
    assert (art.invocation_id, art.generated_at) == (invocation, generated)


# ------------------------------------------------------------------ freshness
def test_a_file_edited_after_the_build_makes_the_artifacts_stale(project):
    # Given artifacts written at T0 and a model edited one second later
    write(project, manifest(), run_results())
    project_file(project, "models/segments/seg_a.sql", T0 + 1)
    # When they are loaded
    # Then the refusal names the file
    assert refusal(project) == (
        f"dbt artifacts in {project / 'target'} are older than models/segments/seg_a.sql "
        f"(edited after the last dbt build): {BUILD}"
    )


def test_a_file_edited_at_the_build_instant_is_not_newer(project):
    # Given a model whose mtime is exactly the artifacts' mtime
    write(project, manifest(), run_results())
    project_file(project, "models/segments/seg_a.sql", T0)
    # When they are loaded, Then they are fresh
    assert load_artifacts(project).manifest == manifest()


@pytest.mark.parametrize(
    "count,names",
    [
        pytest.param(3, "models/a0.sql, models/a1.sql, models/a2.sql", id="three-named"),
        pytest.param(4, "models/a0.sql, models/a1.sql, models/a2.sql and 1 other file(s)", id="four-three-named"),
        pytest.param(5, "models/a0.sql, models/a1.sql, models/a2.sql and 2 other file(s)", id="five-three-named"),
    ],
)
def test_the_stale_files_are_named_three_at_most(project, count, names):
    # Given several files edited after the build, written in reverse name order
    write(project, manifest(), run_results())
    for i in reversed(range(count)):
        project_file(project, f"models/a{i}.sql", T0 + 10)
    # When the artifacts are loaded
    # Then the first three names in sorted order are given, and how many others
    assert refusal(project) == (
        f"dbt artifacts in {project / 'target'} are older than {names} (edited after the last dbt build): {BUILD}"
    )


@pytest.mark.parametrize("later", ["manifest.json", "run_results.json"])
def test_the_build_time_is_the_earlier_artifact(project, later):
    # Given one artifact rewritten after a model was edited, the other not
    target = write(project, manifest(), run_results())
    project_file(project, "models/x.sql", T0 + 5)
    set_mtime(target / later, T0 + 10)
    # When they are loaded
    # Then the model still counts as edited after the build
    assert refusal(project) == stale(project, "models/x.sql")


@pytest.mark.parametrize(
    "generated_at",
    ["2023-11-14T22:00:00Z", "2023-11-14T22:00:00+00:00", "2023-11-14T23:00:00+01:00", "2023-11-14T22:00:00.000000Z"],
    ids=["zulu", "utc-offset", "other-offset", "fraction"],
)
def test_the_manifest_generation_time_counts_when_earlier(project, generated_at):
    # Given artifacts copied into place at T0 (2023-11-14T22:13:20Z) from a build generated at 22:00
    # and a model edited in between
    write(project, manifest(generated_at=generated_at), run_results())
    project_file(project, "models/x.sql", T0 - 60)
    # When they are loaded
    # Then the edit counts as after the build
    assert refusal(project) == stale(project, "models/x.sql")


def test_a_generation_time_without_zone_is_utc(project, new_york):
    # Given a manifest generated at 22:00 written without a zone (dbt writes UTC), a model edited at
    # 22:12:20 UTC, and the process in New York (22:00 there is 03:00 UTC the next day)
    write(project, manifest(generated_at="2023-11-14T22:00:00"), run_results())
    project_file(project, "models/x.sql", T0 - 60)
    # When the artifacts are loaded
    # Then the edit counts as after the build
    assert refusal(project) == stale(project, "models/x.sql")


@pytest.mark.parametrize("generated_at", ["yesterday", 1700000000, None], ids=["not-a-time", "a-number", "null"])
def test_an_unreadable_generation_time_is_ignored(project, generated_at):
    # Given a manifest whose generated_at cannot be read and a model edited before the artifacts were written
    write(project, manifest(generated_at=generated_at), run_results())
    project_file(project, "models/x.sql", T0 - 60)
    # When they are loaded, Then the file times alone decide: fresh
    assert load_artifacts(project).manifest["metadata"] == {"generated_at": generated_at}


def test_the_exposures_file_lakeseg_writes_is_not_a_stale_source(project):
    # Given the exposures file `lakeseg check` writes, newer than the artifacts, and an older model
    write(project, manifest(), run_results())
    project_file(project, "models/segments/_segments__exposures.yml", T0 + 60)
    project_file(project, "models/segments/seg_a.sql", T0 - 60)
    # When the artifacts are loaded, Then they are fresh
    assert load_artifacts(project).target_dir == project / "target"
    # And any other newer YAML next to it is stale
    project_file(project, "models/segments/_segments.yml", T0 + 60)
    assert refusal(project) == stale(project, "models/segments/_segments.yml")


def test_the_exposures_file_is_skipped_and_the_check_goes_on(project, monkeypatch):
    # Given the exposures file listed first, then a newer model
    write(project, manifest(), run_results())
    exposures = project_file(project, "models/segments/_segments__exposures.yml", T0 + 60)
    newer = project_file(project, "models/z.sql", T0 + 60)
    monkeypatch.setattr(artifacts_module, "shaping_files", lambda root: [exposures, newer])
    # When the artifacts are loaded
    # Then the model after it is still found
    assert refusal(project) == stale(project, "models/z.sql")


def test_a_file_that_vanishes_while_checking_is_skipped(project, monkeypatch):
    # Given a listed project file removed before its time is read, then a newer one
    write(project, manifest(), run_results())
    newer = project_file(project, "models/z.sql", T0 + 60)
    monkeypatch.setattr(artifacts_module, "shaping_files", lambda root: [root / "models/gone.sql", newer])
    # When the artifacts are loaded
    # Then the vanished file is skipped and the newer one still found
    assert refusal(project) == stale(project, "models/z.sql")


# ------------------------------------------------------- files shaping the manifest
def relative(project: Path) -> list[str]:
    return sorted(p.relative_to(project).as_posix() for p in shaping_files(project))


def test_shaping_files_are_the_project_file_and_dbt_sources_in_the_default_folders(project):
    # Given a file of each dbt kind in each default folder, and files dbt does not read
    for folder in ("models", "macros", "tests", "seeds", "snapshots", "analyses"):
        for suffix in (".sql", ".yml", ".yaml", ".csv", ".py", ".md", ".txt"):
            project_file(project, f"{folder}/sub/f{suffix}", T0)
    (project / "models" / "dir.sql").mkdir()
    project_file(project, "target/compiled.sql", T0)
    project_file(project, "logs/dbt.yml", T0)
    project_file(project, "README.md", T0)
    # When the files shaping the manifest are listed
    # Then they are dbt_project.yml and every .sql/.yml/.yaml/.csv/.py file under those folders
    assert relative(project) == sorted(
        ["dbt_project.yml"]
        + [
            f"{folder}/sub/f{suffix}"
            for folder in ("models", "macros", "tests", "seeds", "snapshots", "analyses")
            for suffix in (".sql", ".yml", ".yaml", ".csv", ".py")
        ]
    )


@pytest.mark.parametrize(
    "key,default",
    [
        ("model-paths", "models"),
        ("macro-paths", "macros"),
        ("test-paths", "tests"),
        ("seed-paths", "seeds"),
        ("snapshot-paths", "snapshots"),
        ("analysis-paths", "analyses"),
    ],
)
def test_a_configured_folder_replaces_the_default(project, key, default):
    # Given dbt_project.yml moving one kind of file to two other folders
    (project / "dbt_project.yml").write_text(f"name: p\n{key}: [src_a, src_b]\n")
    for folder in (default, "src_a", "src_b", "models"):
        project_file(project, f"{folder}/f.sql", T0)
    # When the files shaping the manifest are listed
    # Then those folders count instead of the default one (and models/ only when it is still a default)
    expected = {"dbt_project.yml", "src_a/f.sql", "src_b/f.sql"} | ({"models/f.sql"} if default != "models" else set())
    assert relative(project) == sorted(expected)


@pytest.mark.parametrize(
    "project_yml,listed",
    [
        pytest.param("name: p\nmodel-paths: src\n", True, id="paths-not-a-list"),
        pytest.param("- a list\n", True, id="project-file-a-list"),
        pytest.param("name: [unclosed\n", True, id="project-file-not-yaml"),
        pytest.param("", True, id="project-file-empty"),
        pytest.param(None, False, id="no-project-file"),
    ],
)
def test_the_default_folders_count_when_the_project_file_says_nothing_usable(project, project_yml, listed):
    # Given a dbt_project.yml that is absent, empty, not a mapping or sets a folder list as text
    if project_yml is None:
        (project / "dbt_project.yml").unlink()
    else:
        (project / "dbt_project.yml").write_text(project_yml)
    project_file(project, "models/f.sql", T0)
    project_file(project, "src/f.sql", T0)
    # When the files shaping the manifest are listed
    # Then the default folders are used (and the project file is listed when there is one)
    assert relative(project) == (["dbt_project.yml"] if listed else []) + ["models/f.sql"]
