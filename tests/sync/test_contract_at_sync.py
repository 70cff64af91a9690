"""The contract checked on what is sent: the values the sync reads meet the rules dbt's tests enforce.

dbt's tests check the table when it is built; the sync reads it later. A table changed in between (a newline
in a value, a name grown past 100 characters, a metric that is not a number, an OptOut Pinpoint does not
know) is refused in the pass that reads it, naming the model, column and rule -- never the value.
"""

from __future__ import annotations

import re

import duckdb
import pytest

from sync.core.errors import SegmentRefused
from sync.dbt.check import ValueRule, value_rules
from sync.dbt.contract import FieldMapping, Segment
from sync.readers.base import RelationRef
from sync.run.diff import checked_id_sql, prepare, rule_sql

COLUMNS = (
    ("endpoint_id", "Id"),
    ("last_name", "User.UserAttributes.LastName"),
    ("opens", "Metrics.Opens"),
    ("opt_out", "OptOut"),
)
CLEAN = ("ep-1", "Jones", "3", "NONE")


def _segment() -> Segment:
    return Segment(
        unique_id="model.t.seg_t",
        name="seg_t",
        relation=RelationRef(None, "main", "seg_t"),
        mappings=tuple(FieldMapping(c, f) for c, f in COLUMNS),
        exit="keep",
        segment_name=None,
        tags=(),
        path="",
    )


def _test(rule: str, column: str, **kwargs) -> dict:
    return {
        "unique_id": f"test.t.{rule}_{column}",
        "resource_type": "test",
        "name": f"{rule}_seg_t_{column}",
        "attached_node": "model.t.seg_t",
        "column_name": column,
        "test_metadata": {"name": rule, "kwargs": {"column_name": column, **kwargs}},
    }


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


def _table(con, *rows) -> None:
    con.execute(
        "create or replace table seg_t (endpoint_id varchar, last_name varchar, opens varchar, opt_out varchar)"
    )
    con.executemany("insert into seg_t values (?, ?, ?, ?)", list(rows))


@pytest.mark.parametrize(
    "row, column, rule",
    [
        pytest.param(
            ("ep-2", "Zyxwv-Smith,\nJr.", "1", "ALL"), "last_name", "pinpoint_no_control_chars", id="newline-in-a-value"
        ),
        pytest.param(
            ("ep-2", "Zyxwv-Smith\u2028Jr.", "1", "ALL"),
            "last_name",
            "pinpoint_no_control_chars",
            id="line-separator-in-a-value",
        ),
        pytest.param(("ep-2", "Zyxwv" + "x" * 96, "1", "ALL"), "last_name", "pinpoint_max_length", id="101-characters"),
        pytest.param(("ep-2\t", "Smith", "1", "ALL"), "endpoint_id", "pinpoint_no_control_chars", id="tab-in-the-id"),
        pytest.param(("ep-2", "Smith", "Zyxwv", "ALL"), "opens", "pinpoint_numeric", id="metric-not-a-number"),
        pytest.param(("ep-2", "Smith", "1", "Zyxwv"), "opt_out", "pinpoint_accepted_values", id="opt-out-not-accepted"),
    ],
)
def test_given_a_value_breaking_a_rule_when_prepared_then_the_segment_is_refused_naming_column_and_rule(
    con, tmp_path, row, column, rule
):
    # Given a table whose tests passed, then changed: one row breaks a rule
    _table(con, CLEAN, row)
    # When the sync reads it
    with pytest.raises(SegmentRefused) as refused:
        prepare(con, _segment(), "seg_t", previous=None, workdir=tmp_path)
    # Then it is refused naming the model, the column, the rule and the count -- never the value
    message = str(refused.value)
    assert message.startswith("seg_t: ") and f"column {column} (" in message and f"breaks {rule} in 1 row(s)" in message
    assert message.endswith(
        " -- the table changed after its dbt tests passed (rebuild it with `dbt build`); nothing was sent"
    )
    assert "Zyxwv" not in message


def test_given_rows_breaking_several_rules_then_the_refusal_names_each_with_its_count(con, tmp_path):
    _table(con, CLEAN, ("ep-2", "a\nb", "x", "ALL"), ("ep-3", "c\rd", "1", "ALL"))
    with pytest.raises(SegmentRefused) as refused:
        prepare(con, _segment(), "seg_t", previous=None, workdir=tmp_path)
    assert (
        "column last_name (User.UserAttributes.LastName) breaks pinpoint_no_control_chars in 2 row(s); "
        "column opens (Metrics.Opens) breaks pinpoint_numeric in 1 row(s)"
    ) in str(refused.value)


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(CLEAN, id="clean"),
        pytest.param(("ep-2", "x" * 100, "-1.5e3", None), id="100-characters-a-float-a-null-opt-out"),
        pytest.param(("ep-2", None, None, "ALL"), id="nulls"),
        pytest.param(("ep-2", 'Zürich O\'Hare, "IL"', "0", "NONE"), id="non-ascii-quotes-commas"),
    ],
)
def test_given_values_within_the_rules_then_the_segment_is_prepared(con, tmp_path, row):
    _table(con, CLEAN if row != CLEAN else ("ep-0", "Brown", "1", "ALL"), row)
    assert prepare(con, _segment(), "seg_t", previous=None, workdir=tmp_path).plan.rows == 2


@pytest.mark.parametrize(
    "tests, row, rule",
    [
        pytest.param(
            [_test("accepted_values", "opt_out", arguments={"values": ["NONE"]})],
            ("ep-2", "Smith", "1", "ALL"),
            "column opt_out (OptOut) breaks accepted_values",
            id="accepted-values-of-the-dbt-test",
        ),
        pytest.param(
            [_test("pinpoint_max_length", "last_name", max_length=10)],
            ("ep-2", "Smith-Jones-Brown", "1", "ALL"),
            "column last_name (User.UserAttributes.LastName) breaks pinpoint_max_length",
            id="max-length-of-the-dbt-test",
        ),
        pytest.param(
            [_test("pinpoint_max_length", "last_name", arguments={"max_length": 10})],
            ("ep-2", "Smith-Jones-Brown", "1", "ALL"),
            "column last_name (User.UserAttributes.LastName) breaks pinpoint_max_length",
            id="max-length-under-arguments-dbt-1-10",
        ),
    ],
)
def test_given_a_stricter_test_on_the_model_then_its_setting_is_the_rule(con, tmp_path, tests, row, rule):
    # Given a test attached to the model that is stricter than Pinpoint (fewer values, a lower limit)
    _table(con, CLEAN, row)
    # Then the sync holds the values to that test
    with pytest.raises(SegmentRefused, match=re.escape(f"{rule} in 1 row(s)")):
        prepare(con, _segment(), "seg_t", previous=None, workdir=tmp_path, tests=tests)


def test_the_rules_cover_every_column_with_length_and_control_chars_metrics_and_accepted_values():
    rules = {(r.column, r.rule) for r in value_rules(_segment(), [])}
    assert rules == {(c, rule) for c, _ in COLUMNS for rule in ("pinpoint_max_length", "pinpoint_no_control_chars")} | {
        ("opens", "pinpoint_numeric"),
        ("opt_out", "pinpoint_accepted_values"),
    }


def test_the_checked_id_is_the_id_itself_without_rules_and_one_case_with_them():
    assert checked_id_sql([]) == '"Id"'
    sql = checked_id_sql(
        [
            ValueRule("c", "A.b", "pinpoint_max_length", "max_length", limit=100),
            ValueRule("c", "A.b", "pinpoint_no_control_chars", "no_control_chars"),
            ValueRule("d", "C", "pinpoint_no_control_chars", "no_control_chars"),
        ]
    )
    assert sql == (
        """case when (strlen("A.b") > 100 and length("A.b") > 100) or regexp_matches(concat("A.b", "C"), """
        r"""'[\x00-\x1F\x7F-\x9F\x{2028}\x{2029}]') then error('lakeseg-value-rule-broken') else "Id" end"""
    )


@pytest.mark.parametrize(
    "value", [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)], ids=lambda v: f"U+{ord(v):04X}"
)
def test_every_control_character_the_dbt_test_refuses_is_refused(con, tmp_path, value):
    _table(con, CLEAN, ("ep-2", f"a{value}b", "1", "ALL"))
    with pytest.raises(SegmentRefused, match="breaks pinpoint_no_control_chars in 1 row"):
        prepare(con, _segment(), "seg_t", previous=None, workdir=tmp_path)


def test_a_columns_own_accepted_values_test_replaces_pinpoints_list_for_that_column():
    # Given an accepted_values test on opt_out, stricter than the values Pinpoint accepts
    tests = [_test("accepted_values", "opt_out", arguments={"values": ["NONE"]})]
    # Then the column is held to that test's values alone, not to Pinpoint's list as well
    rules = [r for r in value_rules(_segment(), tests) if r.kind == "accepted_values"]
    assert rules == [ValueRule("opt_out", "OptOut", "accepted_values", "accepted_values", values=("NONE",))]


def test_a_value_rule_of_a_kind_the_diff_does_not_know_is_a_programming_error_naming_the_kind():
    # Given a rule of a kind value_rules never makes, when it is turned into SQL, then it is refused by its kind
    with pytest.raises(ValueError, match=r"^unknown value rule kind 'min_length'$"):
        rule_sql(ValueRule("c", "A.b", "pinpoint_min_length", "min_length", limit=1))
