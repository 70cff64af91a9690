"""Exposures: one per segment, naming its destination and owner, written or checked by `lakeseg check`."""

from __future__ import annotations

from pathlib import Path

import yaml

from sync.dbt.contract import load_segments
from sync.dbt.exposures import EXPOSURES_FILE, Destination, exposures_doc, prune_missing_models, sync_exposures
from sync.settings import load_settings
from tests.sync.test_selection import manifest

PROJECT = Path(__file__).resolve().parents[2]


def segments():
    return load_segments(manifest("seg_b", "seg_a"))


DEST = Destination("pinpoint-prod", "pinpoint", "athena", {"name": "Marketing ops", "email": "mo@example.com"})


def test_one_application_exposure_per_segment_with_destination_and_owner():
    doc = exposures_doc(segments(), DEST)
    assert [e["name"] for e in doc["exposures"]] == ["seg_a__pinpoint_prod", "seg_b__pinpoint_prod"]
    first = doc["exposures"][0]
    assert first["type"] == "application"
    assert first["depends_on"] == ["ref('seg_a')"]
    assert first["owner"] == {"name": "Marketing ops", "email": "mo@example.com"}
    assert first["meta"]["lakeseg"] == {
        "destination": "pinpoint-prod",
        "destination_type": "pinpoint",
        "target": "athena",
    }


def test_owner_and_destination_come_from_lakeseg_yml(monkeypatch):
    monkeypatch.setenv("LAKESEG_OWNER_EMAIL", "crm@example.com")
    dest = Destination.from_settings(load_settings(PROJECT, "local"))
    assert (dest.name, dest.type, dest.target) == ("files", "files", "local")
    assert dest.owner == {"name": "Marketing operations", "email": "crm@example.com"}


def test_write_then_check_is_clean_and_a_stale_file_is_a_problem(tmp_path):
    # Given no exposures file: check mode reports it missing, write mode writes it
    problems = sync_exposures(tmp_path, segments(), DEST, write=False)
    assert [p.rule for p in problems] == ["exposures"] and "missing" in problems[0].message
    assert sync_exposures(tmp_path, segments(), DEST, write=True) == []
    written = yaml.safe_load((tmp_path / EXPOSURES_FILE).read_text())
    assert len(written["exposures"]) == 2
    assert sync_exposures(tmp_path, segments(), DEST, write=False) == []
    # When a segment is added, the file is out of date until written again
    more = load_segments(manifest("seg_a", "seg_b", "seg_c"))
    assert "out of date" in sync_exposures(tmp_path, more, DEST, write=False)[0].message


def test_exposures_of_deleted_models_are_pruned_before_parsing(tmp_path):
    sync_exposures(tmp_path, segments(), DEST, write=True)
    (tmp_path / "models" / "segments" / "seg_a.sql").write_text("select 1")
    assert prune_missing_models(tmp_path) == ["seg_b"]
    doc = yaml.safe_load((tmp_path / EXPOSURES_FILE).read_text())
    assert [e["name"] for e in doc["exposures"]] == ["seg_a__pinpoint_prod"]
