"""The contract rules of lakeseg check on hand-made manifests: exit values as written,
required tests that really run, the custom-attribute quota per segment, control characters."""

from __future__ import annotations

import pytest

from sync.core.fields import has_control_chars
from sync.dbt.check import check_manifest, neutralised

REQUIRED = {"endpoint_id": ["unique", "not_null", "pinpoint_max_length", "pinpoint_no_control_chars"]}


def segment(name: str, fields: dict[str, str], exit_value=None, tests: dict | None = None) -> dict:
    """Manifest nodes of one segment: its model and its attached tests (all required ones by default)."""
    uid = f"model.p.{name}"
    columns = {"endpoint_id": {"name": "endpoint_id", "meta": {"lakeseg": {"field": "Id"}}}}
    columns.update({col: {"name": col, "meta": {"lakeseg": {"field": f}}} for col, f in fields.items()})
    exit_ = "keep" if exit_value is None else exit_value
    nodes = {
        uid: {
            "unique_id": uid,
            "resource_type": "model",
            "name": name,
            "path": f"segments/{name}.sql",
            "schema": "main",
            "columns": columns,
            "config": {"meta": {"lakeseg": {"exit": exit_}}},
        }
    }
    wanted = {**REQUIRED, **{c: ["pinpoint_max_length", "pinpoint_no_control_chars"] for c in fields}}
    for col, names in wanted.items():
        for test in names:
            tid = f"test.p.{test}_{name}_{col}"
            node = {
                "unique_id": tid,
                "resource_type": "test",
                "name": f"{test}_{name}_{col}",
                "attached_node": uid,
                "column_name": col,
                "test_metadata": {"name": test, "kwargs": {}},
                "config": {"severity": "ERROR"},
            }
            node.update((tests or {}).get((col, test), {}))
            nodes[tid] = node
    return nodes


def problems(*segments: dict) -> list:
    nodes = {}
    for s in segments:
        nodes.update(s)
    return check_manifest({"nodes": nodes})[1]


def test_a_well_declared_segment_has_no_problem():
    assert problems(segment("seg_a", {"tier": "Attributes.Tier"}, {"Attributes.Tier": "None"})) == []


@pytest.mark.parametrize(
    "value,words",
    [
        pytest.param(None, "null", id="yaml-null"),
        pytest.param(False, "YAML boolean false", id="unquoted-no"),
        pytest.param(True, "YAML boolean true", id="unquoted-yes"),
        pytest.param(["a"], "string or a number", id="a-list"),
        pytest.param({"a": 1}, "string or a number", id="a-mapping"),
    ],
)
def test_exit_values_must_be_strings_or_numbers(value, words):
    found = problems(segment("seg_a", {"tier": "Attributes.Tier"}, {"Attributes.Tier": value}))
    assert [p.rule for p in found] == ["exit-value"] and words in found[0].message
    if value is None or isinstance(value, bool):
        assert "quote" in found[0].message  # the hint: write it in quotes


@pytest.mark.parametrize("value", [0, 1.5, "No", ""], ids=["zero", "float", "text", "empty-text"])
def test_numbers_and_strings_are_fine_exit_values(value):
    assert problems(segment("seg_a", {"tier": "Attributes.Tier"}, {"Attributes.Tier": value})) == []


@pytest.mark.parametrize(
    "config,kwargs,why",
    [
        pytest.param({"where": "1=0"}, {}, "where", id="where"),
        pytest.param({"severity": "warn"}, {}, "severity", id="severity-warn"),
        pytest.param({"limit": 1}, {}, "limit", id="limit"),
        pytest.param({"error_if": ">100"}, {}, "error_if", id="error-if"),
        pytest.param({"fail_calc": "0"}, {}, "fail_calc", id="fail-calc"),
        pytest.param({}, {"max_length": 1000}, "max_length", id="max-length-loosened"),
        pytest.param({}, {"arguments": {"max_length": 101}}, "max_length", id="max-length-in-arguments"),
    ],
)
def test_neutralised_required_tests_do_not_count(config, kwargs, why):
    overrides = {
        ("endpoint_id", "pinpoint_max_length"): {
            "config": {"severity": "ERROR", **config},
            "test_metadata": {"name": "pinpoint_max_length", "kwargs": kwargs},
        }
    }
    found = problems(segment("seg_a", {"tier": "Attributes.Tier"}, {"Attributes.Tier": "x"}, overrides))
    assert [(p.column, p.rule) for p in found] == [("endpoint_id", "required-test")]
    assert why in found[0].message and "does not count" in found[0].message


@pytest.mark.parametrize(
    "config",
    [
        {"severity": "ERROR", "error_if": "!= 0", "fail_calc": "count(*)", "where": None, "limit": None},
        {"severity": "error"},
        {},
    ],
    ids=["dbt-defaults", "lowercase-severity", "no-config"],
)
def test_default_test_configs_count(config):
    assert neutralised({"config": config, "test_metadata": {"name": "unique"}}) is None


def test_quota_refuses_the_segment_that_pushes_past_250_and_no_other():
    a = segment("seg_a", {f"a{i}": f"Attributes.A{i}" for i in range(200)})
    b = segment("seg_b", {f"b{i}": f"Attributes.B{i}" for i in range(40)})
    c = segment("seg_c", {f"c{i}": f"Attributes.C{i}" for i in range(60)})  # 200 + 60 > 250 after b's 40
    d = segment("seg_d", {"d0": "Metrics.D0"})
    quota = [p for p in problems(a, b, c, d) if p.rule == "custom-attribute-quota"]
    assert [p.model for p in quota] == ["seg_c"]
    assert "60 custom attribute(s)" in quota[0].message and "301 declared" in quota[0].message


def test_quota_counts_a_shared_field_once():
    a = segment("seg_a", {f"a{i}": f"Attributes.A{i}" for i in range(250)})
    assert [p for p in problems(a) if p.rule == "custom-attribute-quota"] == []


@pytest.mark.parametrize(
    "char",
    ["\x00", "\t", "\n", "\r", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"],
    ids=lambda c: f"U+{ord(c):04X}",
)
def test_control_characters(char):
    assert has_control_chars(f"a{char}b")


@pytest.mark.parametrize("text", ["José", "a\u00a0b", "😀", 'Silver, "B"'], ids=["accent", "nbsp", "emoji", "quotes"])
def test_text_is_not_a_control_character(text):
    assert not has_control_chars(text)
