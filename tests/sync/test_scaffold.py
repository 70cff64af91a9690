"""`lakeseg new`: names, fields and ownership are checked before anything is written."""

from __future__ import annotations

import pytest
import yaml

from sync.core.errors import ConfigError
from sync.dbt.scaffold import default_field, new_segment


def test_default_field_comes_from_the_name():
    assert default_field("seg_high_value_customers") == "User.UserAttributes.HighValueCustomers"


def test_new_segment_into_an_empty_project(tmp_path):
    made = new_segment(tmp_path, "seg_vip", description="VIPs.")
    doc = yaml.safe_load(made.properties.read_text())
    model = doc["models"][0]
    assert doc["version"] == 2 and model["name"] == "seg_vip"
    assert model["config"]["meta"]["lakeseg"]["exit"] == {"User.UserAttributes.Vip": "No"}
    ids = model["columns"][0]
    assert ids["config"]["meta"]["lakeseg"]["field"] == "Id"
    assert ids["data_tests"] == ["unique", "not_null", "pinpoint_max_length", "pinpoint_no_control_chars"]
    assert "select distinct endpoint_id, 'Yes' as vip from members" in made.sql.read_text()


def test_second_segment_is_appended_to_the_same_properties_file(tmp_path):
    new_segment(tmp_path, "seg_a")
    new_segment(tmp_path, "seg_b")
    doc = yaml.safe_load((tmp_path / "models" / "segments" / "_segments__models.yml").read_text())
    assert [m["name"] for m in doc["models"]] == ["seg_a", "seg_b"]


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("vip", {}, "must look like seg_<audience>"),
        ("seg_VIP", {}, "must look like seg_<audience>"),
        ("seg_vip", {"field": "User.UserAttributes.A#B"}, "--field User.UserAttributes.A#B"),
        ("seg_vip", {"field": "ChannelType"}, "custom attribute"),
        ("seg_vip", {"exit_value": "x" * 101}, "--field"),
    ],
    ids=["no-prefix", "upper-case", "bad-field", "standard-field", "exit-value-too-long"],
)
def test_bad_input_is_refused_and_nothing_written(tmp_path, name, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        new_segment(tmp_path, name, **kwargs)
    assert not (tmp_path / "models").exists()


def test_existing_segment_or_owned_field_is_refused(tmp_path):
    new_segment(tmp_path, "seg_vip")
    with pytest.raises(ConfigError, match="already exists"):
        new_segment(tmp_path, "seg_vip")
    with pytest.raises(ConfigError, match="already written by seg_vip"):
        new_segment(tmp_path, "seg_other", field="User.UserAttributes.Vip")
