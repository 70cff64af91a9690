"""`lakeseg check` on hand-written manifests: each contract rule, and the whole message a user
reads for it (model, column, rule, then what to do)."""

from __future__ import annotations

import pytest

from sync.dbt.check import Problem, check_manifest, neutralised

CHANNELS = "ADM, APNS, APNS_SANDBOX, APNS_VOIP, APNS_VOIP_SANDBOX, BAIDU, CUSTOM, EMAIL, GCM, IN_APP, PUSH, SMS, VOICE"
COLUMNS = {"endpoint_id": "Id", "tier": "Attributes.Tier"}


def required_tests(field: str) -> list[str]:
    """The tests lakeseg check requires on a column exporting ``field``, written out here on purpose."""
    rules = ["unique", "not_null"] if field == "Id" else []
    rules += ["pinpoint_max_length", "pinpoint_no_control_chars"]
    if field.startswith("Metrics.") or field in ("Location.Latitude", "Location.Longitude"):
        rules.append("pinpoint_numeric")
    if field == "ChannelType":
        rules.append("pinpoint_accepted_values")
    return rules


def segment(
    name: str = "seg_a", columns: dict | None = None, exit="keep", *, drop=(), tests: dict | None = None, node_meta=None
) -> dict:
    """Manifest nodes of one segment model (column -> field; a field of None exports nothing) and its tests:
    every required one at dbt's defaults, less ``drop`` ((column, rule) pairs), updated by ``tests``."""
    columns = COLUMNS if columns is None else columns
    uid = f"model.p.{name}"
    lakeseg = {} if exit is None else {"exit": exit}
    model = {
        "unique_id": uid,
        "resource_type": "model",
        "name": name,
        "path": f"segments/{name}.sql",
        "schema": "main",
        "config": {"meta": {"lakeseg": lakeseg}},
        "columns": {
            col: {"name": col, **({"meta": {"lakeseg": {"field": f}}} if f else {})} for col, f in columns.items()
        },
    }
    if node_meta is not None:
        model["meta"] = {"lakeseg": node_meta}
        model["config"] = {}
    nodes = {uid: model}
    for col, f in columns.items():
        for rule in required_tests(f) if f else ():
            if (col, rule) in drop:
                continue
            kwargs = {"values": ["EMAIL", "SMS"]} if rule == "pinpoint_accepted_values" else {}
            tid = f"test.p.{rule}_{name}_{col}"
            nodes[tid] = {
                "unique_id": tid,
                "resource_type": "test",
                "name": f"{rule}_{name}_{col}",
                "attached_node": uid,
                "column_name": col,
                "config": {"severity": "ERROR"},
                "test_metadata": {"name": rule, "kwargs": kwargs},
            }
    for (col, rule), update in (tests or {}).items():
        tid = f"test.p.{rule}_{name}_{col}"
        base = nodes.get(tid) or {
            "unique_id": tid,
            "resource_type": "test",
            "name": f"{rule}_{name}_{col}",
            "attached_node": uid,
            "column_name": col,
            "test_metadata": {"name": rule},
        }
        nodes[tid] = {**base, **update}
    return nodes


def check(*segments: dict) -> list[str]:
    """Every problem lakeseg check reports for these segments, as the user reads it."""
    nodes: dict = {}
    for s in segments:
        nodes.update(s)
    return [str(p) for p in check_manifest({"nodes": nodes})[1]]


# ------------------------------------------------------------------ reading
def test_a_problem_reads_model_column_rule_then_message():
    assert str(Problem("seg_a", "tier", "exit", "bad")) == "seg_a.tier: [exit] bad"
    assert str(Problem("seg_a", None, "exit", "bad")) == "seg_a: [exit] bad"


def test_a_well_declared_segment_has_no_problem():
    # Given a segment with an id, a custom attribute, a metric, a channel and an exit value for each
    columns = {"endpoint_id": "Id", "tier": "Attributes.Tier", "score": "Metrics.Score", "channel": "ChannelType"}
    exit_values = {"Attributes.Tier": "None", "Metrics.Score": 0, "ChannelType": "EMAIL"}
    # When it is checked, Then nothing is reported, and the segment is returned
    segments, problems = check_manifest({"nodes": segment(columns=columns, exit=exit_values)})
    assert ([s.name for s in segments], problems) == (["seg_a"], [])


# ------------------------------------------------------------------ declarations
@pytest.mark.parametrize(
    "columns,exit,node_meta,expected",
    [
        pytest.param(
            {"endpoint_id": None, "tier": None},
            None,
            None,
            ["seg_a: [contract] declares no exported columns (column config.meta.lakeseg.field)"],
            id="no-exported-column-stops-there",
        ),
        pytest.param(
            COLUMNS,
            None,
            "oops",
            [
                "seg_a: [contract] meta 'lakeseg' must be a mapping, got 'oops'",
                "seg_a: [exit] declares no exit behaviour: set config.meta.lakeseg.exit to 'keep' or to a value "
                "for each of Attributes.Tier",
            ],
            id="namespace-not-a-mapping",
        ),
        pytest.param(
            {"endpoint_id": "Id", "tier": "Attributes.Tier", "plan": "Attributes.Plan"},
            None,
            None,
            [
                "seg_a: [exit] declares no exit behaviour: set config.meta.lakeseg.exit to 'keep' or to a value "
                "for each of Attributes.Tier, Attributes.Plan"
            ],
            id="no-exit-names-the-fields",
        ),
        pytest.param(
            {"endpoint_id": "Id"},
            None,
            None,
            [
                "seg_a: [exit] declares no exit behaviour: set config.meta.lakeseg.exit to 'keep' or to a value "
                "for each of its fields"
            ],
            id="no-exit-and-only-an-id",
        ),
        pytest.param(
            {"tier": "Attributes.Tier"},
            "keep",
            None,
            ["seg_a: [one-id-column] needs exactly one column mapped to Id, found 0 (none)"],
            id="no-id",
        ),
        pytest.param(
            {"endpoint_id": "Id", "other_id": "Id"},
            "keep",
            None,
            [
                "seg_a: [one-id-column] needs exactly one column mapped to Id, found 2 (endpoint_id, other_id)",
                "seg_a.other_id: [one-column-per-field] Id is also mapped from column endpoint_id",
            ],
            id="two-ids",
        ),
        pytest.param(
            {"endpoint_id": "Id", "a": "Attributes.Tier", "b": "Attributes.Tier", "c": "Attributes.Tier"},
            "keep",
            None,
            [
                "seg_a.b: [one-column-per-field] Attributes.Tier is also mapped from column a",
                "seg_a.c: [one-column-per-field] Attributes.Tier is also mapped from column a",
            ],
            id="a-field-from-three-columns-names-the-first",
        ),
        pytest.param(
            {"endpoint_id": "Id", "bad": "Attributes.a.b"},
            "keep",
            None,
            [
                "seg_a.bad: [name-characters] attribute name 'a.b' contains a dot, a control character or "
                "surrounding spaces; the CSV header's dot notation cannot carry it"
            ],
            id="field-name-rule",
        ),
        pytest.param(
            {"endpoint_id": "Id", "bad": "Custom.Tier"},
            "keep",
            None,
            [
                "seg_a.bad: [field-name] 'Custom.Tier' is not a Pinpoint CSV import field; use Id, Address, "
                "ChannelType, OptOut, EffectiveDate, User.UserId, User.UserAttributes.<name>, Attributes.<name>, "
                "Metrics.<name>, Demographic.<...> or Location.<...> (names are case-sensitive)"
            ],
            id="not-a-pinpoint-field",
        ),
    ],
)
def test_declaration_problems(columns, exit, node_meta, expected):
    # Given a segment whose YAML declares these columns, exit and namespace (and carries its required tests)
    # When it is checked
    # Then each problem names the model, the column when there is one, and the rule
    assert check(segment(columns=columns, exit=exit, node_meta=node_meta)) == expected


# ------------------------------------------------------------------ exit
TIER_AND_SCORE = {"endpoint_id": "Id", "tier": "Attributes.Tier", "score": "Metrics.Score"}


@pytest.mark.parametrize(
    "exit,expected",
    [
        pytest.param(
            "Keep", ["seg_a: [exit] exit must be 'keep' or a mapping of field to value, got 'Keep'"], id="keep-miscased"
        ),
        pytest.param(
            ["keep"], ["seg_a: [exit] exit must be 'keep' or a mapping of field to value, got list"], id="a-list"
        ),
        pytest.param(5, ["seg_a: [exit] exit must be 'keep' or a mapping of field to value, got int"], id="a-number"),
        pytest.param(
            {},
            [
                "seg_a: [exit] exit has no value for Attributes.Tier (give one, or declare exit: keep)",
                "seg_a: [exit] exit has no value for Metrics.Score (give one, or declare exit: keep)",
            ],
            id="empty-mapping",
        ),
        pytest.param(
            {"Attributes.Tier": "None", "Metrics.Score": 0, "Attributes.Gone": None},
            ["seg_a: [exit] exit names Attributes.Gone, which this segment does not export"],
            id="a-field-it-does-not-export",
        ),
        pytest.param(
            {"Attributes.Gone": "x", "Attributes.Tier": None, "Metrics.Score": 0},
            [
                "seg_a: [exit] exit names Attributes.Gone, which this segment does not export",
                "seg_a: [exit-value] exit value for Attributes.Tier is null (YAML ~, null or nothing); write the "
                "value in quotes, e.g. 'None'",
            ],
            id="the-fields-after-an-unknown-one-are-checked",
        ),
        pytest.param(
            {"Attributes.Tier": "None", "Metrics.Score": None},
            [
                "seg_a: [exit-value] exit value for Metrics.Score is null (YAML ~, null or nothing); write the "
                "value in quotes, e.g. 'None'"
            ],
            id="null-and-nothing-else",
        ),
        pytest.param(
            {"Attributes.Tier": True, "Metrics.Score": False},
            [
                "seg_a: [exit-value] exit value for Attributes.Tier is the YAML boolean true (an unquoted "
                "yes/no/true/false/on/off); quote it, e.g. 'No'",
                "seg_a: [exit-value] exit value for Metrics.Score is the YAML boolean false (an unquoted "
                "yes/no/true/false/on/off); quote it, e.g. 'No'",
            ],
            id="booleans",
        ),
        pytest.param(
            {"Attributes.Tier": ["a"], "Metrics.Score": {"a": 1}},
            [
                "seg_a: [exit-value] exit value for Attributes.Tier must be a string or a number, got a list",
                "seg_a: [exit-value] exit value for Metrics.Score must be a string or a number, got a dict",
            ],
            id="list-and-mapping",
        ),
        pytest.param(
            {"Attributes.Tier": "x" * 101, "Metrics.Score": "n/a"},
            [
                "seg_a: [exit-max-length] exit value for Attributes.Tier: value is 101 characters; Pinpoint allows 100",
                "seg_a: [exit-numeric] exit value for Metrics.Score: Metrics.Score is numeric but the value 'n/a' "
                "is not a number",
            ],
            id="pinpoint-value-rules",
        ),
        pytest.param(
            {"Attributes.Tier": "a\nb", "Metrics.Score": 1.5},
            [
                "seg_a: [exit-no-control-chars] exit value for Attributes.Tier: value holds a control character "
                "(line break, tab, NUL, U+0085, U+2028/U+2029, ...)"
            ],
            id="control-character",
        ),
    ],
)
def test_exit_problems(exit, expected):
    # Given a segment exporting a custom attribute and a metric, with this exit declaration
    # When it is checked
    # Then each exit problem is named; a value already refused is not checked again
    assert check(segment(columns=TIER_AND_SCORE, exit=exit)) == expected


def test_a_channel_exit_value_must_be_a_channel():
    columns = {"endpoint_id": "Id", "channel": "ChannelType"}
    assert check(segment(columns=columns, exit={"ChannelType": "FAX"})) == [
        f"seg_a: [exit-accepted-values] exit value for ChannelType: ChannelType takes one of {CHANNELS}"
    ]


# ------------------------------------------------------------------ required tests
@pytest.mark.parametrize(
    "column,rule,field",
    [
        ("endpoint_id", "unique", "Id"),
        ("endpoint_id", "not_null", "Id"),
        ("endpoint_id", "pinpoint_max_length", "Id"),
        ("tier", "pinpoint_no_control_chars", "Attributes.Tier"),
        ("score", "pinpoint_numeric", "Metrics.Score"),
        ("latitude", "pinpoint_numeric", "Location.Latitude"),
    ],
)
def test_a_missing_required_test_is_named(column, rule, field):
    # Given a segment missing one required test
    columns = {**TIER_AND_SCORE, "latitude": "Location.Latitude"}
    # When it is checked
    # Then the column, its field and the test are named
    assert check(segment(columns=columns, drop={(column, rule)})) == [
        f"seg_a.{column}: [required-test] {field} needs the '{rule}' test"
    ]


def test_an_attribute_needs_no_id_tests_and_a_text_field_no_numeric_test():
    # Given only the tests a custom text attribute needs on it: no unique, not_null or numeric
    # When checked, Then nothing is missing
    assert check(segment(columns={"endpoint_id": "Id", "tier": "Attributes.Tier"})) == []


def test_a_segment_without_any_test_needs_them_all():
    # Given a segment model with no test attached at all
    nodes = {k: v for k, v in segment().items() if v["resource_type"] == "model"}
    # When it is checked
    # Then every required test is named, column by column
    assert check(nodes) == [
        "seg_a.endpoint_id: [required-test] Id needs the 'unique' test",
        "seg_a.endpoint_id: [required-test] Id needs the 'not_null' test",
        "seg_a.endpoint_id: [required-test] Id needs the 'pinpoint_max_length' test",
        "seg_a.endpoint_id: [required-test] Id needs the 'pinpoint_no_control_chars' test",
        "seg_a.tier: [required-test] Attributes.Tier needs the 'pinpoint_max_length' test",
        "seg_a.tier: [required-test] Attributes.Tier needs the 'pinpoint_no_control_chars' test",
    ]


def test_a_singular_test_counts_for_no_column():
    # Given a singular (SQL file) test on the model, named like a required test, with no metadata or column
    nodes = segment(drop={("tier", "pinpoint_max_length")})
    nodes["test.p.pinpoint_max_length"] = {
        "unique_id": "test.p.pinpoint_max_length",
        "resource_type": "test",
        "name": "pinpoint_max_length",
        "depends_on": {"nodes": ["model.p.seg_a"]},
    }
    # When checked, Then tier still misses its max-length test
    assert check(nodes) == ["seg_a.tier: [required-test] Attributes.Tier needs the 'pinpoint_max_length' test"]


def test_a_neutralised_required_test_does_not_count():
    found = check(segment(tests={("tier", "pinpoint_max_length"): {"config": {"severity": "warn"}}}))
    assert found == [
        "seg_a.tier: [required-test] Attributes.Tier's 'pinpoint_max_length' test does not count with "
        "severity: warn: required tests run at error severity on every row"
    ]


@pytest.mark.parametrize(
    "test_update",
    [
        pytest.param(
            {"column_name": None, "test_metadata": {"name": "unique", "kwargs": {"column_name": "endpoint_id"}}},
            id="column-in-kwargs",
        ),
        pytest.param({"column_name": "ENDPOINT_ID"}, id="column-in-capitals"),
    ],
)
def test_a_test_finds_its_column_however_dbt_records_it(test_update):
    # Given the unique test recording its column in its kwargs only, or in capitals
    # When checked, Then it counts for endpoint_id
    assert check(segment(tests={("endpoint_id", "unique"): test_update})) == []


def test_a_model_column_in_capitals_finds_its_tests():
    # Given a model column declared as Endpoint_Id (Athena lowercases it) and tests on endpoint_id
    nodes = segment(columns={"Endpoint_Id": "Id", "tier": "Attributes.Tier"})
    for node in nodes.values():
        if node.get("column_name") == "Endpoint_Id":
            node["column_name"] = "endpoint_id"
    # When checked, Then its tests count
    assert check(nodes) == []


def test_a_model_level_test_is_no_column_test():
    # Given a unique test with no column (e.g. on a combination), and none on endpoint_id
    nodes = segment(drop={("endpoint_id", "unique")}, tests={(None, "unique"): {"column_name": None}})
    # When checked, Then endpoint_id still misses its unique test
    assert check(nodes) == ["seg_a.endpoint_id: [required-test] Id needs the 'unique' test"]


@pytest.mark.parametrize(
    "test,why",
    [
        pytest.param({"config": {"severity": "warn"}}, "severity: warn", id="warn"),
        pytest.param({"config": {"severity": " Error "}}, None, id="error-any-case-and-spaces"),
        pytest.param({"config": {"severity": None}}, None, id="severity-null"),
        pytest.param({}, None, id="no-config"),
        pytest.param({"config": None}, None, id="config-null"),
        pytest.param({"config": {"where": "tier is not null"}}, "where: 'tier is not null'", id="where"),
        pytest.param({"config": {"where": ""}}, None, id="where-empty"),
        pytest.param({"config": {"limit": 0}}, "limit: 0", id="limit-zero"),
        pytest.param({"config": {"limit": None}}, None, id="limit-null"),
        pytest.param({"config": {"error_if": "> 10"}}, "error_if: '> 10'", id="error-if-raised"),
        pytest.param({"config": {"error_if": "!= 0"}}, None, id="error-if-default"),
        pytest.param({"config": {"error_if": ">0"}}, None, id="error-if-above-zero"),
        pytest.param({"config": {"error_if": ">= 1"}}, None, id="error-if-at-least-one"),
        pytest.param({"config": {"error_if": None}}, None, id="error-if-null"),
        pytest.param({"config": {"fail_calc": "sum(n)"}}, "fail_calc: 'sum(n)'", id="fail-calc-other"),
        pytest.param({"config": {"fail_calc": "COUNT( * )"}}, None, id="fail-calc-count-any-case"),
        pytest.param({"config": {"fail_calc": None}}, None, id="fail-calc-null"),
        pytest.param({"config": {"severity": "warn", "where": "1=0"}}, "severity: warn", id="severity-first"),
        pytest.param({"config": {"where": "1=0", "limit": 5}}, "where: '1=0'", id="where-before-limit"),
        pytest.param({"config": {"limit": 5, "error_if": ">9"}}, "limit: 5", id="limit-before-error-if"),
        pytest.param(
            {"config": {"error_if": ">9", "fail_calc": "0"}}, "error_if: '>9'", id="error-if-before-fail-calc"
        ),
    ],
)
def test_what_neutralises_a_test(test, why):
    # Given a unique test with this config
    # When asked whether it really guards every row at error severity
    # Then the first setting that keeps it from doing so is given, or None
    assert neutralised({"test_metadata": {"name": "unique"}, **test}) == why


@pytest.mark.parametrize(
    "kwargs,why",
    [
        pytest.param({"max_length": 100}, None, id="pinpoints-limit"),
        pytest.param({"max_length": "100"}, None, id="as-text"),
        pytest.param({"max_length": 50}, None, id="tighter"),
        pytest.param({"max_length": 101}, "max_length: 101 (Pinpoint allows 100)", id="looser"),
        pytest.param(
            {"arguments": {"max_length": 100.5}}, "max_length: 100.5 (Pinpoint allows 100)", id="looser-in-arguments"
        ),
        pytest.param(
            {"max_length": 101, "arguments": {"max_length": 50}},
            "max_length: 101 (Pinpoint allows 100)",
            id="kwargs-before-arguments",
        ),
        pytest.param({"max_length": "long"}, "max_length: 'long'", id="not-a-number"),
        pytest.param({"max_length": [100]}, "max_length: [100]", id="a-list"),
        pytest.param({}, None, id="macro-default"),
    ],
)
def test_a_max_length_test_must_not_allow_more_than_pinpoint(kwargs, why):
    test = {"config": {}, "test_metadata": {"name": "pinpoint_max_length", "kwargs": kwargs}}
    assert neutralised(test) == why


def test_a_max_length_argument_of_another_test_is_not_read():
    assert neutralised({"config": {}, "test_metadata": {"name": "my_length", "kwargs": {"max_length": 1000}}}) is None


# ------------------------------------------------------------------ accepted values
CHANNEL = {"endpoint_id": "Id", "channel": "ChannelType"}


@pytest.mark.parametrize(
    "tests,drop,expected",
    [
        pytest.param(
            {},
            {("channel", "pinpoint_accepted_values")},
            [
                f"seg_a.channel: [required-test] ChannelType needs a 'pinpoint_accepted_values' test with values "
                f"from {CHANNELS}"
            ],
            id="none",
        ),
        pytest.param(
            {
                ("channel", "pinpoint_accepted_values"): {
                    "test_metadata": {"name": "pinpoint_accepted_values", "kwargs": {"values": ["EMAIL", "FAX", 7]}}
                }
            },
            (),
            ["seg_a.channel: [accepted-values] ChannelType test accepts 7, FAX, which Pinpoint does not"],
            id="values-pinpoint-refuses",
        ),
        pytest.param(
            {
                ("channel", "pinpoint_accepted_values"): {
                    "test_metadata": {
                        "name": "pinpoint_accepted_values",
                        "kwargs": {"arguments": {"values": ["EMAIL", "FAX"]}},
                    }
                }
            },
            (),
            ["seg_a.channel: [accepted-values] ChannelType test accepts FAX, which Pinpoint does not"],
            id="values-in-arguments",
        ),
        pytest.param(
            {
                ("channel", "pinpoint_accepted_values"): {
                    "test_metadata": {
                        "name": "pinpoint_accepted_values",
                        "kwargs": {"values": ["EMAIL"], "arguments": {"values": ["FAX"]}},
                    }
                }
            },
            (),
            [],
            id="kwargs-before-arguments",
        ),
        pytest.param(
            {
                ("channel", "pinpoint_accepted_values"): {
                    "test_metadata": {"name": "pinpoint_accepted_values", "kwargs": {}}
                }
            },
            (),
            [],
            id="no-values-read",
        ),
        pytest.param(
            {
                ("channel", "accepted_values"): {
                    "test_metadata": {"name": "accepted_values", "kwargs": {"values": ["SMS", "FAX"]}}
                }
            },
            {("channel", "pinpoint_accepted_values")},
            ["seg_a.channel: [accepted-values] ChannelType test accepts FAX, which Pinpoint does not"],
            id="dbt-accepted-values",
        ),
        pytest.param(
            {
                ("channel", "accepted_values"): {
                    "test_metadata": {"name": "accepted_values", "kwargs": {"values": ["FAX"]}}
                }
            },
            (),
            [],
            id="ours-read-first",
        ),
    ],
)
def test_a_channel_needs_a_test_of_pinpoint_values(tests, drop, expected):
    # Given a segment exporting ChannelType with (or without) an accepted-values test
    # When it is checked
    # Then the test must exist and accept only Pinpoint's channel types
    assert check(segment(columns=CHANNEL, tests=tests, drop=drop)) == expected


@pytest.mark.parametrize(
    "tests,drop,expected",
    [
        pytest.param(
            {("channel", "pinpoint_accepted_values"): {"config": {"where": "1=0"}}},
            (),
            [
                "seg_a.channel: [required-test] ChannelType's 'pinpoint_accepted_values' test does not count with "
                "where: '1=0': required tests run at error severity on every row"
            ],
            id="ours-filtered",
        ),
        pytest.param(
            {
                ("channel", "accepted_values"): {
                    "config": {"error_if": ">1000"},
                    "test_metadata": {"name": "accepted_values", "kwargs": {"values": ["SMS"]}},
                }
            },
            {("channel", "pinpoint_accepted_values")},
            [
                "seg_a.channel: [required-test] ChannelType's 'accepted_values' test does not count with "
                "error_if: '>1000': required tests run at error severity on every row"
            ],
            id="dbts-thresholded",
        ),
        pytest.param(
            {
                ("channel", "pinpoint_accepted_values"): {
                    "config": {"limit": 10},
                    "test_metadata": {"name": "pinpoint_accepted_values", "kwargs": {"values": ["SMS"]}},
                },
                ("channel", "accepted_values"): {
                    "config": {},
                    "test_metadata": {"name": "accepted_values", "kwargs": {"values": ["SMS", "FAX"]}},
                },
            },
            (),
            ["seg_a.channel: [accepted-values] ChannelType test accepts FAX, which Pinpoint does not"],
            id="the-guarding-one-is-read",
        ),
        pytest.param(
            {
                ("channel", "pinpoint_accepted_values"): {"config": {"limit": 10}},
                ("channel", "accepted_values"): {
                    "config": {},
                    "test_metadata": {"name": "accepted_values", "kwargs": {"values": ["SMS"]}},
                },
            },
            (),
            [],
            id="one-guarding-is-enough",
        ),
    ],
)
def test_an_accepted_values_test_counts_only_on_every_row_at_error_severity(tests, drop, expected):
    """The contract's rule for required tests (docs/segments.md) holds for the accepted-values one too (it used to be read
    for its values only, so a `where: 1=0` passed check and let any channel type through)."""
    # Given a ChannelType segment whose accepted-values test is filtered, limited or thresholded
    # When it is checked
    # Then that test does not count, unless another one guards every row
    assert check(segment(columns=CHANNEL, tests=tests, drop=drop)) == expected


def test_opt_out_takes_all_or_none():
    columns = {"endpoint_id": "Id", "opt_out": "OptOut"}
    assert check(segment(columns=columns)) == [
        "seg_a.opt_out: [required-test] OptOut needs a 'pinpoint_accepted_values' test with values from ALL, NONE"
    ]


# ------------------------------------------------------------------ across segments
def test_a_field_written_by_several_segments_is_refused_in_each():
    # Given three segments exporting Attributes.Tier (from differently named columns), two also Attributes.Plan
    a = segment("seg_a", {"endpoint_id": "Id", "tier_a": "Attributes.Tier", "plan": "Attributes.Plan"})
    b = segment("seg_b", {"endpoint_id": "Id", "tier_b": "Attributes.Tier", "plan": "Attributes.Plan"})
    c = segment("seg_c", {"endpoint_id": "Id", "tier_c": "Attributes.Tier"})
    # When they are checked together
    # Then each owner is told who else writes the field, field by field; the shared Id is no problem
    assert check(c, b, a) == [
        "seg_a.plan: [field-ownership] Attributes.Plan is also written by seg_b; each field has exactly one owner",
        "seg_b.plan: [field-ownership] Attributes.Plan is also written by seg_a; each field has exactly one owner",
        "seg_a.tier_a: [field-ownership] Attributes.Tier is also written by seg_b, seg_c; each field has exactly "
        "one owner",
        "seg_b.tier_b: [field-ownership] Attributes.Tier is also written by seg_a, seg_c; each field has exactly "
        "one owner",
        "seg_c.tier_c: [field-ownership] Attributes.Tier is also written by seg_a, seg_b; each field has exactly "
        "one owner",
    ]


def attributes(prefix: str, count: int, field_prefix: str = "Attributes.") -> dict:
    return {"endpoint_id": "Id", **{f"{prefix.lower()}{i:03}": f"{field_prefix}{prefix}{i:03}" for i in range(count)}}


def test_the_quota_refuses_whole_segments_in_name_order_and_counts_on():
    # Given 249 custom attributes in seg_a, then segments of 2, 1, 4 and 3 new ones, one of only a shared field,
    # and one of standard fields
    segments = [
        segment("seg_a", attributes("A", 249)),
        segment("seg_b", attributes("B", 2, "User.UserAttributes.")),
        segment("seg_c", attributes("C", 1, "Metrics.")),
        segment("seg_d", attributes("D", 4)),
        segment("seg_e", attributes("E", 3)),
        segment("seg_f", {"endpoint_id": "Id", "again": "Attributes.A000"}),
        segment("seg_g", {"endpoint_id": "Id", "addr": "Address", "user": "User.UserId"}),
    ]
    # When they are checked together
    quota = [p for p in check(*reversed(segments)) if "[custom-attribute-quota]" in p]
    # Then seg_b is refused whole (249 + 2 > 250), seg_c still fits, seg_d and seg_e do not;
    # a field already counted and standard fields take no room
    tail = (
        "would take the project past Pinpoint's 250 per project (259 declared across all segments; counted in "
        "segment name order)"
    )
    assert quota == [
        f"seg_b: [custom-attribute-quota] its 2 custom attribute(s) (User.UserAttributes.B000, "
        f"User.UserAttributes.B001) {tail}",
        f"seg_d: [custom-attribute-quota] its 4 custom attribute(s) (Attributes.D000, Attributes.D001, "
        f"Attributes.D002, ...) {tail}",
        f"seg_e: [custom-attribute-quota] its 3 custom attribute(s) (Attributes.E000, Attributes.E001, "
        f"Attributes.E002) {tail}",
    ]


def test_the_quota_allows_exactly_250():
    assert [p for p in check(segment("seg_a", attributes("A", 250))) if "quota" in p] == []
