"""Each DUE-reading model reads only its window's ingest partitions (DuckDB's
profiler counts the files its all_events scans open; one file per partition)."""

from __future__ import annotations

import pytest

from benchmarks.partitions import measure

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def reads(lake, tmp_path_factory):
    return {r["model"]: r for r in measure(lake, tmp_path_factory.mktemp("partitions"), "2026-10-31 12:00:00")}


def test_the_24_hour_segment_reads_at_most_3_daily_partitions(reads):
    assert 1 <= reads["seg_active_last_24h"]["partitions_read"] <= 3


@pytest.mark.parametrize(
    "model",
    [
        "seg_active_last_24h",
        "seg_email_opens_30d",
        "seg_email_clickers",
        "seg_unengaged_by_state",
        "stg_due__all_events",
    ],
)
def test_no_model_reads_more_than_its_window_plus_2_days(reads, model):
    row = reads[model]
    assert row["window_days"] is not None, f"{model} has no constant ingest_timestamp bounds"
    assert row["partitions_read"] <= row["window_days"] + 2
    assert row["partitions_read"] < row["partitions_in_lake"]
