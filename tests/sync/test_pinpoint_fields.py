"""Pinpoint's field rules as pure functions: which field names a CSV import accepts, which attribute
names and values it takes, with the exact message each rule gives and the limits at their boundaries
(names 50 characters, values 100)."""

from __future__ import annotations

import pytest

from sync.core.fields import FieldProblem, custom_name, is_metric, validate_field, validate_value

DEMOGRAPHIC = "AppVersion, Locale, Make, Model, ModelVersion, Platform, PlatformVersion, Timezone"
LOCATION = "City, Country, Latitude, Longitude, PostalCode, Region"
NOT_A_FIELD = (
    "is not a Pinpoint CSV import field; use Id, Address, ChannelType, OptOut, EffectiveDate, "
    "User.UserId, User.UserAttributes.<name>, Attributes.<name>, Metrics.<name>, Demographic.<...> "
    "or Location.<...> (names are case-sensitive)"
)
CHANNELS = "ADM, APNS, APNS_SANDBOX, APNS_VOIP, APNS_VOIP_SANDBOX, BAIDU, CUSTOM, EMAIL, GCM, IN_APP, PUSH, SMS, VOICE"


def dot_problem(name: str) -> FieldProblem:
    return FieldProblem(
        "name-characters",
        f"attribute name '{name}' contains a dot, a control character or "
        "surrounding spaces; the CSV header's dot notation cannot carry it",
    )


def length_problem(name: str) -> FieldProblem:
    return FieldProblem("name-length", f"attribute name '{name}' is {len(name)} characters; Pinpoint allows at most 50")


# --------------------------------------------------------------------------- custom_name / is_metric
@pytest.mark.parametrize(
    "field, name",
    [
        pytest.param("User.UserAttributes.HasClicked", "HasClicked", id="user-attribute"),
        pytest.param("Attributes.Plan", "Plan", id="attribute"),
        pytest.param("Metrics.Opens", "Opens", id="metric"),
        pytest.param("Attributes.", "", id="empty-name"),
        pytest.param("Attributes.A.B", "A.B", id="name-with-a-dot"),
        pytest.param("Id", None, id="standard-field"),
        pytest.param("User.UserId", None, id="user-id"),
        pytest.param("Demographic.Locale", None, id="demographic"),
        pytest.param("attributes.Plan", None, id="prefix-is-case-sensitive"),
        pytest.param("X.Attributes.Plan", None, id="prefix-only-at-the-start"),
    ],
)
def test_custom_name_is_the_part_after_a_custom_prefix(field, name):
    # Given a field name / When its custom attribute name is asked for / Then it is the rest after the prefix
    assert custom_name(field) == name


@pytest.mark.parametrize(
    "field, metric",
    [
        pytest.param("Metrics.Opens", True, id="metric"),
        pytest.param("Location.Latitude", True, id="latitude"),
        pytest.param("Location.Longitude", True, id="longitude"),
        pytest.param("Location.City", False, id="city"),
        pytest.param("Attributes.Opens", False, id="attribute"),
        pytest.param("metrics.Opens", False, id="prefix-is-case-sensitive"),
        pytest.param("Id", False, id="id"),
    ],
)
def test_is_metric_for_metrics_and_coordinates(field, metric):
    assert is_metric(field) is metric


# --------------------------------------------------------------------------- validate_field
@pytest.mark.parametrize(
    "field",
    [
        "Id",
        "Address",
        "ChannelType",
        "OptOut",
        "EffectiveDate",
        "User.UserId",
        "Demographic.AppVersion",
        "Demographic.Locale",
        "Demographic.Make",
        "Demographic.Model",
        "Demographic.ModelVersion",
        "Demographic.Platform",
        "Demographic.PlatformVersion",
        "Demographic.Timezone",
        "Location.City",
        "Location.Country",
        "Location.Latitude",
        "Location.Longitude",
        "Location.PostalCode",
        "Location.Region",
        "User.UserAttributes.HasClicked",
        "Attributes.Plan",
        "Metrics.Opens",
    ],
)
def test_fields_pinpoint_accepts_have_no_problem(field):
    assert validate_field(field) == []


@pytest.mark.parametrize(
    "field, problem",
    [
        pytest.param(
            "Demographic.Country",
            FieldProblem(
                "field-name", f"'Demographic.Country' is not a Pinpoint field; Demographic takes one of {DEMOGRAPHIC}"
            ),
            id="demographic-unknown",
        ),
        pytest.param(
            "Demographic.",
            FieldProblem(
                "field-name", f"'Demographic.' is not a Pinpoint field; Demographic takes one of {DEMOGRAPHIC}"
            ),
            id="demographic-empty",
        ),
        pytest.param(
            "Location.Timezone",
            FieldProblem(
                "field-name", f"'Location.Timezone' is not a Pinpoint field; Location takes one of {LOCATION}"
            ),
            id="location-unknown",
        ),
        pytest.param(
            "Location.city",
            FieldProblem("field-name", f"'Location.city' is not a Pinpoint field; Location takes one of {LOCATION}"),
            id="location-case-sensitive",
        ),
        pytest.param("id", FieldProblem("field-name", f"'id' {NOT_A_FIELD}"), id="lowercase-id"),
        pytest.param("User.Name", FieldProblem("field-name", f"'User.Name' {NOT_A_FIELD}"), id="user-other"),
        pytest.param(
            "Demographics.Locale",
            FieldProblem("field-name", f"'Demographics.Locale' {NOT_A_FIELD}"),
            id="group-misspelt",
        ),
        pytest.param("", FieldProblem("field-name", f"'' {NOT_A_FIELD}"), id="empty"),
    ],
)
def test_unknown_fields_are_named_with_what_pinpoint_takes(field, problem):
    assert validate_field(field) == [problem]


@pytest.mark.parametrize(
    "prefix", ["User.UserAttributes.", "Attributes.", "Metrics."], ids=["user-attributes", "attributes", "metrics"]
)
def test_an_empty_attribute_name_is_one_problem(prefix):
    assert validate_field(prefix) == [FieldProblem("field-name", f"'{prefix}' has an empty attribute name")]


def test_a_name_of_exactly_50_characters_is_accepted():
    # Given an attribute name at the limit / Then no problem
    assert validate_field("Attributes." + "a" * 50) == []


@pytest.mark.parametrize(
    "prefix", ["User.UserAttributes.", "Attributes.", "Metrics."], ids=["user-attributes", "attributes", "metrics"]
)
def test_a_name_of_51_characters_is_too_long(prefix):
    # Given an attribute name one over the limit / Then the rule names its length and the limit
    name = "a" * 51
    assert validate_field(prefix + name) == [
        FieldProblem("name-length", f"attribute name '{name}' is 51 characters; Pinpoint allows at most 50")
    ]


@pytest.mark.parametrize(
    "name, shown",
    [
        pytest.param("a#b", "#", id="hash"),
        pytest.param("a:b", ":", id="colon"),
        pytest.param("a?b", "?", id="question-mark"),
        pytest.param("a\\b", "\\", id="backslash"),
        pytest.param("a/b", "/", id="slash"),
        pytest.param("?a#b?", "# ?", id="two-sorted-once-each"),
        pytest.param("\\/:?#", "# / : ? \\", id="all-five-sorted"),
    ],
)
def test_forbidden_characters_are_listed_sorted(name, shown):
    assert validate_field(f"Attributes.{name}") == [
        FieldProblem("name-characters", f"attribute name '{name}' contains {shown}; Pinpoint names avoid # : ? \\ /")
    ]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("A.B", id="dot"),
        pytest.param("A\tB", id="tab"),
        pytest.param("A\x85B", id="next-line"),
        pytest.param("A\u2028B", id="line-separator"),
        pytest.param(" A", id="leading-space"),
        pytest.param("A ", id="trailing-space"),
    ],
)
def test_names_the_dot_notation_cannot_carry(name):
    assert validate_field(f"User.UserAttributes.{name}") == [dot_problem(name)]


def test_inner_spaces_and_non_ascii_letters_are_fine():
    assert validate_field("Attributes.Plan Tier") == []
    assert validate_field("Attributes.Café") == []


def test_every_broken_rule_is_reported_in_order():
    # Given a name too long, with a forbidden character and a dot
    name = "a#." + "b" * 48
    # When validated / Then each rule gives its own problem: length, characters, dot notation
    assert validate_field(f"Metrics.{name}") == [
        length_problem(name),
        FieldProblem("name-characters", f"attribute name '{name}' contains #; Pinpoint names avoid # : ? \\ /"),
        dot_problem(name),
    ]


# --------------------------------------------------------------------------- validate_value
@pytest.mark.parametrize(
    "field, value",
    [
        pytest.param("Attributes.Plan", "Gold", id="text"),
        pytest.param("Attributes.Plan", "", id="empty-text"),
        pytest.param("Attributes.Plan", None, id="none-is-empty"),
        pytest.param("Attributes.Plan", "x" * 100, id="exactly-100-characters"),
        pytest.param("Attributes.Plan", 'Silver, "B"', id="comma-and-quotes"),
        pytest.param("Metrics.Opens", "0", id="metric-zero"),
        pytest.param("Metrics.Opens", 3, id="metric-int"),
        pytest.param("Metrics.Opens", "-1.5e3", id="metric-exponent"),
        pytest.param("Location.Latitude", "47.6", id="latitude"),
        pytest.param("Location.Longitude", -122.3, id="longitude"),
        pytest.param("ChannelType", "EMAIL", id="channel-email"),
        pytest.param("ChannelType", "IN_APP", id="channel-in-app"),
        pytest.param("OptOut", "ALL", id="opt-out-all"),
        pytest.param("OptOut", "NONE", id="opt-out-none"),
    ],
)
def test_values_pinpoint_accepts_have_no_problem(field, value):
    assert validate_value(field, value) == []


@pytest.mark.parametrize("value", ["x" * 101, 10**100], ids=["text", "number"])
def test_a_value_of_101_characters_is_too_long(value):
    assert validate_value("Attributes.Plan", value) == [
        FieldProblem("max-length", "value is 101 characters; Pinpoint allows 100")
    ]


@pytest.mark.parametrize(
    "char",
    ["\n", "\r", "\t", "\x00", "\x85", "\u2029"],
    ids=["line-feed", "carriage-return", "tab", "nul", "next-line", "paragraph-separator"],
)
def test_a_value_with_a_control_character(char):
    assert validate_value("Attributes.Plan", f"a{char}b") == [
        FieldProblem(
            "no-control-chars", "value holds a control character (line break, tab, NUL, U+0085, U+2028/U+2029, ...)"
        )
    ]


@pytest.mark.parametrize(
    "field, value, shown",
    [
        pytest.param("Metrics.Opens", "many", "'many'", id="word"),
        pytest.param("Metrics.Opens", "", "''", id="empty"),
        pytest.param("Metrics.Opens", None, "''", id="none"),
        pytest.param("Location.Latitude", "north", "'north'", id="latitude"),
        pytest.param("Location.Longitude", "1,5", "'1,5'", id="decimal-comma"),
    ],
)
def test_a_metric_value_must_be_a_number(field, value, shown):
    assert validate_value(field, value) == [
        FieldProblem("numeric", f"{field} is numeric but the value {shown} is not a number")
    ]


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        pytest.param("ChannelType", "email", CHANNELS, id="channel-lowercase"),
        pytest.param("ChannelType", "", CHANNELS, id="channel-empty"),
        pytest.param("OptOut", "SOME", "ALL, NONE", id="opt-out-other"),
        pytest.param("OptOut", None, "ALL, NONE", id="opt-out-none-value"),
    ],
)
def test_fields_with_accepted_values(field, value, allowed):
    assert validate_value(field, value) == [FieldProblem("accepted-values", f"{field} takes one of {allowed}")]


def test_every_broken_value_rule_is_reported_in_order():
    # Given a numeric field whose value is too long and holds a line break
    value = "1\n" + "2" * 100
    # When validated / Then length, control character and number each give a problem, in that order
    assert [p.rule for p in validate_value("Metrics.Opens", value)] == ["max-length", "no-control-chars", "numeric"]
    assert [p.rule for p in validate_value("OptOut", "ALL\t" + "x" * 97)] == [
        "max-length",
        "no-control-chars",
        "accepted-values",
    ]
