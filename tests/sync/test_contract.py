"""The segment contract as lakeseg reads it from manifest nodes."""

from __future__ import annotations

import pytest

from sync.dbt import contract
from sync.dbt.contract import Segment, _meta, is_segment_node, load_segments, segment_from_node


def node(name="seg_a", path="segments/seg_a.sql", columns=None, meta=None, config_meta=None, **extra) -> dict:
    columns = (
        columns
        if columns is not None
        else {
            "plan": {"name": "plan", "config": {"meta": {"lakeseg": {"field": "Attributes.Plan"}}}},
            "endpoint_id": {"name": "endpoint_id", "meta": {"lakeseg": {"field": "Id"}}},
            "note": {"name": "note"},
        }
    )
    return {
        "unique_id": f"model.p.{name}",
        "resource_type": "model",
        "name": name,
        "path": path,
        "schema": "segments",
        "database": "db",
        "columns": columns,
        "meta": meta or {},
        "config": {"meta": {"lakeseg": {"exit": "keep"}} if config_meta is None else config_meta},
        **extra,
    }


def test_columns_map_to_fields_with_the_id_first_then_declaration_order():
    seg = segment_from_node(node())
    assert seg.fields == ("Id", "Attributes.Plan")
    assert seg.columns == ("endpoint_id", "plan")
    assert seg.owned_fields == ("Attributes.Plan",)
    assert [m.column for m in seg.id_mappings] == ["endpoint_id"]
    assert (seg.unique_id, seg.name, str(seg.relation)) == ("model.p.seg_a", "seg_a", "db.segments.seg_a")
    assert seg.path == "segments/seg_a.sql" and seg.exit == "keep" and seg.segment_name is None


def test_the_original_file_path_and_tags_are_kept():
    seg = segment_from_node(node(original_file_path="models/segments/seg_a.sql", tags=["daily"]))
    assert seg.path == "models/segments/seg_a.sql" and seg.tags == ("daily",)
    assert segment_from_node(node(path=None)).path == ""


def test_config_meta_wins_over_meta_and_a_non_mapping_namespace_is_marked_invalid():
    assert _meta(
        {"meta": {"lakeseg": {"exit": "keep", "a": 1}}, "config": {"meta": {"lakeseg": {"exit": {"X": 1}}}}}
    ) == {"exit": {"X": 1}, "a": 1}
    assert _meta({"config": {"meta": {"lakeseg": "oops"}}}) == {"_invalid": "oops"}
    assert _meta({"meta": {"other": {"exit": "keep"}}}) == {}
    assert _meta({}) == {}


@pytest.mark.parametrize(
    "exit_value,expected",
    [
        (
            {"Attributes.Plan": "none", "Attributes.N": 0, "Attributes.B": True, "Attributes.F": False},
            {"Attributes.Plan": "none", "Attributes.N": "0", "Attributes.B": "true", "Attributes.F": "false"},
        ),
        ("keep", {}),
        (None, {}),
    ],
    ids=["values-as-text", "keep", "undeclared"],
)
def test_exit_values_are_text(exit_value, expected):
    seg = segment_from_node(node(config_meta={"lakeseg": {"exit": exit_value}}))
    assert seg.exit_values == expected


def test_segment_values_become_a_filter_of_text_values():
    seg = segment_from_node(
        node(
            config_meta={
                "lakeseg": {
                    "exit": "keep",
                    "segment_name": "Clickers",
                    "segment_values": {"Attributes.Plan": ["pro", 5, None, True], "Attributes.One": "Yes"},
                }
            }
        )
    )
    assert seg.segment_name == "Clickers"
    assert seg.segment_filter == {"Attributes.Plan": ("pro", "5"), "Attributes.One": ("Yes",)}
    assert segment_from_node(node(config_meta={"lakeseg": {"segment_values": ["x"]}})).segment_filter == {}


def test_the_mapping_hash_changes_with_columns_fields_and_exit_values_only():
    base = segment_from_node(node())
    assert len(base.mapping_hash) == 16 and base.mapping_hash == segment_from_node(node()).mapping_hash
    assert segment_from_node(node(tags=["x"])).mapping_hash == base.mapping_hash
    renamed = node()
    renamed["columns"]["plan"]["name"] = "plan2"
    other_field = node()
    other_field["columns"]["plan"]["config"]["meta"]["lakeseg"]["field"] = "Attributes.Tier"
    other_exit = node(config_meta={"lakeseg": {"exit": {"Attributes.Plan": "none"}}})
    hashes = {segment_from_node(n).mapping_hash for n in (renamed, other_field, other_exit)}
    assert len(hashes) == 3 and base.mapping_hash not in hashes


@pytest.mark.parametrize(
    "n,expected",
    [
        (node(), True),
        (node(path="segments\\seg_a.sql", config_meta={}, columns={}), True),
        (node(path="marts/x.sql", config_meta={}, columns={}), False),
        (node(path="marts/x.sql", config_meta={"lakeseg": {"exit": "keep"}}, columns={}), True),
        (
            node(
                path="marts/x.sql", config_meta={}, columns={"c": {"name": "c", "meta": {"lakeseg": {"field": "Id"}}}}
            ),
            True,
        ),
        ({**node(), "resource_type": "seed"}, False),
        (node(path="segmentsX/x.sql", config_meta={}, columns={}), False),
        (node(path=None, config_meta={}, columns={}), False),
    ],
    ids=[
        "segments-folder",
        "windows-path",
        "other-folder",
        "node-meta",
        "column-meta",
        "not-a-model",
        "folder-prefix-only",
        "no-path",
    ],
)
def test_what_counts_as_a_segment(n, expected):
    assert is_segment_node(n) is expected


def test_segments_load_sorted_by_name_and_other_nodes_are_left_out():
    nodes = {
        n["unique_id"]: n
        for n in (node("seg_b"), node("seg_a"), node("stg_x", path="staging/x.sql", config_meta={}, columns={}))
    }
    assert [s.name for s in load_segments({"nodes": nodes})] == ["seg_a", "seg_b"]
    assert load_segments({}) == []


def test_tests_attach_by_attached_node_or_their_first_dependency():
    a = {
        "unique_id": "test.p.t1",
        "resource_type": "test",
        "attached_node": "model.p.seg_a",
        "name": "unique_seg_a_id",
        "test_metadata": {"name": "unique"},
    }
    b = {
        "unique_id": "test.p.t2",
        "resource_type": "test",
        "depends_on": {"nodes": ["model.p.seg_a", "model.p.x"]},
        "name": "custom_sql_test",
    }
    c = {"unique_id": "test.p.t3", "resource_type": "test", "depends_on": {"nodes": []}, "name": "orphan"}
    m = {"unique_id": "model.p.seg_a", "resource_type": "model", "attached_node": "model.p.z"}
    by_model = contract.tests_by_model({"nodes": {n["unique_id"]: n for n in (a, b, c, m)}})
    assert by_model == {"model.p.seg_a": [a, b]}
    assert [contract.test_name(t) for t in by_model["model.p.seg_a"]] == ["unique", "custom_sql_test"]
    assert contract.test_name({}) == "" and contract.tests_by_model({}) == {}


def test_a_segment_is_a_plain_value():
    seg = segment_from_node(node())
    assert isinstance(seg, Segment) and seg == segment_from_node(node())
