"""The split cases in tests/dbt/assert_portable_macros.sql expect what Python's hashlib computes.

dbt runs that singular test on the engine that builds (DuckDB here, Athena in production); this test
proves its expected values are the hashlib ones, so a pass there means the engine agrees with Python.
The Athena spelling is checked below against the same definition.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASE = re.compile(
    r"split_bucket\(\"'(?P<id>[^']*)'\", '(?P<salt>[^']+)'\) \}\}.*?"
    r"split_group\(\"'(?P=id)'\", '(?P=salt)', (?P<groups>\[\[.*?\]\])\) \}\},\s*'(?P<expected>[^']+)'",
    re.S,
)


def python_split(id_: str, salt: str, groups: list) -> tuple[int, str]:
    bucket = int(hashlib.md5(f"{salt}:{id_}".encode()).hexdigest()[:8], 16) % 10000
    upper = 0
    for name, pct in groups:
        upper += round(pct * 100)
        if bucket < upper:
            return bucket, name
    raise AssertionError("percentages must add up to 100")


def cases():
    text = (ROOT / "tests" / "dbt" / "assert_portable_macros.sql").read_text(encoding="utf-8")
    found = [m.groupdict() for m in CASE.finditer(text)]
    assert len(found) >= 6
    return found


@pytest.mark.parametrize("case", cases(), ids=lambda c: c["id"])
def test_expected_group_is_what_hashlib_gives(case):
    groups = ast.literal_eval(case["groups"])  # [name, percent] pairs
    bucket, group = python_split(case["id"], case["salt"], groups)
    assert case["expected"] == f"{bucket} {group}"


def test_the_literal_cases_reach_every_group():
    assert {c["expected"].split()[1] for c in cases()} == {"A", "B", "holdout"}


def test_athena_spelling_is_the_same_digest_prefix():
    # Athena (Trino): to_hex(md5(to_utf8(s))) is the digest in upper-case hex; lower() makes it md5()'s
    # DuckDB spelling; from_base(prefix, 16) is int(prefix, 16). Both macros must take the same 8 digits.
    macro = (ROOT / "macros" / "split.sql").read_text()
    athena = re.search(r"macro athena__split_bucket.*?endmacro", macro, re.S).group(0)
    duckdb = re.search(r"macro default__split_bucket.*?endmacro", macro, re.S).group(0)
    assert (
        "from_base(substr(lower(to_hex(md5(to_utf8('{{ salt }}' || ':' || cast({{ id_expr }} as varchar))))), 1, 8), 16)"
        in athena
    )
    assert "10000" in athena
    assert "substr(md5('{{ salt }}' || ':' || cast({{ id_expr }} as varchar)), 1, 8)" in duckdb
    assert "% 10000" in duckdb
    digest = hashlib.md5("s:José".encode()).digest()
    assert digest.hex().upper().lower() == hashlib.md5("s:José".encode()).hexdigest()
