"""Pinpoint fields -> Amazon Connect Customer Profiles, as pure functions: the column, target and
content type of every supported field, the exact reason for each field without a target, the
limits at their boundaries (a Fields key of 64 characters, an attribute name of 255, 50 values per
segment dimension), the CSV translation byte for byte, and the segment definition's groups."""

from __future__ import annotations

import locale
from pathlib import Path

import pytest

from sync.destinations.profile_fields import (
    ProfileColumn,
    ProfileMapping,
    map_fields,
    segment_groups,
    translate,
)

ACCOUNT = ProfileColumn("AccountNumber", "_profile.AccountNumber", "STRING", "Id")
EMAIL = ProfileColumn("EmailAddress", "_profile.EmailAddress", "EMAIL_ADDRESS", "Address", frozenset({"EMAIL"}))
PHONE = ProfileColumn("PhoneNumber", "_profile.PhoneNumber", "PHONE_NUMBER", "Address", frozenset({"SMS", "VOICE"}))
NO_TARGET = "Customer Profiles has no target for it (see the field mapping in docs/customer-profiles.md)"
NO_ID = ("Id", "no column declares Id: the upload job needs it as its unique key")


def bad_column(column: str) -> str:
    return f"column {column!r} is not 1-64 characters of letters, digits, _ . - (the upload job's Fields key)"


# --------------------------------------------------------------------------- map_fields: what maps where
@pytest.mark.parametrize(
    "field, column",
    [
        pytest.param(
            "User.UserId", ProfileColumn("UserId", "_profile.Attributes.UserId", "STRING", "User.UserId"), id="user-id"
        ),
        pytest.param(
            "User.UserAttributes.HasClicked",
            ProfileColumn("HasClicked", "_profile.Attributes.HasClicked", "STRING", "User.UserAttributes.HasClicked"),
            id="user-attribute",
        ),
        pytest.param(
            "Attributes.Plan",
            ProfileColumn("Plan", "_profile.Attributes.Plan", "STRING", "Attributes.Plan"),
            id="attribute",
        ),
        pytest.param(
            "Metrics.Opens",
            ProfileColumn("Opens", "_profile.Attributes.Opens", "NUMBER", "Metrics.Opens"),
            id="metric-is-a-number",
        ),
        pytest.param(
            "Location.City", ProfileColumn("City", "_profile.Address.City", "STRING", "Location.City"), id="city"
        ),
        pytest.param(
            "Location.Country",
            ProfileColumn("Country", "_profile.Address.Country", "STRING", "Location.Country"),
            id="country",
        ),
        pytest.param(
            "Location.PostalCode",
            ProfileColumn("PostalCode", "_profile.Address.PostalCode", "STRING", "Location.PostalCode"),
            id="postal-code",
        ),
        pytest.param(
            "Location.Region",
            ProfileColumn("State", "_profile.Address.State", "STRING", "Location.Region"),
            id="region-is-state",
        ),
        pytest.param(
            "User.UserAttributes.Plan-2.v",
            ProfileColumn("Plan-2.v", "_profile.Attributes.Plan-2.v", "STRING", "User.UserAttributes.Plan-2.v"),
            id="dot-and-dash",
        ),
    ],
)
def test_each_supported_field_has_its_column_target_and_type(field, column):
    # Given Id and one more field / When mapped / Then the field gets exactly its column, after Id's
    assert map_fields(("Id", field)) == ProfileMapping((ACCOUNT, column), "AccountNumber")


def test_address_with_channel_type_becomes_an_email_and_a_phone_column():
    # Given Address and ChannelType (in either order) / Then two columns, each taking its channels;
    # ChannelType itself has no column
    assert map_fields(("Id", "Address", "ChannelType")) == ProfileMapping((ACCOUNT, EMAIL, PHONE), "AccountNumber")
    assert map_fields(("ChannelType", "Id", "Address")) == ProfileMapping((ACCOUNT, EMAIL, PHONE), "AccountNumber")


def test_columns_follow_the_fields_order():
    mapping = map_fields(("Metrics.Opens", "Id", "Attributes.Plan"))
    assert [c.column for c in mapping.columns] == ["Opens", "AccountNumber", "Plan"]
    assert mapping.unique_key == "AccountNumber" and mapping.problems == ()


@pytest.mark.parametrize(
    "target, column",
    [
        pytest.param("_profile.AccountNumber", "AccountNumber", id="default"),
        pytest.param("_profile.Attributes.CustomerKey", "CustomerKey", id="custom-attribute"),
        pytest.param("_profile.a.b.c.Key", "Key", id="deep-path-last-part"),
        pytest.param("AccountNumber", "AccountNumber", id="no-dot-is-its-own-last-part"),
    ],
)
def test_the_id_goes_to_the_unique_key_target_named_after_its_last_part(target, column):
    mapping = map_fields(["Id"], target)
    assert mapping == ProfileMapping((ProfileColumn(column, target, "STRING", "Id"),), column)


# --------------------------------------------------------------------------- map_fields: problems
@pytest.mark.parametrize(
    "field, why",
    [
        pytest.param(
            "Address", "Address needs ChannelType to tell an email address from a phone number", id="address-alone"
        ),
        pytest.param(
            "ChannelType",
            "ChannelType only says where Address goes; without Address it has no target",
            id="channel-type-alone",
        ),
        pytest.param("Demographic.Timezone", NO_TARGET, id="demographic"),
        pytest.param("Location.Latitude", NO_TARGET, id="latitude"),
        pytest.param("Location.Longitude", NO_TARGET, id="longitude"),
        pytest.param("Location.Region2", NO_TARGET, id="location-unknown"),
        pytest.param("OptOut", NO_TARGET, id="opt-out"),
        pytest.param("EffectiveDate", NO_TARGET, id="effective-date"),
        pytest.param("User.UserAttributes.", NO_TARGET, id="empty-user-attribute"),
        pytest.param("Attributes.", NO_TARGET, id="empty-attribute"),
        pytest.param("Metrics.", NO_TARGET, id="empty-metric"),
        pytest.param("Metrics", NO_TARGET, id="bare-group"),
        pytest.param("User.Other", NO_TARGET, id="user-other"),
    ],
)
def test_a_field_without_a_target_is_named_with_the_reason(field, why):
    # Given Id and a field with no target / Then only Id maps and the field's reason is the one problem
    assert map_fields(("Id", field)) == ProfileMapping((ACCOUNT,), "AccountNumber", ((field, why),))


def test_a_field_without_a_target_does_not_stop_the_ones_after_it():
    mapping = map_fields(("Id", "Address", "Attributes.Plan"))
    assert [c.column for c in mapping.columns] == ["AccountNumber", "Plan"]
    assert [f for f, _ in mapping.problems] == ["Address"]


def test_without_id_there_is_no_unique_key():
    assert map_fields(("Attributes.Plan",)) == ProfileMapping(
        (ProfileColumn("Plan", "_profile.Attributes.Plan", "STRING", "Attributes.Plan"),), "", (NO_ID,)
    )
    assert map_fields(()) == ProfileMapping((), "", (NO_ID,))


def test_fields_landing_on_one_column_are_named_against_the_first():
    # Given three fields whose attribute name is Plan
    mapping = map_fields(("Id", "Attributes.Plan", "User.UserAttributes.Plan", "Metrics.Plan"))
    # Then the second and third are each named against the first
    assert mapping.problems == (
        ("User.UserAttributes.Plan", "maps to the same Customer Profiles column 'Plan' as Attributes.Plan"),
        ("Metrics.Plan", "maps to the same Customer Profiles column 'Plan' as Attributes.Plan"),
    )
    assert mapping.unique_key == "AccountNumber"


def test_an_attribute_named_like_the_unique_key_collides_with_the_id():
    mapping = map_fields(("Id", "Attributes.AccountNumber"))
    assert mapping.problems == (
        ("Attributes.AccountNumber", "maps to the same Customer Profiles column 'AccountNumber' as Id"),
    )


def test_a_field_listed_twice_is_not_a_collision_with_itself():
    mapping = map_fields(("Id", "Attributes.Plan", "Attributes.Plan"))
    assert mapping.problems == () and [c.column for c in mapping.columns] == ["AccountNumber", "Plan", "Plan"]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a" * 64, id="64-characters"),
        pytest.param("a", id="one-character"),
        pytest.param("Az09_.-", id="every-character-class"),
    ],
)
def test_column_names_within_the_fields_key_rule(name):
    assert map_fields(("Id", f"Attributes.{name}")).problems == ()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a" * 65, id="65-characters"),
        pytest.param("Plan Tier", id="space"),
        pytest.param("Café", id="non-ascii"),
        pytest.param("a/b", id="slash"),
    ],
)
def test_column_names_breaking_the_fields_key_rule(name):
    field = f"Attributes.{name}"
    assert map_fields(("Id", field)).problems == ((field, bad_column(name)),)


def test_an_attribute_name_of_255_characters_breaks_only_the_column_rule():
    name = "a" * 255
    field = f"Metrics.{name}"
    assert map_fields(("Id", field)).problems == ((field, bad_column(name)),)


def test_an_attribute_name_of_256_characters_is_too_long_as_well():
    name = "a" * 256
    field = f"User.UserAttributes.{name}"
    assert map_fields(("Id", field)).problems == (
        (field, bad_column(name)),
        (field, "attribute name longer than 255 characters"),
    )


def test_the_attribute_name_limit_applies_to_attribute_targets_only():
    # Given a unique key target outside _profile.Attributes with a 256-character last part
    long = "K" * 256
    # Then only the column rule applies; as an attribute the name is too long as well
    assert map_fields(["Id"], f"_profile.{long}").problems == (("Id", bad_column(long)),)
    assert map_fields(["Id"], f"_profile.Attributes.{long}").problems == (
        ("Id", bad_column(long)),
        ("Id", "attribute name longer than 255 characters"),
    )


# --------------------------------------------------------------------------- the upload job's Fields
def test_fields_are_the_upload_jobs_object_type_fields():
    mapping = map_fields(("Id", "Address", "ChannelType", "Metrics.Opens"))
    assert mapping.fields() == {
        "AccountNumber": {
            "Source": "_source.AccountNumber",
            "Target": "_profile.AccountNumber",
            "ContentType": "STRING",
        },
        "EmailAddress": {
            "Source": "_source.EmailAddress",
            "Target": "_profile.EmailAddress",
            "ContentType": "EMAIL_ADDRESS",
        },
        "PhoneNumber": {
            "Source": "_source.PhoneNumber",
            "Target": "_profile.PhoneNumber",
            "ContentType": "PHONE_NUMBER",
        },
        "Opens": {"Source": "_source.Opens", "Target": "_profile.Attributes.Opens", "ContentType": "NUMBER"},
    }


def test_target_of_finds_the_first_column_of_a_field():
    mapping = map_fields(("Id", "Address", "ChannelType", "Location.Region"))
    assert mapping.target_of("Address") == EMAIL
    assert mapping.target_of("Location.Region").column == "State"
    assert mapping.target_of("ChannelType") is None
    assert mapping.target_of("Attributes.Plan") is None


# --------------------------------------------------------------------------- translate
def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def test_translate_writes_the_mapped_columns_and_routes_address_by_channel(tmp_path):
    # Given an import file with the Pinpoint header: an email, an SMS, a voice and a push endpoint
    src = write(
        tmp_path / "part-00000.csv",
        "Id,Address,ChannelType,Metrics.Opens\r\n"
        "ep-1,a@example.com,EMAIL,3\r\n"
        "ep-2,+15550001,SMS,0\r\n"
        "ep-3,+15550002,VOICE,1\r\n"
        "ep-4,token,PUSH,2\r\n",
    )
    out = tmp_path / "profiles.csv"
    # When translated
    rows = translate([src], out, map_fields(("Id", "Address", "ChannelType", "Metrics.Opens")))
    # Then the address lands in the column of its channel, and nowhere for other channels
    assert rows == 4
    assert out.read_bytes() == (
        b"AccountNumber,EmailAddress,PhoneNumber,Opens\r\n"
        b"ep-1,a@example.com,,3\r\n"
        b"ep-2,,+15550001,0\r\n"
        b"ep-3,,+15550002,1\r\n"
        b"ep-4,,,2\r\n"
    )


def test_translate_reads_the_channel_case_insensitively(tmp_path):
    src = write(tmp_path / "p.csv", "Id,Address,ChannelType\r\nep-1,a@example.com,email\r\nep-2,+1555,Sms\r\n")
    out = tmp_path / "o.csv"
    assert translate([src], out, map_fields(("Id", "Address", "ChannelType"))) == 2
    assert out.read_bytes() == b"AccountNumber,EmailAddress,PhoneNumber\r\nep-1,a@example.com,\r\nep-2,,+1555\r\n"


def test_translate_joins_files_each_read_by_its_own_header(tmp_path):
    # Given two files whose columns come in different orders (and the mapping's order differs again)
    one = write(tmp_path / "part-00000.csv", "Id,Attributes.Plan\r\nep-1,Gold\r\nep-2,Silver\r\n")
    two = write(tmp_path / "part-00001.csv", "Attributes.Plan,Id\r\nBronze,ep-3\r\n")
    out = tmp_path / "profiles.csv"
    # When translated into one CSV / Then every row is counted and read by its own file's header
    assert translate([one, two], out, map_fields(("Attributes.Plan", "Id"))) == 3
    assert out.read_bytes() == b"Plan,AccountNumber\r\nGold,ep-1\r\nSilver,ep-2\r\nBronze,ep-3\r\n"


def test_translate_keeps_values_byte_for_byte(tmp_path):
    # Given values with a comma, quotes, non-ASCII letters and a quoted line break
    src = write(
        tmp_path / "p.csv",
        'Id,User.UserAttributes.Note\r\nep-1,"Silver, ""B"""\r\nep-2,José\r\nep-3,"two\r\nlines"\r\n',
    )
    out = tmp_path / "o.csv"
    # Then they come out RFC-4180 quoted, UTF-8, unchanged
    assert translate([src], out, map_fields(("Id", "User.UserAttributes.Note"))) == 3
    assert (
        out.read_bytes()
        == ('AccountNumber,Note\r\nep-1,"Silver, ""B"""\r\nep-2,José\r\nep-3,"two\r\nlines"\r\n').encode()
    )


@pytest.fixture
def ascii_locale():
    """The process's LC_CTYPE set to "C" (an ASCII locale, as on a container with no UTF-8 locale), then restored."""
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    yield
    locale.setlocale(locale.LC_CTYPE, before)


def test_translate_reads_utf8_whatever_the_locale(tmp_path, ascii_locale):
    # Given an import file with non-ASCII values, and a machine whose locale encoding is ASCII
    src = write(tmp_path / "p.csv", "Id,Attributes.City\r\nep-1,Zürich\r\nep-2,東京\r\n")
    out = tmp_path / "o.csv"
    # When translated / Then the file is read as UTF-8 (the import files' encoding), not the locale's
    assert translate([src], out, map_fields(("Id", "Attributes.City"))) == 2
    assert out.read_bytes() == "AccountNumber,City\r\nep-1,Zürich\r\nep-2,東京\r\n".encode()


def test_translate_of_no_rows_writes_the_header_only(tmp_path):
    src = write(tmp_path / "p.csv", "Id\r\n")
    out = tmp_path / "o.csv"
    assert translate([src], out, map_fields(["Id"])) == 0
    assert out.read_bytes() == b"AccountNumber\r\n"


def test_translate_replaces_an_existing_output(tmp_path):
    src = write(tmp_path / "p.csv", "Id\r\nep-1\r\n")
    out = write(tmp_path / "o.csv", "stale content that is longer than the new one\r\n" * 3)
    assert translate([src], out, map_fields(["Id"])) == 1
    assert out.read_bytes() == b"AccountNumber\r\nep-1\r\n"


# --------------------------------------------------------------------------- segment_groups
MAPPING = map_fields(
    (
        "Id",
        "Address",
        "ChannelType",
        "User.UserAttributes.Stage",
        "Attributes.Plan",
        "Metrics.Opens",
        "User.UserId",
        "Location.City",
    )
)


def test_segment_groups_include_profiles_with_an_in_segment_value_of_every_attribute():
    groups = segment_groups(
        {"User.UserAttributes.Stage": ("Trial", "Upsell"), "Metrics.Opens": ("1",), "User.UserId": ("u-1",)}, MAPPING
    )
    assert groups == {
        "Groups": [
            {
                "Dimensions": [
                    {
                        "ProfileAttributes": {
                            "Attributes": {
                                "Stage": {"DimensionType": "INCLUSIVE", "Values": ["Trial", "Upsell"]},
                                "Opens": {"DimensionType": "INCLUSIVE", "Values": ["1"]},
                                "UserId": {"DimensionType": "INCLUSIVE", "Values": ["u-1"]},
                            }
                        }
                    }
                ],
                "Type": "ALL",
            }
        ],
        "Include": "ALL",
    }


def test_segment_groups_take_50_values():
    values = tuple(f"v{i}" for i in range(50))
    groups = segment_groups({"Attributes.Plan": values}, MAPPING)
    assert groups["Groups"][0]["Dimensions"][0]["ProfileAttributes"]["Attributes"]["Plan"]["Values"] == list(values)


def not_an_attribute(field: str) -> str:
    return (
        f"segment_values: {field} is not a profile attribute here (use a User.UserAttributes.*, "
        "Attributes.* or Metrics.* field)"
    )


@pytest.mark.parametrize(
    "segment_filter, message",
    [
        pytest.param({"Attributes.Tier": ("Gold",)}, not_an_attribute("Attributes.Tier"), id="field-not-mapped"),
        pytest.param({"Address": ("a@example.com",)}, not_an_attribute("Address"), id="email-target"),
        pytest.param({"Location.City": ("Paris",)}, not_an_attribute("Location.City"), id="address-target"),
        pytest.param({"Id": ("ep-1",)}, not_an_attribute("Id"), id="unique-key"),
        pytest.param({"Attributes.Plan": ()}, "segment_values: Attributes.Plan lists no value", id="no-value"),
        pytest.param(
            {"Attributes.Plan": tuple(f"v{i}" for i in range(51))},
            "segment_values: Attributes.Plan lists 51 values; a segment definition takes at most 50",
            id="51-values",
        ),
        pytest.param({}, "segment_values is empty", id="empty"),
        pytest.param(
            {"Attributes.Plan": ("Gold",), "Address": ("x",)}, not_an_attribute("Address"), id="one-bad-among-good"
        ),
    ],
)
def test_segment_groups_refuse_with_the_exact_reason(segment_filter, message):
    with pytest.raises(ValueError) as err:
        segment_groups(segment_filter, MAPPING)
    assert str(err.value) == message
