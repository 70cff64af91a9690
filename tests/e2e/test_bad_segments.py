"""Broken segments are refused with a message naming the model, the column and
the rule -- by `dbt build` (data rules) or `lakeseg check` (metadata rules) --
and nothing of them is sent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sync.cli import main as cli
from tests.e2e.conftest import PROJECT, dbt_build

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bad_segments"

DATA_RULES = [  # (model, failing test -- names the rule, the model and the column)
    ("seg_dup_ids", "unique_seg_dup_ids_endpoint_id"),
    ("seg_null_id", "not_null_seg_null_id_endpoint_id"),
    ("seg_long_value", "pinpoint_max_length_seg_long_value_long_note"),
    ("seg_bad_metric", "pinpoint_numeric_seg_bad_metric_bad_metric"),
    ("seg_newline_value", "pinpoint_no_control_chars_seg_newline_value_newline_note"),
    ("seg_tab_value", "pinpoint_no_control_chars_seg_tab_value_tab_note"),
    ("seg_bad_channel", "pinpoint_accepted_values_seg_bad_channel_channel__EMAIL__SMS__PUSH"),
    ("seg_bad_split", "split_shares_seg_bad_split_grp__80__10__10__3"),
]

METADATA_RULES = [  # (model, column, rule, words the message must contain)
    ("seg_bad_field_name", "foo", "field-name", "User.Attributes.Foo"),
    ("seg_long_name", "long_name", "name-length", "51 characters"),
    ("seg_hash_name", "hash_name", "name-characters", "#"),
    ("seg_owner_a", "shared", "field-ownership", "seg_owner_b"),
    ("seg_owner_b", "shared", "field-ownership", "seg_owner_a"),
    ("seg_no_tests", "endpoint_id", "required-test", "'unique'"),
    ("seg_no_tests", "untested", "required-test", "pinpoint_max_length"),
    ("seg_no_exit", None, "exit", "no exit behaviour"),
    ("seg_two_ids", None, "one-id-column", "endpoint_id, endpoint_id_again"),
]


@pytest.fixture(scope="module")
def bad_project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    project = root / "project"
    shutil.copytree(FIXTURE, project)
    shutil.copytree(PROJECT / "macros", project / "macros")
    return project


@pytest.fixture(scope="module")
def bad_build(bad_project, lake, profiles_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-build")
    return dbt_build(root, "build", lake, profiles_dir, project=bad_project)


@pytest.fixture(scope="module")
def check_output(bad_project, profiles_dir):
    result = CliRunner().invoke(
        cli,
        ["check", "--project-dir", str(bad_project), "--profiles-dir", str(profiles_dir), "--json"],
        catch_exceptions=False,
    )
    return result.exit_code, json.loads(result.stdout[result.stdout.index("{\n") :])


@pytest.mark.parametrize("model,test_name", DATA_RULES, ids=[m for m, _ in DATA_RULES])
def test_data_rule_breakers_fail_dbt_build(bad_build, model, test_name):
    assert not bad_build.ok
    results = json.loads((bad_build.target_path / "run_results.json").read_text())["results"]
    failed = {r["unique_id"].split(".")[2]: r for r in results if r["status"] in ("fail", "error")}
    assert test_name in failed, sorted(failed)
    assert failed[test_name]["status"] == "fail" and failed[test_name]["failures"] >= 1


def test_good_segment_passes_dbt_build(bad_build):
    results = json.loads((bad_build.target_path / "run_results.json").read_text())["results"]
    good = [r for r in results if "seg_good" in r["unique_id"]]
    assert good and all(r["status"] in ("success", "pass") for r in good)


@pytest.mark.parametrize(
    "model,column,rule,words",
    METADATA_RULES,
    ids=[f"{m}-{r}" + (f"-{c}" if c else "") for m, c, r, _ in METADATA_RULES],
)
def test_metadata_rule_breakers_fail_lakeseg_check(check_output, model, column, rule, words):
    code, out = check_output
    assert code == 1
    hits = [p for p in out["problems"] if p["model"] == model and p["rule"] == rule and p["column"] == column]
    assert hits, [p for p in out["problems"] if p["model"] == model]
    assert any(words in p["message"] for p in hits)


def test_good_and_data_breakers_pass_lakeseg_check(check_output):
    _, out = check_output
    flagged = {p["model"] for p in out["problems"]}
    assert "seg_good" not in flagged
    assert not flagged & {m for m, _ in DATA_RULES}


def test_check_text_names_model_column_and_rule(bad_project, profiles_dir):
    result = CliRunner().invoke(cli, ["check", "--project-dir", str(bad_project), "--profiles-dir", str(profiles_dir)])
    assert result.exit_code == 1
    assert (
        "seg_bad_field_name.foo: [field-name] 'User.Attributes.Foo' is not a Pinpoint CSV import field" in result.output
    )


def test_the_real_project_passes_check(profiles_dir):
    result = CliRunner().invoke(cli, ["check", "--project-dir", str(PROJECT), "--profiles-dir", str(profiles_dir)])
    assert result.exit_code == 0, result.output
    assert "6 segment(s) checked, 0 problem(s)." in result.output


def test_nothing_of_a_broken_segment_is_sent(bad_project, bad_build, profiles_dir, tmp_path):
    env = {**bad_build.env(), "LAKESEG_STATE_DIR": str(tmp_path / "state")}
    result = CliRunner().invoke(
        cli,
        [
            "sync",
            "--project-dir",
            str(bad_project),
            "--profiles-dir",
            str(profiles_dir),
            "--target-path",
            str(bad_build.target_path),
            "--state",
            str(tmp_path / "state"),
            "--json",
        ],
        env={**env, "LAKESEG_SYNC_STATE": str(tmp_path / "state")},
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    by_name = {s["segment"]: s for s in report["segments"]}
    assert by_name["seg_good"]["status"] == "synced"
    for model, test_name in DATA_RULES:
        assert by_name[model]["status"] == "skipped" and test_name in by_name[model]["reason"]
    for model, _, rule, _ in METADATA_RULES:
        assert by_name[model]["status"] in ("refused", "skipped")
        if by_name[model]["status"] == "refused":
            assert f"[{rule}]" in by_name[model]["reason"]
    delivered = {
        p.name
        for run in (bad_project / "build" / "exports").iterdir()
        for p in run.iterdir()
        if not run.name.startswith(".")
    }
    assert delivered == {"seg_good"}
