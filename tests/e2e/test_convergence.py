"""Convergence under faults: the destination ends with the last built segment.

The scenario no "resend the same change" test can see: a run delivers a
change and dies before its commit, then upstream moves *back*. Diffing
against the committed snapshot alone finds nothing to send, and the
destination would keep the undone change (and a member who left would never
get its exit row). The in-doubt record makes the next run resend those ids.

Each case replays every delivered import file in order (what the platform
ends up holding) and compares it with the built tables of the last build.
"""

from __future__ import annotations

import json

import duckdb
import pytest

from sync.core.failpoints import COMMIT_STAGES, KILLED_EXIT_CODE, STAGES
from sync.dbt.contract import load_segments
from tests.destinations import pinpoint_harness as h


def expected_state(build) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """(member values per field, exit values per field) for every segment of ``build``."""
    manifest = json.loads((build.target_path / "manifest.json").read_text())
    con = duckdb.connect(str(build.build_dir / "lakeseg.duckdb"), read_only=True)
    members: dict[str, dict[str, str]] = {}
    exits: dict[str, dict[str, str]] = {}
    for seg in load_segments(manifest):
        cols = ", ".join(f'cast("{m.column}" as varchar)' for m in seg.mappings)
        for row in con.execute(f"select {cols} from {seg.relation.schema}.{seg.relation.identifier}").fetchall():
            values = dict(zip(seg.fields, row))
            members.setdefault(values.pop("Id"), {}).update({k: v or "" for k, v in values.items()})
        for f, v in seg.exit_values.items():
            exits[f] = v
    con.close()
    return members, exits


def assert_converged(applied: dict[str, dict[str, str]], build) -> int:
    """Every member holds its built values; every other endpoint ever sent holds the exit values."""
    members, exits = expected_state(build)
    stale = []
    for endpoint, values in members.items():
        got = applied.get(endpoint, {})
        stale += [(endpoint, f) for f, v in values.items() if got.get(f) != v]
    for endpoint, got in applied.items():
        for f, v in got.items():
            if f in exits and f not in members.get(endpoint, {}) and v != exits[f]:
                stale.append((endpoint, f))
    assert not stale, f"{len(stale)} stale value(s) at the destination, e.g. {stale[:5]}"
    return len(applied)


def test_lost_update_after_an_unconfirmed_delivery_is_repaired(lakeseg, build_now, build_later):
    # Given a committed sync of `now`
    assert lakeseg.subprocess("sync", build_now).returncode == 0
    # And a sync of `later` that delivers its change (values change, members enter and leave)
    # but dies before its commit
    killed = lakeseg.subprocess("sync", build_later, "--allow-mass-exit", env={"LAKESEG_FAILPOINTS": "before-commit"})
    assert killed.returncode == KILLED_EXIT_CODE
    # When upstream goes back to `now` and lakeseg syncs again
    code, report = lakeseg.json("sync", build_now, "--allow-mass-exit")
    # Then it resends the ids that were in doubt, though the committed snapshot says `now` already
    assert code == 0, report
    assert sum(s["plan"]["dirty"] for s in report["segments"]) > 0
    assert any(s["plan"]["resent"] + s["plan"]["resent_exits"] for s in report["segments"])
    # and the destination ends with `now` exactly: reverted values back, later-only members given exit rows
    assert_converged(lakeseg.applied(), build_now)
    # and the next run finds nothing in doubt any more
    code, again = lakeseg.json("sync", build_now)
    assert code == 0 and {s["status"] for s in again["segments"]} == {"unchanged"}


@pytest.mark.parametrize("stage", STAGES)
def test_kill_at_any_stage_then_upstream_change_converges(lakeseg, build_now, build_later, stage):
    # Given a committed sync of `later`
    assert lakeseg.subprocess("sync", build_later).returncode == 0
    # When a sync of `now` is killed at `stage`, and upstream then moves back to `later`
    killed = lakeseg.subprocess("sync", build_now, "--allow-mass-exit", env={"LAKESEG_FAILPOINTS": stage})
    assert killed.returncode == KILLED_EXIT_CODE
    code, _ = lakeseg.json("sync", build_later, "--allow-mass-exit")
    # Then the destination holds `later`, whatever the killed run had delivered
    assert code == 0
    assert_converged(lakeseg.applied(), build_later)


@pytest.mark.parametrize("stage", COMMIT_STAGES)
@pytest.mark.parametrize("compact", [False, True], ids=["delta", "compaction"])
def test_kill_inside_a_snapshot_commit_converges(lakeseg, build_now, build_later, stage, compact):
    # Given a committed sync of `later`, then of `now` (committed as deltas beside the base)
    assert lakeseg.subprocess("sync", build_later).returncode == 0
    assert lakeseg.subprocess("sync", build_now, "--allow-mass-exit").returncode == 0
    # When a sync of `later` is killed inside its commit (of one more delta, or of a compaction to a new base)
    env = {"LAKESEG_FAILPOINTS": stage, **({"LAKESEG_MAX_DELTAS": "1"} if compact else {})}
    killed = lakeseg.subprocess("sync", build_later, "--allow-mass-exit", env=env)
    assert killed.returncode == KILLED_EXIT_CODE
    # and upstream moves back to `now`
    code, _ = lakeseg.json("sync", build_now, "--allow-mass-exit")
    # Then the destination holds `now`, and the next run finds nothing to send
    assert code == 0
    assert_converged(lakeseg.applied(), build_now)
    code, again = lakeseg.json("sync", build_now)
    assert code == 0 and {s["status"] for s in again["segments"]} == {"unchanged"}


class _Killed(BaseException):
    """Stands in for a kill in-process (moto lives in this process): no except clause catches it."""


@pytest.mark.parametrize("stage", STAGES)
def test_s3_state_kill_then_upstream_change_converges(aws, lakeseg, build_now, build_later, stage, monkeypatch):
    # Given state under an S3 prefix (moto) and a committed sync of `now`
    s3 = h.client("s3")
    s3.create_bucket(Bucket="lakeseg-state")
    state = ["--state", "s3://lakeseg-state/prod"]
    assert lakeseg("sync", build_now, *state).exit_code == 0
    # When a sync of `later` dies at `stage`
    import sync.core.failpoints as fp

    def die(at):
        if at == stage:
            raise _Killed(at)

    with monkeypatch.context() as m, pytest.raises(_Killed):
        m.setattr(fp, "hit", die)
        lakeseg("sync", build_later, "--allow-mass-exit", *state)
    # and upstream moves back to `now` (the dead run's lock has to go: its "process" is this one)
    for key in s3.list_objects_v2(Bucket="lakeseg-state", Prefix="prod/locks/").get("Contents", []):
        s3.delete_object(Bucket="lakeseg-state", Key=key["Key"])
    result = lakeseg("sync", build_now, "--allow-mass-exit", "--json", *state)
    # Then the destination converges to `now`
    assert result.exit_code == 0, result.output
    assert_converged(lakeseg.applied(), build_now)


def test_a_killed_run_shows_as_interrupted_in_history(lakeseg, build_now):
    # Given a sync killed mid-way (its history document still says "running")
    killed = lakeseg.subprocess("sync", build_now, env={"LAKESEG_FAILPOINTS": "after-files"})
    assert killed.returncode == KILLED_EXIT_CODE
    # When the history is read
    code, runs = lakeseg.json("history", build_now)
    # Then that run reads as interrupted, not running forever
    assert code == 0
    assert [r["status"] for r in runs] == ["interrupted"]
