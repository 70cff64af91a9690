"""The bad-input corpus: one tiny dbt project built once per session on DuckDB,
and a runner for the lakeseg CLI with private settings, state and exports.

Every case asserts the exit code, a message naming the thing (model, column,
rule or settings key), that nothing was sent and that nothing was committed.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from sync.cli import main as cli
from tests.e2e.conftest import PROJECT, Build, dbt_build

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bad_inputs"
QUOTA = 250  # Pinpoint: custom attributes per project
QUOTA_PUSH = "seg_zz_quota_push"


def write_quota_models(project: Path) -> int:
    """Fill the project's custom attributes to exactly Pinpoint's 250 with a ballast segment, then add a
    good, fully tested segment whose 2 attributes push past it (both sort after every other model).
    Returns the number of custom attributes declared in all."""
    declared = len(
        re.findall(
            r"field: (?:Attributes|User\.UserAttributes|Metrics)\.",
            (FIXTURE / "models" / "segments" / "_segments__models.yml").read_text(),
        )
    )
    ballast = QUOTA - declared
    folder = project / "models" / "quota"
    folder.mkdir(parents=True)
    (folder / "seg_zz_quota_ballast.sql").write_text("select 'ep-1' as endpoint_id\n")
    (folder / f"{QUOTA_PUSH}.sql").write_text("select * from (values ('ep-1', 'a', 'b')) t(endpoint_id, p1, p2)\n")
    tests = "[pinpoint_max_length, pinpoint_no_control_chars]"
    lines = [
        "version: 2",
        "",
        "models:",
        "  - name: seg_zz_quota_ballast",
        "    description: Quota ballast (columns declared, not built or tested). One row per endpoint.",
        "    config: {meta: {lakeseg: {exit: keep}}}",
        "    columns:",
        "      - {name: endpoint_id, config: {meta: {lakeseg: {field: Id}}}}",
        *[
            f"      - {{name: b{i:03d}, config: {{meta: {{lakeseg: {{field: Attributes.Ballast{i:03d}}}}}}}}}"
            for i in range(ballast)
        ],
        f"  - name: {QUOTA_PUSH}",
        "    description: A good segment whose 2 attributes take the project past 250. One row per endpoint.",
        "    config: {meta: {lakeseg: {exit: keep}}}",
        "    columns:",
        "      - {name: endpoint_id, config: {meta: {lakeseg: {field: Id}}}, "
        "data_tests: [unique, not_null, pinpoint_max_length, pinpoint_no_control_chars]}",
        f"      - {{name: p1, config: {{meta: {{lakeseg: {{field: Attributes.QuotaPush1}}}}}}, data_tests: {tests}}}",
        f"      - {{name: p2, config: {{meta: {{lakeseg: {{field: Attributes.QuotaPush2}}}}}}, data_tests: {tests}}}",
    ]
    (folder / "_quota__models.yml").write_text("\n".join(lines) + "\n")
    return QUOTA + 2


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad-inputs")


@pytest.fixture(scope="session")
def corpus_profiles(corpus_root) -> Path:
    d = corpus_root / "profiles"
    d.mkdir()
    shutil.copy(PROJECT / "profiles.yml.example", d / "profiles.yml")
    return d


@pytest.fixture(scope="session")
def corpus_project(corpus_root) -> Path:
    project = corpus_root / "project"
    shutil.copytree(FIXTURE, project)
    shutil.copytree(PROJECT / "macros", project / "macros")
    write_quota_models(project)
    return project


@pytest.fixture(scope="session")
def corpus_build(corpus_root, corpus_project, corpus_profiles) -> Build:
    """`dbt build` of the corpus project: good segments pass, the control-character model fails its tests."""
    build = dbt_build(corpus_root, "build", corpus_root / "no-lake", corpus_profiles, project=corpus_project)
    results = json.loads((build.target_path / "run_results.json").read_text())["results"]
    assert any(r["unique_id"] == "model.lakeseg_bad_inputs.seg_ok" and r["status"] == "success" for r in results), (
        build.build_dir / "logs" / "dbt.log"
    ).read_text()[-3000:]
    return build


BASE_SETTINGS = """\
targets:
  local:
    destination: {type: files, path: EXPORTS}
    state: STATE
    work_dir: WORK
"""


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def report(self) -> dict:
        return json.loads(self.stdout)

    def segment(self, name: str) -> dict:
        return {s["segment"]: s for s in self.report()["segments"]}[name]


class Corpus:
    """Runs lakeseg against the corpus build with private settings, state, exports and work dir."""

    def __init__(self, root: Path, project: Path, profiles: Path, build: Build | None):
        self.root, self.project, self.profiles, self.build = root, project, profiles, build
        self.state, self.exports, self.work = root / "state", root / "exports", root / "work"
        self.settings = root / "lakeseg.yml"
        self.write_settings(BASE_SETTINGS)

    def write_settings(self, text: str) -> Path:
        text = (
            text.replace("EXPORTS", str(self.exports)).replace("STATE", str(self.state)).replace("WORK", str(self.work))
        )
        self.settings.write_text(text)
        return self.settings

    def env(self) -> dict:
        build_dir = str(self.build.build_dir) if self.build else str(self.root / "no-build")
        return {"LAKESEG_BUILD_DIR": build_dir, "LAKESEG_TARGET": None, "DBT_TARGET_PATH": None}

    def invoke(
        self,
        *args: str,
        project: Path | None = None,
        target_path: Path | str | None = None,
        settings: bool = True,
        root_args: tuple[str, ...] = (),
    ) -> Outcome:
        command, rest = args[0], list(args[1:])
        shared = ["--project-dir", str(project or self.project), "--profiles-dir", str(self.profiles)]
        if command in ("sync", "plan", "run", "check"):
            tp = target_path if target_path is not None else (self.build.target_path if self.build else None)
            if tp is not None:
                shared += ["--target-path", str(tp)]
        if settings and command in ("sync", "plan", "run", "history", "unlock"):
            shared += ["--settings", str(self.settings)]
        result = CliRunner().invoke(cli, [*root_args, command, *shared, *rest], env=self.env(), catch_exceptions=False)
        return Outcome(result.exit_code, result.stdout, result.stderr)

    def sync(self, *select: str, extra: tuple[str, ...] = (), **kw) -> Outcome:
        args = ["sync", "--json"] + [a for s in select for a in ("--select", s)] + list(extra)
        return self.invoke(*args, **kw)

    # ---- what reached the destination, what was committed -------------------
    def delivered(self) -> set[str]:
        """Segment folders in the export directory (hidden staging excluded)."""
        if not self.exports.exists():
            return set()
        return {p.name for run in self.exports.iterdir() if not run.name.startswith(".") for p in run.iterdir()}

    def pointers(self) -> dict[str, str]:
        """Committed snapshot pointers: segment -> pointer text."""
        base = self.state / "snapshots"
        if not base.exists():
            return {}
        return {p.parent.name: p.read_text() for p in base.rglob("current.json")}

    def assert_nothing_sent(self, segment: str | None = None) -> None:
        delivered = self.delivered()
        if segment is None:
            assert delivered == set(), delivered
        else:
            assert segment not in delivered, delivered

    def assert_nothing_committed(self, segment: str | None = None, before: dict | None = None) -> None:
        now = self.pointers()
        if before is not None:
            keys = [segment] if segment else list(before)
            assert {k: now.get(k) for k in keys} == {k: before.get(k) for k in keys}
        elif segment is None:
            assert now == {}, sorted(now)
        else:
            assert segment not in now, sorted(now)


def no_traceback(outcome: Outcome) -> bool:
    return "Traceback (most recent call last)" not in outcome.output


@pytest.fixture
def corpus(tmp_path, corpus_project, corpus_profiles, corpus_build) -> Corpus:
    """A private state/exports/work for one case, against the built corpus project."""
    return Corpus(tmp_path, corpus_project, corpus_profiles, corpus_build)


@pytest.fixture
def unbuilt(tmp_path, corpus_project, corpus_profiles) -> Corpus:
    """For cases refused before dbt's artifacts are read (settings, options): no build needed."""
    return Corpus(tmp_path, corpus_project, corpus_profiles, None)
