"""An in-process harness for the sync engine: no dbt, no subprocess.

It writes segment tables straight into a DuckDB file and the two dbt
artifacts the engine reads (``manifest.json`` nodes with the segment contract,
``run_results.json`` statuses) as dicts, then runs ``SyncRun`` with the
DuckDB reader, a local state store and the files destination (or any
destination a test passes). A run takes a fraction of a second, so the
engine's guarantees can be tested case by case -- and mutation testing can
afford to run these tests against every mutant.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from sync.core.fields import ID_FIELD
from sync.dbt.artifacts import Artifacts
from sync.dbt.check import REQUIRED_ID_TESTS, REQUIRED_VALUE_TESTS
from sync.destinations.base import DeliveryResult, JobRecord
from sync.destinations.files import FilesDestination
from sync.readers.duckdb import DuckDBReader
from sync.run.digest_key import DigestKey
from sync.run.engine import RunReport, SyncOptions, SyncRun
from sync.state import open_state_store

PROJECT = "lakeseg_engine"
KEY = DigestKey(secret="engine-test-key-0123456789abcdef", source="test")


@dataclass
class Model:
    name: str
    columns: dict[str, str]  # column -> Pinpoint field, Id first
    rows: list[tuple]
    exit: object = "keep"
    test_status: dict[tuple[str, str], str] = field(default_factory=dict)  # (rule, column) -> status
    status: str | None = "success"  # None: the latest dbt invocation did not build it (`dbt build --select` others)
    extra_meta: dict = field(default_factory=dict)
    dbt_message: str = "boom"  # dbt's message for a model or test that did not succeed
    test_kwargs: dict[tuple[str, str], dict] = field(default_factory=dict)  # (rule, column) -> the test's settings

    @property
    def unique_id(self) -> str:
        return f"model.{PROJECT}.{self.name}"

    @property
    def tests(self) -> dict[tuple[str, str], str]:
        """The tests the contract requires, each ``pass`` unless ``test_status`` says otherwise."""
        out = {}
        for column, field_name in self.columns.items():
            rules = (REQUIRED_ID_TESTS if field_name == ID_FIELD else ()) + REQUIRED_VALUE_TESTS
            out.update({(rule, column): "pass" for rule in rules})
        return {**out, **self.test_status}

    def test_id(self, rule: str, column: str) -> str:
        return f"test.{PROJECT}.{rule}_{self.name}_{column}"


class EngineHarness:
    """One project: segment models, a DuckDB build, local state and exports."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.database = self.root / "build" / "lakeseg.duckdb"
        self.target = self.root / "target"
        self.state_dir = self.root / "state"
        self.exports = self.root / "exports"
        self.work = self.root / "work"
        self.models: dict[str, Model] = {}
        self._duck: duckdb.DuckDBPyConnection | None = None
        self.database.parent.mkdir(parents=True, exist_ok=True)
        self.target.mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------------- build
    def segment(self, name: str, columns: dict[str, str], rows: list[tuple], **kw) -> Model:
        """Declare a segment model and build its table with ``rows``."""
        model = Model(name, dict(columns), list(rows), **kw)
        self.models[name] = model
        self._write_table(model)
        return model

    def rebuild(self, name: str, rows: list[tuple] | None = None, **changes) -> Model:
        """The next `dbt build`: new rows and/or a changed contract or status."""
        model = self.models[name]
        if rows is not None:
            model.rows = list(rows)
        for k, v in changes.items():
            setattr(model, k, v)
        self._write_table(model)
        return model

    def _write_table(self, model: Model) -> None:
        """(Re)build the model's table in the database file, which is closed again afterwards (as dbt leaves it).

        One in-memory DuckDB per harness attaches the file for each build: a new DuckDB instance costs
        about 25 ms on this machine (its catalog), an attach a fraction of that, and every test builds tables.
        """
        cols = list(model.columns)
        if self._duck is None:
            self._duck = duckdb.connect()
        con = self._duck
        con.execute(f"attach '{self.database}' as build")
        try:
            con.execute("create schema if not exists build.segments")
            con.execute(f'drop table if exists build.segments."{model.name}"')
            column_list = ", ".join(f'"{c}" varchar' for c in cols)
            con.execute(f'create table build.segments."{model.name}" ({column_list})')
            if model.rows:
                # One multi-row insert: several times faster than executemany.
                row = "(" + ", ".join("?" for _ in cols) + ")"
                con.execute(
                    f'insert into build.segments."{model.name}" values {", ".join(row for _ in model.rows)}',
                    [None if v is None else str(v) for r in model.rows for v in r],
                )
        finally:
            con.execute("detach build")

    # ------------------------------------------------------------- artifacts
    def manifest(self) -> dict:
        nodes = {}
        for m in self.models.values():
            meta = {"lakeseg": {"exit": m.exit, **m.extra_meta}}
            nodes[m.unique_id] = {
                "unique_id": m.unique_id,
                "resource_type": "model",
                "name": m.name,
                "alias": m.name,
                "database": "lakeseg",
                "schema": "segments",
                "package_name": PROJECT,
                "path": f"segments/{m.name}.sql",
                "original_file_path": f"models/segments/{m.name}.sql",
                "config": {"materialized": "table", "meta": meta},
                "meta": meta,
                "tags": [],
                "columns": {
                    c: {"name": c, "meta": {"lakeseg": {"field": f}}, "config": {"meta": {"lakeseg": {"field": f}}}}
                    for c, f in m.columns.items()
                },
            }
            for rule, column in m.tests:
                tid = m.test_id(rule, column)
                nodes[tid] = {
                    "unique_id": tid,
                    "resource_type": "test",
                    "name": f"{rule}_{m.name}_{column}",
                    "attached_node": m.unique_id,
                    "column_name": column,
                    "test_metadata": {
                        "name": rule,
                        "kwargs": {"column_name": column, **m.test_kwargs.get((rule, column), {})},
                    },
                    "depends_on": {"nodes": [m.unique_id]},
                }
        return {
            "metadata": {
                "invocation_id": "inv-1",
                "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
            },
            "nodes": nodes,
        }

    def run_results(self) -> dict:
        results = []
        for m in self.models.values():
            if m.status is None:
                continue
            results.append(
                {
                    "unique_id": m.unique_id,
                    "status": m.status,
                    "message": None if m.status == "success" else m.dbt_message,
                }
            )
            for (rule, column), status in m.tests.items():
                if status is not None:  # None: the test did not run in this invocation
                    results.append(
                        {
                            "unique_id": m.test_id(rule, column),
                            "status": status,
                            "failures": 0 if status == "pass" else 3,
                            "message": None if status == "pass" else m.dbt_message,
                        }
                    )
        return {"metadata": {"invocation_id": "inv-1"}, "results": results, "args": {}}

    def artifacts(self) -> Artifacts:
        manifest, run_results = self.manifest(), self.run_results()
        (self.target / "manifest.json").write_text(json.dumps(manifest))
        (self.target / "run_results.json").write_text(json.dumps(run_results))
        return Artifacts(self.target, manifest, run_results)

    # ------------------------------------------------------------------- run
    def options(self, **kw) -> SyncOptions:
        return SyncOptions(**{"digest_key": KEY, "memory_limit": "256MB", **kw})

    def run(
        self,
        *,
        destination=None,
        state=None,
        command: str = "sync",
        progress=None,
        imports_table=None,
        clock=None,
        reader=None,
        lease=None,
        **options,
    ) -> RunReport:
        run = SyncRun(
            artifacts=self.artifacts(),
            reader=reader or DuckDBReader(self.database),
            destination=destination or FilesDestination(self.exports),
            destination_key="files",
            state=state or open_state_store(str(self.state_dir)),
            options=self.options(**options),
            target="local",
            work_dir=self.work,
            command=command,
            progress=progress,
            clock=clock,
            run_id=lease.run_id if lease is not None else None,
            lease=lease,
            imports_table=imports_table,
        )
        return run.execute()

    # --------------------------------------------------------------- read back
    def run_folder(self, report: RunReport) -> Path:
        """The run's work folder: named after the run and its owner (``<run_id>.<pid>@<host>``)."""
        from sync.core import owners

        return self.work / f"{report.run_id}.{owners.tag()}"

    def pointer(self, segment: str) -> dict | None:
        """The committed snapshot's pointer in the local state (run id, fields, rows, quarantine), or None."""
        path = self.state_dir / "snapshots" / "files" / segment / "current.json"
        return json.loads(path.read_text()) if path.exists() else None

    def delivered(self, report: RunReport, segment: str) -> list[dict]:
        """The rows the files destination received for ``segment`` in ``report``'s run."""
        folder = self.exports / report.run_id / segment
        rows: list[dict] = []
        for part in sorted(folder.glob("part-*.csv")):
            with part.open(newline="", encoding="utf-8") as f:
                rows.extend(csv.DictReader(f, strict=True))
        return rows


def by_segment(report: RunReport) -> dict:
    return {s.segment: s for s in report.segments}


class Scripted(FilesDestination):
    """The files destination with a scripted verdict: confirm, refuse, reject some rows, or raise."""

    def __init__(self, path, verdict="confirm", rejected=None, check=None):
        super().__init__(path)
        self.verdict, self.rejected, self.check = verdict, dict(rejected or {}), check
        self.deliveries = []

    def deliver(self, delivery, progress=None):
        self.deliveries.append(delivery)
        if self.check:
            self.check(delivery)
        if self.verdict == "raise":
            raise RuntimeError("connection reset")
        result = super().deliver(delivery, progress)
        if self.verdict == "unconfirmed":
            return DeliveryResult(
                confirmed=False,
                errors=["import job FAILED"],
                jobs=[JobRecord("job-1", "FAILED", 3, 3)],
                location=result.location,
            )
        return DeliveryResult(
            confirmed=True,
            rejected=self.rejected,
            location=result.location,
            jobs=[JobRecord("job-1", "COMPLETED", 3, len(self.rejected))],
        )
