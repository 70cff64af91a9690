"""Choosing a destination by destination.type, and the name its state is kept under."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sync.core.errors import ConfigError
from sync.destinations import build_destination, state_key
from sync.destinations.files import FilesDestination


@pytest.mark.parametrize("kind", ["ftp", None])
def test_an_unknown_type_names_the_ones_there_are(kind):
    with pytest.raises(ConfigError) as err:
        build_destination({"type": kind})
    assert str(err.value) == f"destination.type '{kind}' is unknown; choose one of: customer_profiles, files, pinpoint"


def test_a_known_type_builds_its_destination_from_the_settings(tmp_path):
    dest = build_destination({"type": "files", "path": str(tmp_path)})
    assert isinstance(dest, FilesDestination) and dest.path == tmp_path


@pytest.mark.parametrize(
    "destination,settings,key",
    [
        (SimpleNamespace(name="pinpoint"), {"name": "prod-pp"}, "prod-pp"),
        (SimpleNamespace(name="pinpoint"), {"name": ""}, "pinpoint"),
        (SimpleNamespace(name="files"), {}, "files"),
    ],
    ids=["settings-name-wins", "empty-name-falls-back-to-the-type", "no-name"],
)
def test_the_state_key(destination, settings, key):
    assert state_key(destination, settings) == key


def test_the_settings_model_from_lakeseg_yml_builds_and_names_the_destination(tmp_path):
    # Given the destination block as the settings check leaves it (a model, not a mapping)
    from sync.destinations.files import FilesDestinationSettings

    named = FilesDestinationSettings(type="files", path=str(tmp_path), name="exports-eu")
    unnamed = FilesDestinationSettings(type="files", path=str(tmp_path))
    # When the run builds it and keys its state, then the model's fields are read as the mapping's would be
    dest = build_destination(named)
    assert isinstance(dest, FilesDestination) and dest.path == tmp_path
    assert state_key(dest, named) == "exports-eu" and state_key(dest, unnamed) == "files"
