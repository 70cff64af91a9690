""".github/workflows/segments.yml: actionlint (with shellcheck on the run:
scripts) accepts it and rejects broken copies; it runs what docs/scheduling.md says."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import h

WORKFLOW = h.REPO / ".github" / "workflows" / "segments.yml"
ACTIONLINT = Path(os.environ.get("LAKESEG_ACTIONLINT") or h.REPO / ".tools" / "actionlint" / "bin" / "actionlint")


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    if not ACTIONLINT.exists():
        if os.environ.get("LAKESEG_ACTIONLINT"):
            pytest.fail(f"LAKESEG_ACTIONLINT={ACTIONLINT} does not exist")
        pytest.skip(f"actionlint is not installed at {ACTIONLINT} (run `make tools`)")
    # shellcheck lives next to it; actionlint finds it on PATH
    env = {**os.environ, "PATH": f"{ACTIONLINT.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(ACTIONLINT), "-oneline", "-verbose", *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_actionlint_accepts_the_workflow_and_checks_its_scripts_with_shellcheck():
    proc = actionlint(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Rule "shellcheck" was disabled' not in proc.stderr, proc.stderr


BREAKAGES = {
    "unknown-step-output": (
        "EXIT_CODE: ${{ steps.run.outputs.exit_code",
        "EXIT_CODE: ${{ steps.nosuch.outputs.exit_code",
        '"nosuch" is not defined',
    ),
    # (an action's unknown input is no longer caught: actionlint knows inputs by tag, and the actions
    # are pinned to commits; test_it_installs_assumes_the_stack_role_by_oidc_runs_... checks the role's)
    "unknown-context": ("role-to-assume: ${{ vars.", "role-to-assume: ${{ var.", 'undefined variable "var"'),
    "bad-cron": ('cron: "0 17 * * *"', 'cron: "0 25 * * *"', "invalid CRON format"),
    "unquoted-shell-variable": ('.venv/bin/lakeseg run "${args[@]}"', ".venv/bin/lakeseg run ${args[@]}", "SC2068"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_actionlint_rejects_a_broken_copy(tmp_path, breakage):
    # given a copy of the workflow with one mistake
    old, new, named = BREAKAGES[breakage]
    text = WORKFLOW.read_text()
    assert old in text
    broken = tmp_path / ".github" / "workflows" / "segments.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(old, new))

    # when actionlint checks it, then it fails and names the problem
    proc = actionlint(broken)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert named in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_it_runs_on_a_schedule_and_by_hand_never_two_at_once(workflow):
    on = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert on["schedule"] and "workflow_dispatch" in on
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert workflow["permissions"] == {"contents": "read", "id-token": "write"}


def test_it_installs_assumes_the_stack_role_by_oidc_runs_and_keeps_the_report(workflow):
    steps = workflow["jobs"]["run"]["steps"]
    by_use = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    runs = [s.get("run", "") for s in steps]
    assert "make install" in runs
    creds = by_use["aws-actions/configure-aws-credentials"]["with"]
    assert creds["role-to-assume"] == "${{ vars.LAKESEG_AWS_ROLE_ARN }}"
    assert not any(k in creds for k in ("aws-access-key-id", "aws-secret-access-key"))  # OIDC, no stored keys
    [run] = [s for s in steps if s.get("id") == "run"]
    assert ".venv/bin/lakeseg run" in run["run"] and "--target athena" in run["run"]
    # the outcome step and the upload run even when the run failed
    outcome = [s for s in steps if "sync.output.outcome" in s.get("run", "")]
    assert outcome and outcome[0]["if"] == "always()" and "--put-metric-data" in outcome[0]["run"]
    upload = by_use["actions/upload-artifact"]
    assert upload["if"] == "always()" and upload["with"]["path"] == "build/report/"
    # the steps come in that order: install, credentials, run, outcome, upload
    order = [
        steps.index(s)
        for s in (
            steps[runs.index("make install")],
            by_use["aws-actions/configure-aws-credentials"],
            run,
            outcome[0],
            upload,
        )
    ]
    assert order == sorted(order)


def test_every_action_is_pinned_to_a_full_commit_sha_with_its_tag_in_a_comment():
    # Given every `uses:` line of the workflow (a tag can be moved; a commit cannot)
    import re

    uses = [line.strip() for line in WORKFLOW.read_text().splitlines() if re.match(r"\s*(- )?uses:", line)]
    assert len(uses) == 4
    for line in uses:
        # Then each names a 40-hex commit and keeps the release tag it was taken from
        assert re.fullmatch(r"(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40}  # v\d+\.\d+\.\d+", line), line


def test_the_two_runners_never_run_at_the_same_time_by_default(workflow):
    # Given the stack runner's default schedule and build timeout, and the workflow's schedule (both UTC)
    from cfnlint.decode import cfn_yaml

    params = cfn_yaml.loads(h.TEMPLATE_PATH.read_text())["Parameters"]
    assert (
        params["ScheduleExpression"]["Default"] == "cron(0 5 * * ? *)"
        and params["ScheduleTimezone"]["Default"] == "UTC"
    )
    [schedule] = workflow[True]["schedule"]
    minute, hour = (int(x) for x in schedule["cron"].split()[:2])
    # Then a run of either, as long as it may last, ends before the other starts
    gap = ((hour * 60 + minute) - 5 * 60) % (24 * 60)
    longest = max(params["RunnerTimeoutMinutes"]["Default"], workflow["jobs"]["run"]["timeout-minutes"])
    assert longest <= gap <= 24 * 60 - longest
