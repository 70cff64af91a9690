"""Compiling the project for the athena target, with AWS faked by moto."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

PROJECT = Path(__file__).resolve().parents[2]

ATHENA_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "LAKESEG_ATHENA_STAGING_DIR": "s3://athena-results/lakeseg/",
    "LAKESEG_ATHENA_DATA_DIR": "s3://lake/tables/",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
}


@dataclass
class Compiled:
    parsed: object
    compiled: object
    target: Path  # target path: manifest.json, compiled/

    @property
    def models(self) -> Path:
        return self.target / "compiled" / "lakeseg"


def compile_for_athena(root: Path, project: Path = PROJECT, *extra: str) -> Compiled:
    """`dbt parse` + `dbt compile --target athena` of a project, under moto."""
    profiles = root / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT / "profiles.yml.example", profiles / "profiles.yml")
    old = {k: os.environ.get(k) for k in ATHENA_ENV}
    os.environ.update(ATHENA_ENV)
    try:
        from dbt.cli.main import dbtRunner

        with mock_aws():
            boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="athena-results")
            common = [
                "--project-dir",
                str(project),
                "--profiles-dir",
                str(profiles),
                "--target",
                "athena",
                "--target-path",
                str(root / "target"),
                "--log-path",
                str(root / "logs"),
                *extra,
            ]
            parsed = dbtRunner().invoke(["parse", *common])
            compiled = dbtRunner().invoke(["compile", *common])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Compiled(parsed, compiled, root / "target")


def copy_project(dest: Path) -> Path:
    """A private copy of the dbt project (to break on purpose)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dbt_project.yml",):
        shutil.copy(PROJECT / name, dest / name)
    for folder in ("models", "macros", "tests/dbt"):
        shutil.copytree(PROJECT / folder, dest / folder)
    return dest


@pytest.fixture(scope="session")
def athena_build(tmp_path_factory) -> Compiled:
    """The project as it is, compiled for Athena."""
    return compile_for_athena(tmp_path_factory.mktemp("athena"))
