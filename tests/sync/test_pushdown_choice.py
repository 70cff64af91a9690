"""When the diff runs in Athena: diff.engine and diff.pushdown_min_rows, decided from the pointer alone.

The decision is pinned with the pushdown available (``available=True``), as it will be once the runner calls
it; until then ``athena`` is refused and ``auto`` stays on DuckDB (the last tests).
"""

from __future__ import annotations

import pytest

from sync.core.errors import ConfigError
from sync.run.pushdown import choose_engine

CASES = [
    # (id, setting, min rows, athena target, rows in the committed snapshot, engine)
    ("auto-local-target-stays-on-duckdb", "auto", 10, False, 1_000, "duckdb"),
    ("auto-athena-below-threshold", "auto", 10, True, 9, "duckdb"),
    ("auto-athena-at-threshold", "auto", 10, True, 10, "athena"),
    ("auto-athena-first-sync-on-duckdb", "auto", 0, True, None, "duckdb"),
    ("duckdb-always", "duckdb", 0, True, 10**9, "duckdb"),
    ("athena-on-athena-small", "athena", 10**9, True, 1, "athena"),
    ("athena-on-athena-first-sync", "athena", 10**9, True, None, "athena"),
]


@pytest.mark.parametrize("setting,min_rows,athena,rows,engine", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_engine_follows_the_setting_the_target_and_the_committed_size(setting, min_rows, athena, rows, engine):
    # Given a setting, a target and the committed snapshot's size, when choosing, then the engine is as expected
    assert choose_engine(setting, min_rows, athena_target=athena, previous_rows=rows, available=True) == engine


def test_athena_on_a_target_that_does_not_build_on_athena_is_a_configuration_error():
    # Given diff.engine athena on the local target, when choosing, then the error names the key
    with pytest.raises(ConfigError, match="diff.engine is athena"):
        choose_engine("athena", 0, athena_target=False, previous_rows=5, available=True)


def test_while_the_pushdown_is_not_wired_in_athena_is_refused_rather_than_ignored():
    # Given diff.engine athena on an Athena target, and a runner that cannot push down yet
    # When choosing, then it is a configuration error that says so (never a setting that silently does nothing)
    with pytest.raises(ConfigError, match="not available yet"):
        choose_engine("athena", 0, athena_target=True, previous_rows=10**9)


def test_while_the_pushdown_is_not_wired_in_auto_stays_on_duckdb():
    # Given auto on an Athena target with a committed snapshot far above the threshold
    # When choosing with the runner as it is, then the diff stays on DuckDB
    assert choose_engine("auto", 10, athena_target=True, previous_rows=10**9) == "duckdb"
