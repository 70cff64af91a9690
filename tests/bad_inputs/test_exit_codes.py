"""Issue 27: every exit code matches the docs' table. One test walks the table in docs/cli.md: it parses each row
(one documented situation a row), runs that situation against the corpus project, and asserts the row's code.
A row without a scenario, or a scenario without a row, fails too: the table and the code cannot drift apart."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from sync.cli import main as cli
from sync.destinations.base import DeliveryResult
from sync.destinations.files import FilesDestination
from sync.state.local import LocalStateStore
from tests.bad_inputs.conftest import BASE_SETTINGS, Corpus, Outcome
from tests.e2e.conftest import Build

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
SEG, OTHER = "seg_ok", "seg_ok_too"
ROW = re.compile(r"^\| `(\d+)` \| (.+?) \|$")


def documented_exit_codes() -> dict[str, int]:
    """The rows of the exit-code table in docs/cli.md: situation -> code."""
    text = CLI_DOC.read_text()
    table = text[text.index("**Exit codes**") :]
    rows = {}
    for line in table.splitlines():
        if line.startswith(("| Code |", "|---")):
            continue
        if not line.startswith("|"):
            if rows:
                break
            continue
        m = ROW.match(line)
        assert m, f"an exit-code row this test cannot read: {line!r}"
        rows[m.group(2)] = int(m.group(1))
    return rows


# ---- scenarios: (corpus, monkeypatch, tmp_path) -> (outcome, what the run reported, if anything) ----------------


def status_of(out: Outcome, segment: str = SEG) -> str:
    return out.segment(segment)["status"]


def synced(c, mp, tmp):
    out = c.sync(SEG)
    assert status_of(out) == "synced", out.output
    return out


def nothing_to_send(c, mp, tmp):
    assert c.sync(SEG).exit_code == 0
    out = c.sync(SEG)
    assert status_of(out) == "unchanged", out.output
    return out


def planned(c, mp, tmp):
    out = c.invoke("plan", "--json", "--select", SEG)
    assert status_of(out) == "planned", out.output
    return out


def no_segment_selected(c, mp, tmp):
    out = c.invoke("sync", "--select", SEG, "--exclude", SEG)
    assert "matches no segment" in out.output or "Nothing to do" in out.output, out.output
    return out


def check_clean(c, mp, tmp):
    # the corpus with its broken models left out of the manifest: only the good segments remain
    manifest = json.loads((c.build.target_path / "manifest.json").read_text())
    keep = {f"model.lakeseg_bad_inputs.{s}" for s in (SEG, OTHER)}
    segments = {
        k
        for k, n in manifest["nodes"].items()
        if n.get("resource_type") == "model" and n.get("name", "").startswith("seg_")
    }
    manifest["nodes"] = {
        k: n
        for k, n in manifest["nodes"].items()
        if k not in segments - keep and n.get("attached_node") not in segments - keep
    }
    target = tmp / "clean-target"
    target.mkdir()
    (target / "manifest.json").write_text(json.dumps(manifest))
    out = c.invoke("check", "--no-parse", "--exposures", "off", target_path=target)
    assert "0 problem(s)" in out.output, out.output
    return out


def history(c, mp, tmp):
    return c.invoke("history")


def unlock(c, mp, tmp):
    return c.invoke("unlock", "--destination", "files", "--segment", SEG)


def lake_generate(c, mp, tmp):
    result = CliRunner().invoke(
        cli, ["lake", "generate", "--path", str(tmp / "lake"), "--endpoints", "20", "--days", "2"]
    )
    return Outcome(result.exit_code, result.stdout, result.stderr)


def skipped(c, mp, tmp):
    out = c.sync("seg_control_chars")
    assert status_of(out, "seg_control_chars") == "skipped", out.output
    return out


def refused_contract(c, mp, tmp):
    out = c.sync("seg_null_exit")
    seg = out.segment("seg_null_exit")
    assert seg["status"] == "refused" and "contract" in seg["reason"], seg
    return out


def _rewrite_snapshot(c, sql: str) -> None:
    """Replace the committed snapshot of SEG by ``sql`` over it (``p``), its pointer updated to match."""
    pointer_path = c.state / "snapshots" / "files" / SEG / "current.json"
    pointer = json.loads(pointer_path.read_text())
    data = c.state / pointer["file"]
    new = data.with_name("rewritten.parquet")
    con = duckdb.connect()
    con.execute(f"copy ({sql.format(p=f'read_parquet({chr(39)}{data}{chr(39)}) p')}) to '{new}' (format parquet)")
    rows = con.execute(f"select count(*) from read_parquet('{new}')").fetchall()[0][0]
    con.close()
    new.replace(data)
    import hashlib

    pointer.update(sha256=hashlib.sha256(data.read_bytes()).hexdigest(), rows=rows)
    pointer_path.write_text(json.dumps(pointer))


def refused_mass_exit(c, mp, tmp):
    assert c.sync(SEG).exit_code == 0
    # the committed snapshot had 12 more members, who have all left since
    _rewrite_snapshot(
        c,
        "select * from {p} union all "
        "select p.* replace ('gone-' || t.i || '-' || p.Id as Id, (p.k1 + t.i + 1)::ubigint as k1) "
        "from {p}, range(4) t(i)",
    )
    out = c.sync(SEG)
    seg = out.segment(SEG)
    assert seg["status"] == "refused" and "previous members" in seg["reason"], seg
    return out


def refused_size_change(c, mp, tmp):
    assert c.sync(SEG).exit_code == 0
    _rewrite_snapshot(c, "select * from {p} order by Id limit 1")  # the segment had one member: two enter now
    out = c.sync(SEG)
    seg = out.segment(SEG)
    assert seg["status"] == "refused" and "would grow" in seg["reason"], seg
    return out


def refused_corrupt_snapshot(c, mp, tmp):
    assert c.sync(SEG).exit_code == 0
    pointer = json.loads((c.state / "snapshots" / "files" / SEG / "current.json").read_text())
    (c.state / pointer["file"]).write_bytes(b"PAR1 not parquet")
    out = c.sync(SEG)
    seg = out.segment(SEG)
    assert seg["status"] == "refused" and "checksum" in seg["reason"], seg
    return out


def refused_lock_held(c, mp, tmp):
    store = LocalStateStore(c.state)
    with store.lock("files", SEG, {"run_id": "other", "host": "another-host", "pid": 4242}):
        out = c.sync(SEG)
    seg = out.segment(SEG)
    assert seg["status"] == "refused" and "is locked" in seg["reason"], seg
    return out


def failed_unconfirmed(c, mp, tmp):
    mp.setattr(
        FilesDestination,
        "deliver",
        lambda self, delivery, progress=None: DeliveryResult(confirmed=False, errors=["import job FAILED"]),
    )
    out = c.sync(SEG)
    assert status_of(out) == "failed", out.output
    return out


def partial(c, mp, tmp):
    real = FilesDestination.deliver

    def rejecting(self, delivery, progress=None):
        result = real(self, delivery, progress)
        return DeliveryResult(confirmed=True, rejected={"ep-1": "value refused"}, location=result.location)

    mp.setattr(FilesDestination, "deliver", rejecting)
    out = c.sync(SEG)
    assert status_of(out) == "partial", out.output
    return out


def imports_table_not_updated(c, mp, tmp):
    (c.exports.parent / "lakeseg_imports.duckdb" / "in-the-way").mkdir(parents=True)  # can be neither read nor replaced
    out = c.sync(SEG)
    seg = out.segment(SEG)
    assert seg["status"] == "synced" and any("imports table not updated" in n for n in seg["notes"]), seg
    return out


def check_problem(c, mp, tmp):
    return c.invoke("check", "--no-parse", "--exposures", "off")


def unexpected_error(c, mp, tmp):
    import sync.app.wiring

    def boom(*args, **kwargs):
        raise RuntimeError("something nobody foresaw")

    mp.setattr(sync.app.wiring, "run_sync", boom)
    out = c.invoke("sync")
    assert "unexpected RuntimeError" in out.stderr, out.output
    return out


def bad_option(c, mp, tmp):
    return c.invoke("sync", "--no-such-flag")


def bad_setting(c, mp, tmp):
    for mistake in ("    gaurd: {max_exit_share: 0.2}\n", None):
        if mistake is None:
            c.write_settings(BASE_SETTINGS.replace("path: EXPORTS", "path: EXPORTS, name: ../../escape"))
        else:
            c.write_settings(BASE_SETTINGS + mistake)
        out = c.sync(SEG)
        if mistake is None:
            assert "destination.name" in out.stderr, out.output
        elif out.exit_code != 2:
            return out
    return out


def bad_profiles(c, mp, tmp):
    profiles = tmp / "bad-profiles"
    profiles.mkdir()
    (profiles / "profiles.yml").write_text("lakeseg:\n  target: local\n  outputs: {}\n")
    out = Corpus(c.root, c.project, profiles, c.build).sync(SEG)
    assert "profile" in out.stderr, out.output
    return out


def unwritable_state(c, mp, tmp):
    not_a_folder = tmp / "state-file"
    not_a_folder.write_text("x")
    return c.sync(SEG, extra=("--state", str(not_a_folder)))


def read_only_exports(c, mp, tmp):
    # An export folder mounted read-only, whose staging folder (from earlier runs) is still writable
    staging = c.exports / ".incoming"
    c.exports.mkdir(parents=True)
    mounted = []
    try:
        for where in (c.exports, staging):
            where.mkdir(exist_ok=True)
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True, text=True
            )
            if done.returncode != 0:
                pytest.skip(f"a read-only export folder needs mount (root): {done.stderr.strip()}")
            mounted.append(where)
        subprocess.run(["mount", "-o", "remount,ro", str(c.exports)], check=True)
        out = c.sync(SEG)
        assert "is not writable" in out.stderr, out.output
        return out
    finally:
        for where in reversed(mounted):
            subprocess.run(["umount", str(where)], check=False)


def missing_duckdb(c, mp, tmp):
    empty = tmp / "empty-build"
    empty.mkdir()
    without_database = Build("no-database", empty, c.build.target_path, True)
    out = Corpus(c.root, c.project, c.profiles, without_database).sync(SEG)
    assert "does not exist" in out.stderr, out.output
    return out


def missing_artifacts(c, mp, tmp):
    return c.sync(SEG, target_path=tmp / "no-target")


def lease_held(c, mp, tmp):
    # the other runner's run, alive on another host, holds the run lease
    other = subprocess.Popen(["sleep", "600"])
    try:
        LocalStateStore(c.state).create_lease(
            json.dumps(
                {
                    "owner": {"run_id": "r-codebuild", "command": "run", "host": "codebuild-1", "pid": other.pid},
                    "token": "t",
                    "renewed_at": "2099-01-01T00:00:00+00:00",
                    "expires_at": "2099-01-01T00:15:00+00:00",
                }
            ).encode()
        )
        out = c.sync(SEG)
    finally:
        other.kill()
        other.wait()
    assert "another run holds the lease" in out.stderr and c.delivered() == set(), out.output
    return out


def sigterm(c, mp, tmp):
    import os
    import signal
    import time

    def stopped_by_codebuild(self, delivery, progress=None):
        os.kill(os.getpid(), signal.SIGTERM)  # this test's own process
        time.sleep(5)

    mp.setattr(FilesDestination, "deliver", stopped_by_codebuild)
    out = c.sync(SEG)
    assert "stopped by SIGTERM" in out.stderr, out.output
    return out


SCENARIOS = {
    "every selected segment synced": synced,
    "a selected segment had nothing to send": nothing_to_send,
    "`plan` planned every selected segment": planned,
    "the selection leaves no segment (nothing to do)": no_segment_selected,
    "`check` found no problem": check_clean,
    "`history` succeeded": history,
    "`unlock` succeeded": unlock,
    "`lake generate` succeeded": lake_generate,
    "a segment was skipped: its model or a test failed in dbt": skipped,
    "a segment was refused: broken contract": refused_contract,
    "a segment was refused: mass exit": refused_mass_exit,
    "a segment was refused: size change": refused_size_change,
    "a segment was refused: corrupt snapshot": refused_corrupt_snapshot,
    "a segment was refused: lock held by another run": refused_lock_held,
    "a segment failed: delivery not confirmed (its rows stay in doubt and are resent)": failed_unconfirmed,
    "a segment is partial: delivered and committed, with rows the platform refused quarantined": partial,
    "a delivery was committed but the imports table could not be updated": imports_table_not_updated,
    "`check` found a problem": check_problem,
    "an unexpected error in a segment or the run (one line; the traceback with `-v`)": unexpected_error,
    "a bad option (usage error)": bad_option,
    "a bad or missing setting in `lakeseg.yml`, named by key (a `destination.name` that is not one folder name too)": bad_setting,
    "a bad `profiles.yml`": bad_profiles,
    "an unwritable state store": unwritable_state,
    "an unwritable destination (a read-only export folder)": read_only_exports,
    "a missing DuckDB database file": missing_duckdb,
    "missing, malformed or stale dbt artifacts (the message names the file and the dbt command to run)": missing_artifacts,
    "another run of the deployment holds the run lease: nothing built or sent (see [One run at a time]"
    "(scheduling.md#one-run-at-a-time-the-run-lease))": lease_held,
    "stopped by SIGTERM (CodeBuild's timeout or stop): the run's cleanup ran (Athena queries stopped, lease "
    "released, history written as failed)": sigterm,
}

TABLE = documented_exit_codes()
SITUATIONS = list(TABLE) + [s for s in SCENARIOS if s not in TABLE]


def _id(situation: str) -> str:
    code = TABLE.get(situation, "undocumented")
    return f"{code}-" + re.sub(r"[^a-z0-9]+", "-", situation.lower()).strip("-")[:60]


@pytest.mark.parametrize("situation", SITUATIONS, ids=[_id(s) for s in SITUATIONS])
def test_every_documented_exit_code_is_the_one_its_situation_gets(corpus, monkeypatch, tmp_path, situation):
    # Given a row of the exit-code table in docs/cli.md (or a scenario no row documents)
    assert situation in TABLE, f"no row of the exit-code table in {CLI_DOC} documents the scenario {situation!r}"
    assert situation in SCENARIOS, f"no scenario runs the documented situation {situation!r}"
    # When its situation is run through the CLI
    out = SCENARIOS[situation](corpus, monkeypatch, tmp_path)
    # Then the exit code is the documented one, and there is no traceback
    assert out.exit_code == TABLE[situation], out.output
    assert "Traceback (most recent call last)" not in out.output
