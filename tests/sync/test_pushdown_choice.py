"""When the diff runs in Athena: diff.engine and diff.pushdown_min_rows, decided from the pointer alone, and
where the deployment cannot push down (``pushdown_problem``)."""

from __future__ import annotations

import pytest

from sync.core.errors import ConfigError
from sync.run.pushdown import check_engine, choose_engine, pushdown_problem

CANNOT = "the target does not build on Athena"
CASES = [
    # (id, setting, min rows, why the deployment cannot push down, rows in the committed snapshot, engine)
    ("auto-where-it-cannot-stays-on-duckdb", "auto", 10, CANNOT, 1_000, "duckdb"),
    ("auto-athena-below-threshold", "auto", 10, None, 9, "duckdb"),
    ("auto-athena-at-threshold", "auto", 10, None, 10, "athena"),
    ("auto-athena-first-sync-on-duckdb", "auto", 0, None, None, "duckdb"),
    ("duckdb-always", "duckdb", 0, None, 10**9, "duckdb"),
    ("duckdb-where-it-cannot", "duckdb", 0, CANNOT, 10**9, "duckdb"),
    ("athena-on-athena-small", "athena", 10**9, None, 1, "athena"),
    ("athena-on-athena-first-sync", "athena", 10**9, None, None, "athena"),
]


@pytest.mark.parametrize("setting,min_rows,problem,rows,engine", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_engine_follows_the_setting_the_deployment_and_the_committed_size(setting, min_rows, problem, rows, engine):
    # Given a setting, what the deployment allows and the committed snapshot's size, when choosing, then as expected
    assert choose_engine(setting, min_rows, problem=problem, previous_rows=rows) == engine


@pytest.mark.parametrize(
    ("athena_target", "state_on_s3", "expires", "words"),
    [
        pytest.param(False, True, False, "the target does not build on Athena", id="a-local-target"),
        pytest.param(
            True,
            False,
            False,
            "the state store is not on S3 (Athena reads the committed snapshot where the store keeps it)",
            id="local-state",
        ),
        pytest.param(
            True,
            True,
            True,
            "the destination's data expires (refresh_after): its refreshes need the runner's snapshot",
            id="customer-profiles-refreshes",
        ),
    ],
)
def test_athena_where_the_deployment_cannot_push_down_is_a_configuration_error(
    athena_target, state_on_s3, expires, words
):
    # Given a deployment that cannot diff in Athena
    problem = pushdown_problem(athena_target=athena_target, state_on_s3=state_on_s3, expires=expires)
    # When diff.engine is athena, then the error names the key and the reason; auto and duckdb stay on the runner
    with pytest.raises(ConfigError) as refused:
        check_engine("athena", problem)
    assert str(refused.value) == f"diff.engine is athena, but {words}: use auto or duckdb"
    with pytest.raises(ConfigError, match="^diff.engine is athena, but "):
        choose_engine("athena", 0, problem=problem, previous_rows=10**9)
    assert choose_engine("auto", 0, problem=problem, previous_rows=10**9) == "duckdb"


@pytest.mark.parametrize(
    ("rows", "in_lake", "engine", "threshold"),
    [
        pytest.param(1_000, False, "athena", 1_000, id="at-the-threshold-moves-in"),
        pytest.param(999, False, "duckdb", 1_000, id="below-it-stays-on-the-runner"),
        pytest.param(999, True, "athena", 1_000, id="in-the-lake-stays-just-below"),
        pytest.param(500, True, "athena", 1_000, id="in-the-lake-stays-at-half"),
        pytest.param(499, True, "duckdb", 1_000, id="below-half-moves-out"),
        pytest.param(500, True, "duckdb", 1_001, id="below-an-odd-thresholds-half-moves-out"),
        pytest.param(501, True, "athena", 1_001, id="above-an-odd-thresholds-half-stays"),
    ],
)
def test_auto_moves_a_segment_near_the_threshold_once_not_back_and_forth(rows, in_lake, engine, threshold):
    # Given auto with a threshold (1,000 unless said) and a segment on either side of it
    # When choosing, then a segment in the lake leaves it only below half the threshold
    assert choose_engine("auto", threshold, problem=None, previous_rows=rows, in_lake=in_lake) == engine


def test_a_deployment_that_can_push_down_has_no_problem():
    assert pushdown_problem(athena_target=True, state_on_s3=True, expires=False) is None


def test_an_engine_lakeseg_does_not_have_is_refused_naming_the_choices():
    with pytest.raises(ConfigError) as refused:
        choose_engine("spark", 0, problem=None, previous_rows=1)
    assert str(refused.value) == "diff.engine 'spark': choose one of auto, duckdb, athena"
