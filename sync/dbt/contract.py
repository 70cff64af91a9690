"""The segment contract, read from dbt's manifest.

A segment is a dbt model in ``models/segments/`` (or any model that declares
lakeseg meta). Its YAML says, under the ``lakeseg`` meta namespace:

- per exported column: ``config.meta.lakeseg.field`` -- the Pinpoint field name;
- per model: ``config.meta.lakeseg.exit`` -- ``keep``, or a value per owned field
  that endpoints get when they leave the segment;
- optionally ``config.meta.lakeseg.segment_name`` -- a platform segment to
  define/update with each import.

Manifest nodes stay plain dicts; this module only lifts out what the sync needs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sync.core.fields import ID_FIELD
from sync.readers.base import RelationRef

NAMESPACE = "lakeseg"
SEGMENTS_FOLDER = "segments"
KEEP = "keep"


def _meta(obj: dict) -> dict:
    """The lakeseg namespace of a node's or column's meta (config.meta wins)."""
    merged: dict[str, Any] = {}
    for meta in (obj.get("meta") or {}, (obj.get("config") or {}).get("meta") or {}):
        ns = meta.get(NAMESPACE)
        if isinstance(ns, dict):
            merged.update(ns)
        elif ns is not None:
            merged["_invalid"] = ns
    return merged


@dataclass(frozen=True)
class FieldMapping:
    column: str  # warehouse column, as declared in YAML
    field: str  # Pinpoint field name, case preserved


@dataclass(frozen=True)
class Segment:
    unique_id: str
    name: str
    relation: RelationRef
    mappings: tuple[FieldMapping, ...]
    exit: Any  # "keep" | dict[field, value] | None (undeclared)
    segment_name: str | None
    tags: tuple[str, ...]
    path: str
    raw_meta: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(m.field for m in self.mappings)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(m.column for m in self.mappings)

    @property
    def id_mappings(self) -> list[FieldMapping]:
        return [m for m in self.mappings if m.field == ID_FIELD]

    @property
    def owned_fields(self) -> tuple[str, ...]:
        """The fields this segment writes, besides the endpoint Id."""
        return tuple(f for f in self.fields if f != ID_FIELD)

    @property
    def exit_values(self) -> dict[str, str]:
        """Field → exit value for exit rows; empty for ``keep``."""
        if not isinstance(self.exit, dict):
            return {}
        return {f: _as_text(v) for f, v in self.exit.items()}

    @property
    def segment_filter(self) -> dict[str, tuple[str, ...]]:
        """``meta.lakeseg.segment_values``: owned field → the values that mean "in the segment".

        A platform segment named by ``segment_name`` selects endpoints whose
        field holds one of these values (e.g. HasClicked = Yes).
        """
        raw = self.raw_meta.get("segment_values")
        if not isinstance(raw, dict):
            return {}
        out = {}
        for f, values in raw.items():
            values = values if isinstance(values, list) else [values]
            out[str(f)] = tuple(_as_text(v) for v in values if v is not None and not isinstance(v, bool))
        return out

    @property
    def mapping_hash(self) -> str:
        """Changes whenever the exported fields or exit values change (forces a full send)."""
        payload = json.dumps(
            {"fields": [[m.column, m.field] for m in self.mappings], "exit": self.exit}, sort_keys=True, default=str
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def is_segment_node(node: dict) -> bool:
    if node.get("resource_type") != "model":
        return False
    path = (node.get("path") or "").replace("\\", "/")
    if path.startswith(SEGMENTS_FOLDER + "/"):
        return True
    if _meta(node):
        return True
    return any(_meta(col) for col in (node.get("columns") or {}).values())


def segment_from_node(node: dict) -> Segment:
    meta = _meta(node)
    mappings = []
    for col in (node.get("columns") or {}).values():
        f = _meta(col).get("field")
        if f is not None:
            mappings.append(FieldMapping(column=col["name"], field=str(f)))
    # Id first, then declaration order: a stable, readable file header.
    mappings.sort(key=lambda m: m.field != ID_FIELD)
    return Segment(
        unique_id=node["unique_id"],
        name=node["name"],
        relation=RelationRef.from_node(node),
        mappings=tuple(mappings),
        exit=meta.get("exit"),
        segment_name=meta.get("segment_name"),
        tags=tuple(node.get("tags") or ()),
        path=node.get("original_file_path") or node.get("path") or "",
        raw_meta=meta,
    )


def load_segments(manifest: dict) -> list[Segment]:
    """Every segment model in the manifest, sorted by name."""
    nodes = manifest.get("nodes") or {}
    return sorted((segment_from_node(n) for n in nodes.values() if is_segment_node(n)), key=lambda s: s.name)


def tests_by_model(manifest: dict) -> dict[str, list[dict]]:
    """unique_id of a model → the test nodes attached to it."""
    out: dict[str, list[dict]] = {}
    for node in (manifest.get("nodes") or {}).values():
        if node.get("resource_type") != "test":
            continue
        attached = node.get("attached_node") or next(iter((node.get("depends_on") or {}).get("nodes") or []), None)
        if attached:
            out.setdefault(attached, []).append(node)
    return out


def test_name(test: dict) -> str:
    """The generic test's rule name (``unique``, ``pinpoint_max_length``)."""
    return ((test.get("test_metadata") or {}).get("name")) or test.get("name", "")
