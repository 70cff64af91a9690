"""Pinpoint field names (the project's canonical schema) -> Amazon Connect Customer Profiles.

Models keep declaring Pinpoint fields; the ``customer_profiles`` destination
maps them here. Every mapped field becomes one CSV column named after its
target's last part (Customer Profiles does not ingest CSV headers in dot
notation), listed in the upload job's ``Fields`` as ``_source.<column>`` ->
``_profile.<...>``:

=============================== ====================== ==================================== ===============
Pinpoint field                  CSV column             Target                               ContentType
=============================== ====================== ==================================== ===============
Id                              AccountNumber          _profile.AccountNumber (the unique   STRING
                                                       key; ``unique_key_target`` changes)
Address + ChannelType EMAIL     EmailAddress           _profile.EmailAddress                EMAIL_ADDRESS
Address + ChannelType SMS/VOICE PhoneNumber            _profile.PhoneNumber                 PHONE_NUMBER
User.UserId                     UserId                 _profile.Attributes.UserId           STRING
User.UserAttributes.X           X                      _profile.Attributes.X                STRING
Attributes.X                    X                      _profile.Attributes.X                STRING
Metrics.X                       X                      _profile.Attributes.X                NUMBER
Location.City/Country/PostalCode City/Country/PostalCode _profile.Address.<same>            STRING
Location.Region                 State                  _profile.Address.State               STRING
=============================== ====================== ==================================== ===============

No target: ``Demographic.*``, ``Location.Latitude``/``Longitude``, ``OptOut``,
``EffectiveDate``, and ``Address`` or ``ChannelType`` without the other.
``lakeseg check`` and the sync name them; a segment with one is refused.

Limits (cited in docs/customer-profiles.md): one CSV under 1 GB, UTF-8, with a header
(Amazon Connect admin guide, "Create segments from imported files"); a
``Fields`` key 1-64 characters of ``[a-zA-Z0-9_.-]``, ``DisplayName`` at most
255, ``DataExpiry`` 1-1098 days, ``UniqueKey`` and ``Target`` at most 1000
(CreateUploadJob API reference); a segment definition name 1-64 characters of
``[a-zA-Z0-9_-]``, a custom attribute name at most 255, at most 50 values per
attribute dimension (CreateSegmentDefinition API reference).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from sync.core.fields import ID_FIELD
from sync.core.import_files import encode_row

MAX_JOB_BYTES = 1000 * 1000 * 1000  # "under 1GB" per uploaded CSV
MAX_COLUMN_NAME = 64
COLUMN_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")
SEGMENT_DEFINITION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_DISPLAY_NAME = 255
MAX_ATTRIBUTE_NAME = 255
MAX_DIMENSION_VALUES = 50
DATA_EXPIRY_RANGE = (1, 1098)
DEFAULT_UNIQUE_KEY_TARGET = "_profile.AccountNumber"
EMAIL_CHANNELS = {"EMAIL"}
PHONE_CHANNELS = {"SMS", "VOICE"}
LOCATION_TARGETS = {"City": "City", "Country": "Country", "PostalCode": "PostalCode", "Region": "State"}
LIMITS = {
    "file": "one CSV per upload job, under 1 GB, UTF-8, with a header (max_job_mb, default 1000)",
    "columns": "a column name (Fields key) is 1-64 characters of letters, digits, _ . -",
    "display name": "upload job DisplayName at most 255 characters (lakeseg-<run id>-<segment>-p<part>)",
    "data expiry": "DataExpiry 1-1098 days (API); default 14",
    "segment definition": "name 1-64 characters of letters, digits, _ -; at most 50 values per attribute",
    "attributes": "custom attribute name at most 255 characters",
    "rows": "no per-job row limit is documented; the file size limit applies",
}


@dataclass(frozen=True)
class ProfileColumn:
    column: str  # CSV column sent to Customer Profiles
    target: str  # _profile.<...>
    content_type: str  # STRING | NUMBER | PHONE_NUMBER | EMAIL_ADDRESS
    field: str  # the Pinpoint field it comes from
    channels: frozenset[str] = frozenset()  # for Address: the ChannelType values this column takes

    def object_type_field(self) -> dict:
        return {"Source": f"_source.{self.column}", "Target": self.target, "ContentType": self.content_type}


@dataclass(frozen=True)
class ProfileMapping:
    columns: tuple[ProfileColumn, ...]
    unique_key: str  # the column holding the Id
    problems: tuple[tuple[str, str], ...] = ()  # (field, why it has no target)

    def fields(self) -> dict[str, dict]:
        """CreateUploadJob ``Fields``: CSV column -> ObjectTypeField."""
        return {c.column: c.object_type_field() for c in self.columns}

    def target_of(self, field: str) -> ProfileColumn | None:
        return next((c for c in self.columns if c.field == field), None)


def _leaf(target: str) -> str:
    return target.rsplit(".", 1)[-1]


def map_fields(
    fields: tuple[str, ...] | list[str], unique_key_target: str = DEFAULT_UNIQUE_KEY_TARGET
) -> ProfileMapping:
    """The upload job's columns for a segment's Pinpoint fields, and the fields that have no target."""
    columns: list[ProfileColumn] = []
    problems: list[tuple[str, str]] = []
    has = set(fields)
    for f in fields:
        mapped, why = _columns_of(f, has, unique_key_target)
        columns.extend(mapped)
        if why:
            problems.append((f, why))
    problems.extend(_column_problems(columns))
    unique = next((c.column for c in columns if c.field == ID_FIELD), "")
    if not unique:
        problems.append((ID_FIELD, "no column declares Id: the upload job needs it as its unique key"))
    return ProfileMapping(tuple(columns), unique, tuple(problems))


def _columns_of(f: str, has: set[str], unique_key_target: str) -> tuple[list[ProfileColumn], str | None]:
    """The columns one Pinpoint field becomes (the table above), or why it has no target."""
    kind, _, name = f.partition(".")
    if f == ID_FIELD:
        return [ProfileColumn(_leaf(unique_key_target), unique_key_target, "STRING", f)], None
    if f == "Address":
        if "ChannelType" not in has:
            return [], "Address needs ChannelType to tell an email address from a phone number"
        return [
            ProfileColumn("EmailAddress", "_profile.EmailAddress", "EMAIL_ADDRESS", f, frozenset(EMAIL_CHANNELS)),
            ProfileColumn("PhoneNumber", "_profile.PhoneNumber", "PHONE_NUMBER", f, frozenset(PHONE_CHANNELS)),
        ], None
    if f == "ChannelType":
        if "Address" not in has:
            return [], "ChannelType only says where Address goes; without Address it has no target"
        return [], None
    if f == "User.UserId":
        return [ProfileColumn("UserId", "_profile.Attributes.UserId", "STRING", f)], None
    if f.startswith("User.UserAttributes.") and len(f) > len("User.UserAttributes."):
        attr = f[len("User.UserAttributes.") :]
        return [ProfileColumn(attr, f"_profile.Attributes.{attr}", "STRING", f)], None
    if kind in ("Attributes", "Metrics") and name:
        content = "NUMBER" if kind == "Metrics" else "STRING"
        return [ProfileColumn(name, f"_profile.Attributes.{name}", content, f)], None
    if kind == "Location" and name in LOCATION_TARGETS:
        target = LOCATION_TARGETS[name]
        return [ProfileColumn(target, f"_profile.Address.{target}", "STRING", f)], None
    return [], "Customer Profiles has no target for it (see the field mapping in docs/customer-profiles.md)"


def _column_problems(columns: list[ProfileColumn]) -> list[tuple[str, str]]:
    """Columns two fields share, column names the upload job refuses, attribute names too long."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for c in columns:
        if c.column in seen and seen[c.column] != c.field:
            problems.append((c.field, f"maps to the same Customer Profiles column {c.column!r} as {seen[c.column]}"))
        seen.setdefault(c.column, c.field)
        if not COLUMN_NAME.match(c.column):
            problems.append(
                (
                    c.field,
                    f"column {c.column!r} is not 1-{MAX_COLUMN_NAME} characters of letters, "
                    "digits, _ . - (the upload job's Fields key)",
                )
            )
        if c.target.startswith("_profile.Attributes.") and len(_leaf(c.target)) > MAX_ATTRIBUTE_NAME:
            problems.append((c.field, f"attribute name longer than {MAX_ATTRIBUTE_NAME} characters"))
    return problems


def definition_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a segment definition (``'<name>' must be ...``), or None when it can."""
    return None if SEGMENT_DEFINITION_NAME.match(name) else f"{name!r} must be 1-64 letters, digits, _ or -"


@dataclass(frozen=True)
class SegmentProblem:
    """Why a segment cannot go to Customer Profiles: a field with no target, or its definition name."""

    rule: str  # customer-profiles-field | customer-profiles-name
    field: str | None  # the Pinpoint field (None: the segment definition name)
    why: str


def segment_problems(
    fields: tuple[str, ...] | list[str],
    segment_name: str | None,
    *,
    unique_key_target: str = DEFAULT_UNIQUE_KEY_TARGET,
    prefix: str,
) -> list[SegmentProblem]:
    """The one check of a segment against Customer Profiles, for ``lakeseg check`` and the destination alike."""
    out = [
        SegmentProblem("customer-profiles-field", f, why) for f, why in map_fields(fields, unique_key_target).problems
    ]
    why = definition_name_problem(prefix + segment_name) if segment_name else None
    if why:
        out.append(SegmentProblem("customer-profiles-name", None, why))
    return out


def translate(files, out: Path, mapping: ProfileMapping) -> int:
    """Write the job's rows (Pinpoint header) as one CSV with the mapping's columns; returns rows written."""
    header = [c.column for c in mapping.columns]
    rows = 0
    with open(out, "wb") as fh:
        fh.write(encode_row(header))
        for path in files:
            with open(path, newline="", encoding="utf-8") as src:
                reader = csv.reader(src)
                at = {name: i for i, name in enumerate(next(reader))}
                for row in reader:
                    channel = row[at["ChannelType"]].upper() if "ChannelType" in at else ""
                    values = []
                    for c in mapping.columns:
                        value = row[at[c.field]]
                        if c.channels and channel not in c.channels:
                            value = ""
                        values.append(value)
                    fh.write(encode_row(values))
                    rows += 1
    return rows


def segment_groups(segment_filter: dict[str, tuple[str, ...]], mapping: ProfileMapping) -> dict:
    """CreateSegmentDefinition ``SegmentGroups``: profiles whose owned attributes hold an in-segment value."""
    attributes = {}
    for f, values in segment_filter.items():
        column = mapping.target_of(f)
        if column is None or not column.target.startswith("_profile.Attributes."):
            raise ValueError(
                f"segment_values: {f} is not a profile attribute here (use a User.UserAttributes.*, "
                "Attributes.* or Metrics.* field)"
            )
        if not values:
            raise ValueError(f"segment_values: {f} lists no value")
        if len(values) > MAX_DIMENSION_VALUES:
            raise ValueError(
                f"segment_values: {f} lists {len(values)} values; a segment definition takes at most "
                f"{MAX_DIMENSION_VALUES}"
            )
        attributes[_leaf(column.target)] = {"DimensionType": "INCLUSIVE", "Values": list(values)}
    if not attributes:
        raise ValueError("segment_values is empty")
    return {
        "Groups": [{"Dimensions": [{"ProfileAttributes": {"Attributes": attributes}}], "Type": "ALL"}],
        "Include": "ALL",
    }
