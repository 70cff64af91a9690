"""Where the diff in Athena is wired in: only where the deployment can push down, and athena refused elsewhere."""

from __future__ import annotations

from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from sync.app.wiring import build_lake_diff
from sync.core.errors import ConfigError
from sync.dbt.profile import Target
from sync.run.pushdown.lake import LakeDiff

ATHENA = Target("p", "prod", {"type": "athena", "region_name": "eu-west-1", "s3_staging_dir": "s3://b/athena/"})
DUCKDB = Target("p", "local", {"type": "duckdb", "path": "build/x.duckdb"})


def settings(engine: str, state: str = "s3://b/state") -> SimpleNamespace:
    return SimpleNamespace(diff_engine=engine, state=state)


def destination(expires: bool = False) -> SimpleNamespace:
    return SimpleNamespace(refresh_after=object() if expires else None)


@pytest.fixture
def session(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        yield boto3.Session()


@pytest.mark.parametrize("engine", ["auto", "athena"])
def test_an_athena_deployment_with_state_on_s3_gets_the_diff_in_athena(session, engine):
    # Given an Athena target, the state on S3 and a destination whose data does not expire, when wiring a run
    lake = build_lake_diff(ATHENA, settings(engine), destination(), object(), object(), "files", "run-1", session)
    # Then the run may diff in Athena
    assert isinstance(lake, LakeDiff) and lake.run_id == "run-1"


@pytest.mark.parametrize(
    ("target", "state", "expires", "words"),
    [
        pytest.param(DUCKDB, "s3://b/state", False, "does not build on Athena", id="a-local-target"),
        pytest.param(ATHENA, "build/state", False, "not on S3", id="local-state"),
        pytest.param(ATHENA, "s3://b/state", True, "expires", id="customer-profiles"),
    ],
)
def test_where_the_deployment_cannot_push_down_athena_is_refused_and_auto_and_duckdb_diff_on_the_runner(
    session, target, state, expires, words
):
    # Given a deployment that cannot diff in Athena
    args = (target, settings("athena", state), destination(expires), object(), object(), "files", "run-1", session)
    # When diff.engine is athena, then wiring the run is a configuration error naming why
    with pytest.raises(ConfigError, match=words):
        build_lake_diff(*args)
    # And auto or duckdb wire no diff in Athena
    for engine in ("auto", "duckdb"):
        assert (
            build_lake_diff(target, settings(engine, state), destination(expires), None, None, "f", "r", session)
            is None
        )
