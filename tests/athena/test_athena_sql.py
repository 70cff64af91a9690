"""The same models on Athena: `dbt parse` and `dbt compile` with the athena
target (AWS faked by moto), and the rendered SQL is Athena's dialect only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

# Functions and syntax that exist in DuckDB but not in Athena (Trino).
DUCKDB_ONLY = [
    r"\bepoch_ms\(",
    r"\bto_(seconds|minutes|hours|days|months|years)\(",
    r"\bmap_extract_value\(",
    r"\bregexp_matches\(",
    r"::",
    r"\btimezone\(",
    r"read_parquet\(",
    r"\bstrftime\(",
]


@pytest.fixture(scope="module")
def athena_compiled(athena_build):
    return athena_build.parsed, athena_build.compiled, athena_build.models


def test_parse_and_compile_succeed_on_the_athena_target(athena_compiled):
    parsed, compiled, _ = athena_compiled
    assert parsed.success, parsed.exception
    assert compiled.success, compiled.exception


def compiled_models(root: Path):
    return sorted(p for folder in ("staging", "segments") for p in (root / "models" / folder).glob("*.sql"))


def test_every_model_renders_athena_sql_only(athena_compiled):
    _, _, root = athena_compiled
    models = compiled_models(root)
    assert len(models) == 19
    for path in models:
        sql = path.read_text()
        for pattern in DUCKDB_ONLY:
            assert not re.search(pattern, sql), f"{path.name} renders DuckDB-only SQL {pattern!r} on Athena"


def test_sources_resolve_to_glue_tables_and_filter_partitions(athena_compiled):
    _, _, root = athena_compiled
    sql = (root / "models" / "staging" / "stg_due__all_events.sql").read_text()
    assert '"awsdatacatalog"."due_eventdb"."all_events"' in sql
    # constant bounds on the partition column: lookback + 24 h slack before as_of, and as_of itself
    assert re.search(
        r"where ingest_timestamp >= timestamp '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d' "
        r"and ingest_timestamp <= timestamp '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d'",
        sql,
    )
    assert "element_at(session, 'session_id')" in sql
    assert "session.session_id" not in sql
    contacts = (root / "models" / "staging" / "stg_crm__contacts.sql").read_text()
    assert '"awsdatacatalog"."crm"."contacts"' in contacts


@pytest.mark.parametrize(
    "macro,expected",
    [
        ("epoch_ms_to_timestamp", "cast(from_unixtime(cast(1776273651267 as double) / 1000.0) as timestamp)"),
        ("timestamp_add", "date_add('month', -6, timestamp '2026-08-31 12:00:00')"),
        ("map_value", "element_at(map(array['campaign_id'], array['cmp-1']), 'campaign_id')"),
        ("contains_control_chars", "regexp_like('a' || chr(9) || 'b', '[\\x00-\\x1F\\x7F-\\x9F\\x{2028}\\x{2029}]')"),
        ("contains_control_chars", "regexp_like('a' || chr(0) || 'b', '[\\x00-\\x1F\\x7F-\\x9F\\x{2028}\\x{2029}]')"),
        (
            "contains_control_chars",
            "regexp_like('a' || chr(8232) || 'b', '[\\x00-\\x1F\\x7F-\\x9F\\x{2028}\\x{2029}]')",
        ),
        ("try_to_double", "try_cast(cast('3.5' as varchar) as double)"),
        (
            "split_bucket",
            "mod(from_base(substr(lower(to_hex(md5(to_utf8('winback-2026-11' || ':' "
            "|| cast('ep-000001' as varchar))))), 1, 8), 16), 10000)",
        ),
    ],
    ids=lambda v: v if "(" not in v else "",
)
def test_dispatch_macros_render_athena_branches(athena_compiled, macro, expected):
    _, _, root = athena_compiled
    sql = next((root / "tests").rglob("assert_portable_macros.sql")).read_text()
    assert expected in sql


def test_as_of_is_one_constant_per_invocation_on_athena_unless_pinned(athena_compiled):
    # Given no pinned as_of, as_of is dbt's run_started_at: one literal, the same in every model
    _, _, root = athena_compiled
    literals = set()
    for path in compiled_models(root):
        sql = path.read_text()
        assert "current_timestamp" not in sql, f"{path.name} reads the clock per query"
        literals |= set(re.findall(r"timestamp '(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})'", sql))
    assert len(literals) == 1, literals


def test_segment_tables_rebuild_without_disappearing(athena_build):
    # Given the segment models as compiled for Athena
    import json

    manifest = json.loads((athena_build.target / "manifest.json").read_text())
    segments = [n for n in manifest["nodes"].values() if n["resource_type"] == "model" and "segment" in n["tags"]]
    from tests.e2e.conftest import PROJECT

    assert len(segments) == len(list((PROJECT / "models" / "segments").glob("seg_*.sql")))
    for node in segments:
        # Then each is a Parquet hive table built with ha (new location, then swap)
        assert node["config"].get("ha") is True, node["name"]
        assert node["config"].get("table_type") == "hive" and node["config"].get("format") == "parquet"
