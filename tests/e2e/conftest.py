"""End-to-end fixtures: a small sample lake, real `dbt build`s on DuckDB, and
helpers to run the lakeseg CLI against them with private state and exports."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from sync.cli import main as cli
from sync.lake.sample_lake import LakeSpec, generate

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class Build:
    """One `dbt build` of the real project over the small lake."""

    name: str
    build_dir: Path  # holds lakeseg.duckdb
    target_path: Path
    ok: bool

    def env(self) -> dict:
        return {"LAKESEG_BUILD_DIR": str(self.build_dir)}

    def results(self) -> list[dict]:
        """The results of dbt's run_results.json."""
        return json.loads((self.target_path / "run_results.json").read_text())["results"]


def dbt_build(root: Path, name: str, lake: Path, profiles: Path, *extra: str, project: Path = PROJECT) -> Build:
    build_dir = root / name
    build_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "LAKESEG_LAKE_PATH": str(lake),
        "LAKESEG_BUILD_DIR": str(build_dir),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    env.pop("DBT_TARGET_PATH", None)
    proc = subprocess.run(
        [
            str(BIN / "dbt"),
            "build",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(profiles),
            "--target-path",
            str(build_dir / "target"),
            "--log-path",
            str(build_dir / "logs"),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return Build(name, build_dir, build_dir / "target", proc.returncode == 0)


@pytest.fixture(scope="session")
def e2e_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def profiles_dir(e2e_root) -> Path:
    d = e2e_root / "profiles"
    d.mkdir()
    shutil.copy(PROJECT / "profiles.yml.example", d / "profiles.yml")
    return d


@pytest.fixture(scope="session")
def lake(e2e_root) -> Path:
    path = e2e_root / "lake"
    generate(path, LakeSpec(endpoints=3000))
    return path


@pytest.fixture(scope="session")
def build_now(e2e_root, lake, profiles_dir) -> Build:
    """The project built with as_of = the lake's end."""
    b = dbt_build(e2e_root, "now", lake, profiles_dir)
    assert b.ok, (b.build_dir / "logs" / "dbt.log").read_text()[-3000:]
    return b


@pytest.fixture(scope="session")
def build_later(e2e_root, lake, profiles_dir) -> Build:
    """Built again 12 hours earlier than the lake's end: some members enter, change and exit."""
    b = dbt_build(e2e_root, "later", lake, profiles_dir, "--vars", '{as_of: "2026-10-31 12:00:00"}')
    assert b.ok
    return b


class Lakeseg:
    """Runs the lakeseg CLI with private state and export directories."""

    def __init__(self, root: Path, profiles: Path):
        self.root = root
        self.profiles = profiles
        self.state = root / "state"
        self.exports = root / "exports"
        self.work = root / "work"
        self.report = root / "report" / "index.html"

    def env(self, build: Build) -> dict:
        return {
            **build.env(),
            "LAKESEG_STATE_DIR": str(self.state),
            "LAKESEG_EXPORT_DIR": str(self.exports),
            "LAKESEG_WORK_DIR": str(self.work),
            "LAKESEG_REPORT_PATH": str(self.report),
        }

    def args(self, build: Build, command: str = "sync") -> list[str]:
        args = ["--project-dir", str(PROJECT), "--profiles-dir", str(self.profiles)]
        if command not in ("history", "unlock", "report"):
            args += ["--target-path", str(build.target_path)]
        return args

    def __call__(self, command: str, build: Build, *extra: str):
        result = CliRunner().invoke(
            cli, [command, *self.args(build, command), *extra], env=self.env(build), catch_exceptions=False
        )
        return result

    def json(self, command: str, build: Build, *extra: str) -> tuple[int, dict]:
        result = self(command, build, "--json", *extra)
        return result.exit_code, json.loads(result.stdout)

    def subprocess(self, command: str, build: Build, *extra: str, env: dict | None = None):
        return subprocess.run(
            [str(BIN / "lakeseg"), command, *self.args(build), *extra],
            env={**os.environ, **self.env(build), **(env or {})},
            capture_output=True,
            text=True,
            check=False,
        )

    def deliveries(self) -> list[Path]:
        """Delivered segment folders, oldest run first."""
        if not self.exports.exists():
            return []
        return sorted(
            p for run in sorted(self.exports.iterdir()) if not run.name.startswith(".") for p in run.iterdir()
        )

    def applied(self) -> dict[str, dict[str, str]]:
        """Replay every delivered import file in run order: the platform's endpoint state."""
        endpoints: dict[str, dict[str, str]] = {}
        for folder in self.deliveries():
            for f in sorted(folder.glob("part-*.csv")):
                with f.open(newline="", encoding="utf-8") as fh:
                    for row in csv.DictReader(fh):
                        endpoints.setdefault(row["Id"], {}).update({k: v for k, v in row.items() if k != "Id"})
        return endpoints


@pytest.fixture
def lakeseg(tmp_path, profiles_dir) -> Lakeseg:
    return Lakeseg(tmp_path, profiles_dir)
