"""lakeseg.yml: per-target settings, env interpolation, flag overrides."""

import re
from pathlib import Path

import pytest

from sync.core.errors import ConfigError
from sync.settings import interpolate, load_settings


def test_defaults_without_a_file(tmp_path):
    s = load_settings(tmp_path, "local")
    assert (
        s.destination.model_dump(exclude_unset=True) == {"type": "files", "path": "build/exports"}
        and s.max_exit_share == 0.30
    )
    assert s.max_file_bytes == 100 * 1024 * 1024


def test_file_interpolates_env_and_flags_override(tmp_path, monkeypatch):
    (tmp_path / "lakeseg.yml").write_text(
        "targets:\n  prod:\n    destination: {type: pinpoint, application_id: '${APP}'}\n"
        "    state: s3://${BUCKET:-fallback}/state\n    guard: {max_exit_share: 0.1}\n"
    )
    monkeypatch.setenv("APP", "abc123")
    monkeypatch.delenv("BUCKET", raising=False)
    s = load_settings(tmp_path, "prod", overrides={"guard": {"max_exit_share": 0.5}})
    assert s.destination.application_id == "abc123"
    assert s.state == "s3://fallback/state"
    assert s.max_exit_share == 0.5


def test_the_size_change_guard_defaults_to_half_the_last_size_and_reads_its_keys(tmp_path):
    # Given no file, then a file setting both size-change keys
    assert (
        load_settings(tmp_path, "local").max_size_change_share,
        load_settings(tmp_path, "local").max_entered_share,
    ) == (0.5, 0.5)
    (tmp_path / "lakeseg.yml").write_text(
        "targets:\n  local:\n    guard: {max_size_change_share: 3, max_entered_share: 0.25}\n"
    )
    s = load_settings(tmp_path, "local")
    # Then each is read (growth may be above 1: up to four times the size), and the exit share keeps its default
    assert (s.max_size_change_share, s.max_entered_share, s.max_exit_share) == (3, 0.25, 0.30)


@pytest.mark.parametrize(
    "guard,match",
    [
        pytest.param(
            "{max_size_change_share: 0}",
            r"guard.max_size_change_share: must be above 0 \(a share of the last "
            r"committed size: 0.5 is 50%\), got 0",
            id="size-change-share-zero",
        ),
        pytest.param(
            "{max_entered_share: -0.1}",
            r"guard.max_entered_share: must be above 0 \(a share of the last "
            r"committed size: 0.5 is 50%\), got -0.1",
            id="entered-share-negative",
        ),
        pytest.param(
            "{max_entered_share: yes}", r"guard.max_entered_share: .*boolean", id="entered-share-yaml-boolean"
        ),
        pytest.param(
            "{max_size_change: 0.5}",
            r"guard.max_size_change: unknown key; did you mean 'max_size_change_share'",
            id="size-change-key-typo",
        ),
    ],
)
def test_a_bad_size_change_setting_is_refused_by_key(tmp_path, guard, match):
    # Given a guard block with one mistake in a size-change key
    (tmp_path / "lakeseg.yml").write_text(f"targets:\n  local:\n    guard: {guard}\n")
    # Then loading refuses it, naming the key
    with pytest.raises(ConfigError, match=match):
        load_settings(tmp_path, "local")


def test_missing_variable_is_named(monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(ConfigError, match=r"\$\{NOPE\}"):
        interpolate({"a": ["x ${NOPE}"]})


@pytest.mark.parametrize(
    "yaml_text,match",
    [
        pytest.param(
            "targets:\n  local:\n    guard: {max_exit_share: 2}\n", "between 0 and 1", id="share-out-of-range"
        ),
        pytest.param("targets:\n  local:\n    files: {max_file_mb: 2048}\n", "1024", id="file-over-1GB"),
        pytest.param("targets:\n  local:\n    destination: {path: x}\n", None, id="type-defaults-merge"),
        pytest.param("targets: [\n", "not valid YAML", id="bad-yaml"),
    ],
)
def test_invalid_settings(tmp_path, yaml_text, match):
    (tmp_path / "lakeseg.yml").write_text(yaml_text)
    if match is None:
        assert load_settings(tmp_path, "local").destination.model_dump(exclude_unset=True) == {
            "type": "files",
            "path": "x",
        }
    else:
        with pytest.raises(ConfigError, match=match):
            load_settings(tmp_path, "local")


def test_another_destination_type_does_not_inherit_files_keys(tmp_path):
    (tmp_path / "lakeseg.yml").write_text("targets:\n  prod:\n    destination: {type: pinpoint, application_id: x}\n")
    assert load_settings(tmp_path, "prod").destination.model_dump(exclude_unset=True) == {
        "type": "pinpoint",
        "application_id": "x",
    }


@pytest.mark.parametrize(
    "env,text,expected",
    [
        pytest.param({}, "${LS_T:-}", "", id="unset-empty-default-is-empty"),
        pytest.param({"LS_T": ""}, "${LS_T:-d}", "d", id="empty-takes-default-like-a-shell"),
        pytest.param({"LS_T": "v"}, "${LS_T:-d}", "v", id="set-wins"),
        pytest.param({"LS_T": ""}, "${LS_T}", "", id="set-empty-without-default"),
    ],
)
def test_interpolation_defaults(monkeypatch, env, text, expected):
    monkeypatch.delenv("LS_T", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert interpolate(text) == expected


def test_empty_default_is_accepted_where_empty_is_valid(tmp_path, monkeypatch):
    monkeypatch.delenv("LS_PREFIX", raising=False)
    (tmp_path / "lakeseg.yml").write_text(
        "targets:\n  prod:\n    destination: {type: pinpoint, segment_name_prefix: '${LS_PREFIX:-}'}\n"
    )
    assert load_settings(tmp_path, "prod").destination.segment_name_prefix == ""


def test_unknown_key_names_the_nearest_valid_one(tmp_path):
    (tmp_path / "lakeseg.yml").write_text("targets:\n  local:\n    memroy_limit: 1GB\n")
    with pytest.raises(
        ConfigError, match=r"lakeseg.yml \(target local\): memroy_limit: unknown key; did you mean 'memory_limit'"
    ):
        load_settings(tmp_path, "local")


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "targets:\n  local:\n    destination: {type: files, path: x, colour: red}\n",
            " (target local): destination.colour: unknown key; valid keys: type, path, name",
        ),
        ("tragets: {}\n", ": tragets: unknown key; did you mean 'targets'?"),
        (
            "targets:\n  local:\n    memory_limit: ~\n",
            " (target local): memory_limit: is empty (null); give a value, or remove the key to use the default",
        ),
        (
            "targets:\n  local:\n    destination: {type: ftp}\n",
            " (target local): destination.type: must be one of: customer_profiles, files, pinpoint, got 'ftp'",
        ),
        ("targets:\n  local:\n    work_dir: ''\n", " (target local): work_dir: must not be empty, got ''"),
        (
            'targets:\n  local:\n    work_dir: "a\\tb"\n',
            " (target local): work_dir: must not contain control characters, got 'a\\tb'",
        ),
        (
            "targets:\n  local:\n    memory_limit: lots\n    guard: {max_exit_share: 3}\n",
            " (target local): 2 problems:\n"
            "  guard.max_exit_share: must be above 0 and at most 1 (a share: between 0 and 1), got 3\n"
            "  memory_limit: must be a size such as 1GB, 512MB or 2.5GiB, got 'lots'",
        ),
        ("targets:\n  local: [1, 2]\n", ": targets.local: must be a mapping (key: value lines), got [1, 2]"),
        (
            'targets:\n  local:\n    work_dir: "a\\x7fb"\n',
            " (target local): work_dir: must not contain control characters, got 'a\\x7fb'",
        ),
        ("targets:\n  local:\n    destination: {type: files}\n", " (target local): destination.path: is required"),
    ],
    ids=[
        "unknown-nested-key",
        "unknown-top-key",
        "null",
        "unknown-destination-type",
        "empty-text",
        "control-character",
        "two-problems",
        "not-a-mapping",
        "delete-character",
        "missing-required-key",
    ],
)
def test_each_settings_error_reads_exactly_as_documented(tmp_path, text, message):
    # Given a lakeseg.yml with one kind of mistake
    (tmp_path / "lakeseg.yml").write_text(text)
    # When it is loaded, then the whole message names the file, the key and the rule -- word for word
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, "local")
    assert str(err.value) == f"{tmp_path / 'lakeseg.yml'}{message}"


def test_an_explicit_settings_file_must_have_the_target_and_exist(tmp_path):
    f = tmp_path / "lakeseg.yml"
    f.write_text("targets:\n  prod: {}\n  dev: {}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, "local", path=f)
    assert str(err.value) == (
        f"{f} has no settings for dbt target 'local' (has: prod, dev): add a 'local:' block under targets:"
    )
    f.write_text("targets: {}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, "local", path=f)
    assert (
        str(err.value) == f"{f} has no settings for dbt target 'local' (has: none): add a 'local:' block under targets:"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, "local", path=tmp_path / "nope.yml")
    assert str(err.value) == f"settings file {tmp_path / 'nope.yml'} does not exist"
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, "local", path=tmp_path)
    assert str(err.value) == f"settings file {tmp_path} is a directory"


def test_settings_say_where_they_came_from_and_flags_merge_into_them(tmp_path):
    # Given no settings file: the defaults apply, and say so
    assert load_settings(tmp_path, "local").source == "defaults"
    # Given a block for it, and flags: mappings merge key by key, plain values replace
    (tmp_path / "lakeseg.yml").write_text(
        "targets:\n  local:\n    memory_limit: 2GB\n    guard: {max_exit_share: 0.4}\n"
    )
    s = load_settings(
        tmp_path, "local", overrides={"guard": {"max_exit_share": 0.5}, "memory_limit": "3GB", "work_dir": None}
    )
    assert s.source == str(tmp_path / "lakeseg.yml")
    assert (s.max_exit_share, s.memory_limit, s.work_dir) == (0.5, "3GB", load_settings(tmp_path, "local").work_dir)
    assert s.destination.model_dump(exclude_unset=True) == {"type": "files", "path": "build/exports"}


def test_an_unset_variable_names_the_key_path_it_was_found_at(monkeypatch):
    monkeypatch.delenv("LAKESEG_NOPE", raising=False)
    with pytest.raises(ConfigError) as err:
        interpolate({"a": [{"b": "${LAKESEG_NOPE}"}]}, where="W")
    assert (
        str(err.value)
        == "W at a[0].b uses ${LAKESEG_NOPE}, which is not set (export it or write ${LAKESEG_NOPE:-default})"
    )
    with pytest.raises(ConfigError) as err:
        interpolate("${LAKESEG_NOPE}", where="W")
    assert str(err.value).startswith("W uses ${LAKESEG_NOPE}, which is not set")


def test_every_value_of_a_target_block_reaches_the_run(tmp_path):
    # Given a target block that sets the work folder and the digest's secret, besides the usual keys
    (tmp_path / "lakeseg.yml").write_text(
        "targets:\n  local:\n    work_dir: /var/tmp/lakeseg\n    digest_key: 'file:/etc/lakeseg/digest.key'\n"
        "    state: build/other-state\n    files: {max_file_mb: 2}\n"
    )
    # When the target's settings are loaded
    s = load_settings(tmp_path, "local")
    # Then the run gets each of them as written (the work folder as a path)
    assert (s.work_dir, s.digest_key, s.state, s.max_file_bytes) == (
        Path("/var/tmp/lakeseg"),
        "file:/etc/lakeseg/digest.key",
        "build/other-state",
        2 * 1024 * 1024,
    )


def test_without_a_file_the_work_folder_and_the_digest_secret_have_their_documented_defaults(tmp_path):
    # Given no lakeseg.yml; when the settings are loaded
    s = load_settings(tmp_path, "local")
    # Then the work happens under build/work, and the digest's secret is a key file beside the build
    assert (s.work_dir, s.digest_key) == (Path("build/work"), "file:build/digest.key")


def test_a_destination_path_flag_changes_only_the_path_of_the_files_destination(tmp_path):
    # Given a files destination with a name, and the --destination-path flag
    (tmp_path / "lakeseg.yml").write_text("targets:\n  local:\n    destination: {type: files, path: a, name: shared}\n")
    # When the settings are loaded with the flag
    s = load_settings(tmp_path, "local", overrides={"destination": {"path": "elsewhere"}})
    # Then the flag moves the deliveries; the type and the name stay as the file says
    assert s.destination.model_dump(exclude_unset=True) == {"type": "files", "path": "elsewhere", "name": "shared"}


@pytest.mark.parametrize(
    "text,message",
    [
        pytest.param(
            "targets:\n  local:\n    max_memory: 2GB\n",
            "max_memory: unknown key; did you mean 'memory_limit'?",
            id="max_memory-for-memory_limit",
        ),
        pytest.param(
            "targets:\n  local:\n    tmp_dir: /tmp/x\n",
            "tmp_dir: unknown key; did you mean 'work_dir'?",
            id="tmp_dir-for-work_dir",
        ),
        pytest.param(
            "targets:\n  local:\n    files: {size_mb: 10}\n",
            "files.size_mb: unknown key; did you mean 'max_file_mb'?",
            id="size_mb-for-max_file_mb",
        ),
    ],
)
def test_a_loosely_remembered_key_still_gets_a_suggestion(tmp_path, text, message):
    # Given a key that is a rough synonym of a valid one, not a one-letter typo
    (tmp_path / "lakeseg.yml").write_text(text)
    # When it is loaded, then the error suggests the key the user meant
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, "local")
    assert str(err.value) == f"{tmp_path / 'lakeseg.yml'} (target local): {message}"


@pytest.mark.parametrize(
    ("blocks", "target", "message"),
    [
        pytest.param(
            "  locl:\n    state: s\n",
            "local",
            "has settings for target 'locl', which the dbt profile does not define; did you mean 'local'? "
            "(the profile's targets: local, athena)",
            id="misspelt-block-names-the-nearest-target",
        ),
        pytest.param(
            "  athena:\n    state: s\n  atena:\n    state: t\n",
            "athena",
            "has settings for target 'atena', which the dbt profile does not define; did you mean 'athena'?",
            id="a-second-misspelt-block-beside-a-good-one",
        ),
        pytest.param(
            "  athena:\n    state: s\n",
            "local",
            "has no settings for dbt target 'local' (has: athena): add a 'local:' block under targets:",
            id="selected-target-without-a-block",
        ),
        pytest.param(
            "  staging:\n    state: s\n",
            "local",
            "has settings for target 'staging', which the dbt profile does not define; "
            "(the profile's targets: local, athena)",
            id="unknown-block-no-near-name",
        ),
    ],
)
def test_a_block_for_no_defined_target_or_a_target_without_a_block_is_refused(tmp_path, blocks, target, message):
    # Given a settings file whose blocks do not match the dbt profile's targets (local, athena)
    (tmp_path / "lakeseg.yml").write_text("targets:\n" + blocks)
    # When the settings of a target are loaded, then it is refused, naming the block and the nearest target
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, target, defined_targets=("local", "athena"))
    assert message in str(err.value)


def test_a_shortened_block_name_is_still_matched_to_its_target(tmp_path):
    (tmp_path / "lakeseg.yml").write_text("targets:\n  prod:\n    state: s\n")
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, "production", defined_targets=("production",))
    assert str(err.value).endswith(
        "has settings for target 'prod', which the dbt profile does not define; did you mean 'production'? "
        "(the profile's targets: production)"
    )


def test_a_block_for_a_profile_without_targets_says_it_has_none(tmp_path):
    (tmp_path / "lakeseg.yml").write_text("targets:\n  local:\n    state: s\n")
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, "local", defined_targets=())
    assert str(err.value).endswith("which the dbt profile does not define; (the profile's targets: none)")


def test_a_target_without_a_block_is_pointed_at_the_block_nearest_its_name(tmp_path):
    # Given a block named for a shortened target name, and no block for the selected target
    (tmp_path / "lakeseg.yml").write_text("targets:\n  prod:\n    state: s\n")
    # When the target's settings are loaded, then the refusal points at the block that was probably meant
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, "production")
    assert str(err.value) == (
        f"{tmp_path / 'lakeseg.yml'} has no settings for dbt target 'production' (has: prod); is 'prod' meant to "
        "be 'production'?: add a 'production:' block under targets:"
    )


def test_the_state_snapshot_and_diff_keys_reach_the_run(tmp_path):
    # Given a block setting each of them to something other than its default
    (tmp_path / "lakeseg.yml").write_text(
        "targets:\n  local:\n    state_kms_key_id: alias/lakeseg-state\n"
        "    snapshots: {compact_share: 0.5, max_deltas: 3}\n    diff: {engine: duckdb, pushdown_min_rows: 7}\n"
    )
    s = load_settings(tmp_path, "local")
    assert (s.state_kms_key_id, s.compact_share, s.max_deltas, s.diff_engine, s.pushdown_min_rows) == (
        "alias/lakeseg-state",
        0.5,
        3,
        "duckdb",
        7,
    )


def test_blocks_matching_the_profile_load_without_complaint(tmp_path):
    # Given one block per profile target, then either target loads its own block
    (tmp_path / "lakeseg.yml").write_text("targets:\n  local:\n    state: a\n  athena:\n    state: b\n")
    assert load_settings(tmp_path, "athena", defined_targets=("local", "athena")).state == "b"


def test_a_notify_block_is_read_with_its_secrets_from_the_environment(tmp_path, monkeypatch):
    # Given a notify block whose webhook URLs and secret come from the environment, the Slack one left empty
    (tmp_path / "lakeseg.yml").write_text(
        "targets:\n  local:\n    notify:\n      slack_webhook_url: ${SLACK_URL:-}\n"
        "      webhook_url: ${HOOK_URL}\n      webhook_secret: ${HOOK_SECRET}\n      events: [failure, refusal]\n"
    )
    monkeypatch.delenv("SLACK_URL", raising=False)
    monkeypatch.setenv("HOOK_URL", "https://hooks.example.com/lakeseg")
    monkeypatch.setenv("HOOK_SECRET", "s3cr3t")
    # When the settings are loaded
    notify = load_settings(tmp_path, "local").notify.model_dump()
    # Then the webhook is set, Slack is not, and the defaults fill the rest
    assert notify == {
        "slack_webhook_url": None,
        "webhook_url": "https://hooks.example.com/lakeseg",
        "webhook_secret": "s3cr3t",
        "events": ["failure", "refusal"],
        "timeout_s": 3.0,
        "retries": 2,
        "deadline_s": 10.0,
    }


def test_without_a_notify_block_nothing_is_sent():
    assert load_settings(Path("/nonexistent"), "local").notify is None


@pytest.mark.parametrize(
    "block, message",
    [
        pytest.param(
            "{webhook_url: 'https://h.example.com/x'}", "webhook_url needs webhook_secret", id="unsigned-webhook"
        ),
        pytest.param(
            "{slack_webhook_url: 'hooks.slack.com/services/T0/B0/SECRETPART'}",
            "notify.slack_webhook_url: must be an https:// (or http://) URL (got something else; not shown, it may "
            "hold a secret)",
            id="url-without-scheme",
        ),
        pytest.param("{events: [failure, outage]}", "notify.events.1", id="unknown-event"),
        pytest.param("{slak_webhook_url: 'https://x'}", "did you mean 'slack_webhook_url'", id="misspelt-key"),
        pytest.param("{timeout_s: 0}", "notify.timeout_s", id="zero-timeout"),
    ],
)
def test_a_bad_notify_block_is_refused_by_key_without_echoing_secrets(tmp_path, block, message):
    (tmp_path / "lakeseg.yml").write_text(f"targets:\n  local:\n    notify: {block}\n")
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        load_settings(tmp_path, "local")
    assert "SECRETPART" not in str(err.value)


def test_a_destination_block_is_checked_once_by_its_own_model_and_reaches_the_destination_as_is(tmp_path):
    from sync.core.settings_types import destination_block
    from sync.destinations.pinpoint import PinpointDestinationSettings

    # Given a pinpoint block in lakeseg.yml
    (tmp_path / "lakeseg.yml").write_text("targets:\n  prod:\n    destination: {type: pinpoint, poll_seconds: 30}\n")
    block = load_settings(tmp_path, "prod").destination
    # Then the settings hold the destination's own model, and the destination takes that very object
    assert isinstance(block, PinpointDestinationSettings) and block.poll_seconds == 30
    assert destination_block(PinpointDestinationSettings, block) is block


@pytest.mark.parametrize(
    ("block", "words"),
    [
        pytest.param(
            "{type: pinpoint, poll_seconds: 1.5}",
            "destination.poll_seconds: must be a whole number of seconds",
            id="pinpoint-poll-not-whole",
        ),
        pytest.param(
            "{type: customer_profiles, data_expiry_days: 5, refresh_before_expiry_days: 5}",
            "refresh_before_expiry_days must be less than data_expiry_days (5)",
            id="profiles-refresh-too-late",
        ),
    ],
)
def test_what_a_destination_refuses_is_refused_by_the_settings_check(tmp_path, block, words):
    # Given a destination rule that only its constructor used to check
    (tmp_path / "lakeseg.yml").write_text(f"targets:\n  prod:\n    destination: {block}\n")
    # Then loading the settings refuses it, before anything runs
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_settings(tmp_path, "prod")


def test_the_diff_engine_defaults_to_auto_with_a_five_million_row_threshold(tmp_path):
    # Given no settings file, when loading, then the diff engine is auto above 5,000,000 members
    s = load_settings(tmp_path, "local")
    assert (s.diff_engine, s.pushdown_min_rows) == ("auto", 5_000_000)


def test_the_diff_block_reaches_the_run(tmp_path):
    # Given a diff block, when loading, then both keys reach the settings
    (tmp_path / "lakeseg.yml").write_text("targets:\n  local:\n    diff: {engine: duckdb, pushdown_min_rows: 1000}\n")
    s = load_settings(tmp_path, "local")
    assert (s.diff_engine, s.pushdown_min_rows) == ("duckdb", 1000)


def test_diff_engine_athena_reaches_the_run(tmp_path):
    # Given diff.engine athena (where the deployment can push down is checked when the run is wired)
    (tmp_path / "lakeseg.yml").write_text("targets:\n  prod:\n    diff: {engine: athena}\n")
    # When loading, then it is accepted as it is
    assert load_settings(tmp_path, "prod").diff_engine == "athena"


@pytest.mark.parametrize(
    "block,words",
    [
        ("{engine: spark}", ["diff.engine", "'auto', 'duckdb' or 'athena'", "'spark'"]),
        ("{pushdown_min_rows: -1}", ["diff.pushdown_min_rows"]),
        ("{pushdown_min_rows: many}", ["diff.pushdown_min_rows", "'many'"]),
        ("{engin: athena}", ["diff.engin", "did you mean 'engine'"]),
    ],
    ids=["unknown-engine", "negative-threshold", "threshold-text", "misspelt-key"],
)
def test_a_bad_diff_setting_is_refused_by_key(tmp_path, block, words):
    # Given a diff block with one mistake
    (tmp_path / "lakeseg.yml").write_text(f"targets:\n  local:\n    diff: {block}\n")
    # When loading, then the error names the key
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, "local")
    for word in words:
        assert word in str(err.value), str(err.value)
