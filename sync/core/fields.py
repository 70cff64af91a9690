"""Amazon Pinpoint's endpoint fields: the project's canonical import schema.

The header of every import file is a list of these names in dot notation
(``Id``, ``User.UserAttributes.HasClicked``, ``Metrics.EmailsOpened30d``, ...).
Other destinations translate from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ID_FIELD = "Id"
STANDARD_FIELDS = frozenset({"Id", "Address", "ChannelType", "OptOut", "EffectiveDate", "User.UserId"})
CUSTOM_PREFIXES = ("User.UserAttributes.", "Attributes.", "Metrics.")
FIXED_GROUPS = {
    "Demographic.": frozenset(
        {"AppVersion", "Locale", "Make", "Model", "ModelVersion", "Platform", "PlatformVersion", "Timezone"}
    ),
    "Location.": frozenset({"City", "Country", "Latitude", "Longitude", "PostalCode", "Region"}),
}
ACCEPTED_VALUES = {
    "ChannelType": frozenset(
        {
            "PUSH",
            "GCM",
            "APNS",
            "APNS_SANDBOX",
            "APNS_VOIP",
            "APNS_VOIP_SANDBOX",
            "ADM",
            "SMS",
            "VOICE",
            "EMAIL",
            "BAIDU",
            "CUSTOM",
            "IN_APP",
        }
    ),
    "OptOut": frozenset({"ALL", "NONE"}),
}
NUMERIC_FIELDS = frozenset({"Location.Latitude", "Location.Longitude"})

MAX_NAME_LENGTH = 50
MAX_VALUE_LENGTH = 100
MAX_CUSTOM_ATTRIBUTES = 250
FORBIDDEN_NAME_CHARS = "#:?\\/"
# Every C0 and C1 control character (NEL U+0085 among them), DEL, and the Unicode
# line and paragraph separators: each can break a CSV line or an import.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def has_control_chars(text: str) -> bool:
    return _CONTROL.search(text) is not None


@dataclass(frozen=True)
class FieldProblem:
    rule: str
    message: str


def custom_name(field: str) -> str | None:
    """The attribute name of a custom field (``HasClicked`` of ``User.UserAttributes.HasClicked``)."""
    for prefix in CUSTOM_PREFIXES:
        if field.startswith(prefix):
            return field[len(prefix) :]
    return None


def is_metric(field: str) -> bool:
    return field.startswith("Metrics.") or field in NUMERIC_FIELDS


def validate_field(field: str) -> list[FieldProblem]:
    """Problems with one field name; empty when Pinpoint's CSV import accepts it."""
    if field in STANDARD_FIELDS:
        return []
    for prefix, allowed in FIXED_GROUPS.items():
        if field.startswith(prefix):
            if field[len(prefix) :] in allowed:
                return []
            return [
                FieldProblem(
                    "field-name",
                    f"'{field}' is not a Pinpoint field; {prefix[:-1]} takes one of {', '.join(sorted(allowed))}",
                )
            ]
    name = custom_name(field)
    if name is None:
        return [
            FieldProblem(
                "field-name",
                f"'{field}' is not a Pinpoint CSV import field; use Id, Address, ChannelType, OptOut, "
                "EffectiveDate, User.UserId, User.UserAttributes.<name>, Attributes.<name>, Metrics.<name>, "
                "Demographic.<...> or Location.<...> (names are case-sensitive)",
            )
        ]
    problems = []
    if not name:
        problems.append(FieldProblem("field-name", f"'{field}' has an empty attribute name"))
    if len(name) > MAX_NAME_LENGTH:
        problems.append(
            FieldProblem(
                "name-length",
                f"attribute name '{name}' is {len(name)} characters; Pinpoint allows at most {MAX_NAME_LENGTH}",
            )
        )
    bad = sorted({c for c in name if c in FORBIDDEN_NAME_CHARS})
    if bad:
        problems.append(
            FieldProblem(
                "name-characters", f"attribute name '{name}' contains {' '.join(bad)}; Pinpoint names avoid # : ? \\ /"
            )
        )
    if "." in name or _CONTROL.search(name) or name != name.strip():
        problems.append(
            FieldProblem(
                "name-characters",
                f"attribute name '{name}' contains a dot, a control character or surrounding spaces; "
                "the CSV header's dot notation cannot carry it",
            )
        )
    return problems


def validate_value(field: str, value: object) -> list[FieldProblem]:
    """Problems with one value (used for declared exit values)."""
    text = "" if value is None else str(value)
    problems = []
    if len(text) > MAX_VALUE_LENGTH:
        problems.append(
            FieldProblem("max-length", f"value is {len(text)} characters; Pinpoint allows {MAX_VALUE_LENGTH}")
        )
    if has_control_chars(text):
        problems.append(
            FieldProblem(
                "no-control-chars", "value holds a control character (line break, tab, NUL, U+0085, U+2028/U+2029, ...)"
            )
        )
    if is_metric(field):
        try:
            float(text)
        except ValueError:
            problems.append(FieldProblem("numeric", f"{field} is numeric but the value {text!r} is not a number"))
    allowed = ACCEPTED_VALUES.get(field)
    if allowed is not None and text not in allowed:
        problems.append(FieldProblem("accepted-values", f"{field} takes one of {', '.join(sorted(allowed))}"))
    return problems
