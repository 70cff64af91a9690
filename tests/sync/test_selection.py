"""Selection: dbt resolves the selectors; lakeseg keeps the segment models among them."""

from __future__ import annotations

import pytest

from sync.core.errors import ConfigError
from sync.dbt.contract import load_segments
from sync.dbt.selection import choose_segments


def manifest(*names):
    return {
        "nodes": {
            f"model.p.{n}": {
                "resource_type": "model",
                "unique_id": f"model.p.{n}",
                "name": n,
                "path": f"segments/{n}.sql",
                "original_file_path": f"models/segments/{n}.sql",
                "fqn": ["p", "segments", n],
                "tags": [],
                "config": {"meta": {}},
                "columns": {},
                "relation_name": n,
                "database": "db",
                "schema": "segments",
                "alias": n,
            }
            for n in names
        }
    }


class Recorder:
    """Stands in for `dbt ls` (the real one runs in tests/e2e): returns fixed ids, records its input."""

    def __init__(self, ids):
        self.ids, self.calls = set(ids), []

    def __call__(self, select, exclude):
        self.calls.append((select, exclude))
        return self.ids


@pytest.fixture
def segments():
    segs = load_segments(manifest("seg_a", "seg_b"))
    assert [s.name for s in segs] == ["seg_a", "seg_b"]
    return segs


def test_no_selection_takes_every_segment_without_asking_dbt(segments):
    resolver = Recorder([])
    assert choose_segments(segments, (), (), resolver) == segments
    assert resolver.calls == []


def test_selected_models_that_are_not_segments_are_left_out(segments):
    resolver = Recorder(["model.p.seg_b", "model.p.stg_events"])
    chosen = choose_segments(segments, ("+seg_b",), ("tag:x",), resolver)
    assert [s.name for s in chosen] == ["seg_b"]
    assert resolver.calls == [(("+seg_b",), ("tag:x",))]


def test_selection_of_no_segment_warns_naming_what_dbt_selected_as_dbt_does(segments, caplog):
    # When dbt selects only a staging model, then nothing is chosen and a warning (not an error) says why
    with caplog.at_level("WARNING", logger="sync.dbt.selection"):
        assert choose_segments(segments, ("stg_events",), (), Recorder(["model.p.stg_events"])) == []
    assert caplog.messages == [
        "Nothing to do: --select stg_events matches no segment; dbt selected 1 model(s), "
        "none of them a segment (segments: seg_a, seg_b)"
    ]


def test_exclude_alone_may_leave_nothing(segments):
    assert choose_segments(segments, (), ("seg_a", "seg_b"), Recorder([])) == []


def test_selection_without_a_resolver_is_a_config_error(segments):
    with pytest.raises(ConfigError, match="need the dbt project"):
        choose_segments(segments, ("seg_a",), ())
