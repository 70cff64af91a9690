"""One as_of per run: pinned, the local lake's end, or now -- passed to dbt as a var."""

from __future__ import annotations

from datetime import datetime

import pytest
import yaml

from sync.core.errors import ConfigError
from sync.dbt.as_of import as_of_of_invocation, fix_as_of, lake_end, pinned_as_of, with_as_of
from sync.lake.sample_lake import LakeSpec, generate

NOW = datetime(2026, 11, 26, 3, 4, 5, 678901)


def vars_of(args: list[str]) -> dict:
    return yaml.safe_load(args[args.index("--vars") + 1])


def test_unpinned_off_duckdb_is_now_to_the_millisecond_and_passed_to_dbt():
    as_of, args = fix_as_of("athena", ["--select", "seg_x"], now=NOW)
    assert as_of == "2026-11-26 03:04:05.678"
    assert args[:2] == ["--select", "seg_x"]
    assert vars_of(args) == {"as_of": as_of}


def test_pinned_as_of_is_kept_as_given():
    args = ["--vars", '{as_of: "2026-09-01 00:00:00", lookback_days: 30}']
    assert fix_as_of("athena", args, now=NOW) == ("2026-09-01 00:00:00", args)


def test_other_vars_are_kept_when_as_of_is_added():
    as_of, args = fix_as_of("athena", ["--vars", "{lookback_days: 30}"], now=NOW)
    assert vars_of(args) == {"lookback_days": 30, "as_of": as_of}


def test_on_duckdb_it_is_the_local_lakes_latest_arrival(tmp_path):
    generate(tmp_path / "lake", LakeSpec(endpoints=30, events_per_endpoint=4, days=3))
    end = lake_end(tmp_path / "lake")
    assert datetime(2026, 10, 31) <= end < datetime(2026, 11, 1)
    as_of, args = fix_as_of("duckdb", [], now=NOW, lake=tmp_path / "lake")
    assert as_of == end.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    assert vars_of(args) == {"as_of": as_of}


def test_on_duckdb_without_a_lake_it_is_now(tmp_path):
    assert fix_as_of("duckdb", [], now=NOW, lake=tmp_path / "nothing")[0] == "2026-11-26 03:04:05.678"


@pytest.mark.parametrize("bad", ["[1, 2]", "{as_of: [unclosed"], ids=["not-a-mapping", "not-yaml"])
def test_bad_vars_are_refused_naming_them(bad):
    with pytest.raises(ConfigError, match="--vars"):
        pinned_as_of(["--vars", bad])


def test_with_as_of_and_invocation_round_trip():
    args = with_as_of([], "2026-10-31 12:00:00")
    assert as_of_of_invocation({"args": {"vars": vars_of(args)}}) == "2026-10-31 12:00:00"
    assert as_of_of_invocation({"args": {}}) is None
