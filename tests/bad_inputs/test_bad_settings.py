"""Bad `lakeseg.yml`: refused with exit 2 before anything is read, sent or committed,
by a message naming the file, the target and the key (and the nearest valid key for a typo)."""

from __future__ import annotations

import pytest

from tests.bad_inputs.conftest import BASE_SETTINGS, no_traceback

B = BASE_SETTINGS  # a valid block for target `local`; cases append to it or replace it

SETTINGS_CASES = [
    # (id, lakeseg.yml text, words the message must contain)
    ("unknown-key-typo-guard", B + "    gaurd: {max_exit_share: 0.2}\n", ["gaurd", "did you mean 'guard'"]),
    (
        "unknown-key-under-destination",
        B.replace("path: EXPORTS", "path: EXPORTS, pth: x"),
        ["destination.pth", "did you mean 'path'"],
    ),
    (
        "unknown-key-under-files",
        B + "    files: {max_file_mbs: 10}\n",
        ["files.max_file_mbs", "did you mean 'max_file_mb'"],
    ),
    ("unknown-top-level-key", B.replace("targets:", "target:"), ["target", "did you mean 'targets'"]),
    (
        "unknown-pinpoint-key",
        B.replace("{type: files, path: EXPORTS}", "{type: pinpoint, aplication_id: x}"),
        ["destination.aplication_id", "did you mean 'application_id'"],
    ),
    (
        "unknown-destination-type",
        B.replace("type: files", "type: ftp"),
        ["destination.type", "files, pinpoint", "'ftp'"],
    ),
    ("state-null", B.replace("state: STATE", "state: ~"), ["state", "null"]),
    ("state-empty-string", B.replace("state: STATE", "state: ''"), ["state", "must not be empty"]),
    (
        "state-empty-env-default",
        B.replace("state: STATE", "state: ${LAKESEG_CORPUS_UNSET:-}"),
        ["state", "must not be empty"],
    ),
    ("state-a-number", B.replace("state: STATE", "state: 5"), ["state", "valid string"]),
    ("work-dir-empty", B.replace("work_dir: WORK", "work_dir: ' '"), ["work_dir", "must not be empty"]),
    ("memory-limit-word", B + "    memory_limit: lots\n", ["memory_limit", "1GB", "'lots'"]),
    ("memory-limit-number", B + "    memory_limit: 1024\n", ["memory_limit", "valid string"]),
    ("max-file-mb-tiny", B + "    files: {max_file_mb: 0.00003}\n", ["files.max_file_mb", "between 1 and 1024"]),
    ("max-file-mb-over-1gb", B + "    files: {max_file_mb: 2048}\n", ["files.max_file_mb", "1024"]),
    ("max-file-mb-text", B + "    files: {max_file_mb: big}\n", ["files.max_file_mb", "'big'"]),
    ("guard-a-number", B + "    guard: 5\n", ["guard", "must be a mapping"]),
    ("exit-share-zero", B + "    guard: {max_exit_share: 0}\n", ["guard.max_exit_share", "between 0 and 1"]),
    ("exit-share-above-one", B + "    guard: {max_exit_share: 2}\n", ["guard.max_exit_share", "between 0 and 1"]),
    ("exit-share-yaml-boolean", B + "    guard: {max_exit_share: yes}\n", ["guard.max_exit_share", "boolean"]),
    (
        "size-change-share-zero",
        B + "    guard: {max_size_change_share: 0}\n",
        ["guard.max_size_change_share", "must be above 0"],
    ),
    ("entered-share-text", B + "    guard: {max_entered_share: half}\n", ["guard.max_entered_share", "'half'"]),
    (
        "max-concurrent-jobs-11",
        B.replace("{type: files, path: EXPORTS}", "{type: pinpoint, max_concurrent_jobs: 11}"),
        ["destination.max_concurrent_jobs", "between 1 and 10"],
    ),
    (
        "import-url-not-s3",
        B.replace("{type: files, path: EXPORTS}", "{type: pinpoint, import_s3_url: 'https://x'}"),
        ["destination.import_s3_url", "s3://"],
    ),
    ("destination-a-list", B.replace("{type: files, path: EXPORTS}", "[files]"), ["destination", "must be a mapping"]),
    ("targets-a-list", "targets: [local]\n", ["targets", "must be a mapping"]),
    ("target-block-a-list", "targets:\n  local: [1, 2]\n", ["targets.local", "must be a mapping"]),
    ("file-a-yaml-list", "- local\n- athena\n", ["must be a mapping", "list"]),
    ("not-yaml", "targets: [\n", ["not valid YAML"]),
    (
        "env-var-unset",
        B.replace("state: STATE", "state: ${LAKESEG_CORPUS_UNSET}"),
        ["${LAKESEG_CORPUS_UNSET}", "at state", "not set"],
    ),
    ("no-block-for-target", "targets:\n  athena: {}\n", ["no settings for dbt target 'local'", "athena"]),
    (
        "misspelt-target-block",
        B.replace("  local:", "  locl:"),
        ["settings for target 'locl'", "the dbt profile does not define", "did you mean 'local'?"],
    ),
    ("misspelt-second-block", B + "  athna: {}\n", ["settings for target 'athna'", "did you mean 'athena'?"]),
    ("memory-limit-too-small", B + "    memory_limit: 1KB\n", ["memory_limit", "at least 64MiB"]),
    ("empty-file", "", ["no settings for dbt target 'local'"]),
    ("destination-type-null", B.replace("type: files", "type: ~"), ["destination.type", "files, pinpoint"]),
    ("guard-null", B + "    guard: ~\n", ["guard", "null"]),
    ("target-name-not-text", "targets:\n  1: {}\n", ["targets.1", "valid string"]),
    (
        "work-dir-control-character",
        B.replace("work_dir: WORK", 'work_dir: "a\\0b"'),
        ["work_dir", "control characters"],
    ),
    # Issue 27: a value that becomes part of a path is checked here, not when a segment first uses it
    (
        "destination-name-climbs-out-of-the-state-store",
        B.replace("path: EXPORTS", "path: EXPORTS, name: ../../escape"),
        ["destination.name", "one folder name", "'../../escape'"],
    ),
    (
        "destination-name-a-subfolder",
        B.replace("path: EXPORTS", "path: EXPORTS, name: a/b"),
        ["destination.name", "one folder name", "'a/b'"],
    ),
    (
        "destination-name-dot-dot",
        B.replace("path: EXPORTS", "path: EXPORTS, name: '..'"),
        ["destination.name", "one folder name", "'..'"],
    ),
    (
        "pinpoint-destination-name-absolute",
        B.replace("{type: files, path: EXPORTS}", "{type: pinpoint, name: /etc}"),
        ["destination.name", "one folder name", "'/etc'"],
    ),
    (
        "customer-profiles-destination-name-with-space",
        B.replace("{type: files, path: EXPORTS}", "{type: customer_profiles, name: 'my crm'}"),
        ["destination.name", "one folder name", "'my crm'"],
    ),
    (
        "poll-seconds-negative",
        B.replace("{type: files, path: EXPORTS}", "{type: pinpoint, poll_seconds: -1}"),
        ["destination.poll_seconds", "must be between 0 and 3600 seconds"],
    ),
]


@pytest.mark.parametrize("text,words", [c[1:] for c in SETTINGS_CASES], ids=[c[0] for c in SETTINGS_CASES])
def test_bad_settings_are_refused_by_key(unbuilt, monkeypatch, text, words):
    # given a lakeseg.yml with one mistake
    monkeypatch.delenv("LAKESEG_CORPUS_UNSET", raising=False)
    path = unbuilt.write_settings(text)
    # when syncing
    out = unbuilt.sync("seg_ok")
    # then: exit 2, the file and the key named, nothing sent or committed, no traceback
    assert out.exit_code == 2, out.output
    assert str(path) in out.stderr
    for word in words:
        assert word in out.stderr, out.stderr
    assert no_traceback(out) and out.stdout == ""
    unbuilt.assert_nothing_sent()
    unbuilt.assert_nothing_committed()


def test_settings_errors_name_the_target(unbuilt):
    unbuilt.write_settings(B + "    gaurd: {}\n")
    assert "(target local)" in unbuilt.sync("seg_ok").stderr


def test_several_mistakes_are_listed_together(unbuilt):
    unbuilt.write_settings(B.replace("state: STATE", "state: ~") + "    memory_limit: lots\n")
    out = unbuilt.sync("seg_ok")
    assert out.exit_code == 2
    assert "2 problems" in out.stderr and "state:" in out.stderr and "memory_limit:" in out.stderr


def test_memory_limit_cannot_inject_sql(unbuilt, tmp_path):
    # given a memory_limit crafted to close the SET statement and write a file
    target = tmp_path / "injected.csv"
    unbuilt.write_settings(B + f"    memory_limit: \"1GB'; COPY (select 42) TO '{target}'; --\"\n")
    # when syncing
    out = unbuilt.sync("seg_ok")
    # then the setting is refused by name and the statement never ran
    assert out.exit_code == 2 and "memory_limit" in out.stderr
    assert not target.exists()
    unbuilt.assert_nothing_sent()


def test_memory_limit_from_env_cannot_inject_sql(unbuilt, tmp_path, monkeypatch):
    target = tmp_path / "injected-env.csv"
    monkeypatch.setenv("LAKESEG_CORPUS_MEM", f"1GB'; COPY (select 42) TO '{target}'; --")
    unbuilt.write_settings(B + "    memory_limit: ${LAKESEG_CORPUS_MEM}\n")
    out = unbuilt.sync("seg_ok")
    assert out.exit_code == 2 and "memory_limit" in out.stderr
    assert not target.exists()


def test_max_exit_share_flag_of_zero_is_a_usage_error(unbuilt):
    out = unbuilt.sync("seg_ok", extra=("--max-exit-share", "0"))
    assert out.exit_code == 2 and "--max-exit-share" in out.stderr
    unbuilt.assert_nothing_sent()


def test_run_checks_settings_before_building(unbuilt, tmp_path):
    # given a settings typo
    unbuilt.write_settings(B + "    gaurd: {max_exit_share: 0.2}\n")
    target = tmp_path / "target"
    # when running `lakeseg run` (dbt build, then sync)
    out = unbuilt.invoke("run", target_path=target)
    # then it stops on the setting before dbt builds anything
    assert out.exit_code == 2 and "did you mean 'guard'" in out.stderr, out.output
    assert not target.exists()
    unbuilt.assert_nothing_sent()


def test_files_max_file_mb_from_lakeseg_yml_reaches_the_import_files(corpus, monkeypatch):
    """Guards issue 15 behaviour 14: files.max_file_mb set in lakeseg.yml is the size limit the sync writes import
    files with; verified to fail on a broken copy (sync/app/wiring.py:prepare_run not passing settings.max_file_bytes
    to SyncOptions)."""
    import sync.run.engine

    # Given lakeseg.yml sets a limit other than the default (100 MiB)
    corpus.write_settings(B + "    files: {max_file_mb: 1.5}\n")
    limits = []
    write_import_files = sync.run.engine.write_import_files

    def recording(con, sql, out_dir, max_file_bytes):
        limits.append(max_file_bytes)
        return write_import_files(con, sql, out_dir, max_file_bytes)

    monkeypatch.setattr(sync.run.engine, "write_import_files", recording)
    # When a good segment is synced through the CLI
    out = corpus.sync("seg_ok")
    # Then its import files were written under that limit (1.5 MiB in bytes)
    assert out.exit_code == 0, out.output
    assert limits == [int(1.5 * 1024 * 1024)]
    assert corpus.delivered() == {"seg_ok"}
