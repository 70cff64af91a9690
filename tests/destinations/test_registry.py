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
