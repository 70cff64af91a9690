"""The engine harness on an Athena target with the diff in Athena: moto S3 and Glue, ``ExecutingAthena``.

Each build writes the segment's table as Parquet to moto S3 and registers it in
Glue (database ``segments``, as the manifest says); a run reads it through
``AthenaReader`` over ``ExecutingAthena`` (moto validates and records every
call, DuckDB executes the Athena SQL after sqlglot's transpilation), keeps its
state in an S3 state store, and diffs in Athena (``LakeDiff``) unless told to
diff on the runner (``engine="duckdb"``).
"""

from __future__ import annotations

import json

import boto3
import duckdb

from sync.readers.athena import AthenaReader
from sync.run.engine import RunReport, SyncRun, new_run_id
from sync.run.pushdown.lake import LakeDiff
from sync.state.s3 import S3StateStore
from tests.engine.harness import EngineHarness, Model
from tests.pushdown.athena_double import ExecutingAthena

BUCKET = "lake-bucket"
DATABASE = "segments"
STATE = f"s3://{BUCKET}/lakeseg/state"
STAGING = f"s3://{BUCKET}/lakeseg/athena/"


class LakeHarness(EngineHarness):
    """Segments in a (moto) lake; runs diff them in Athena. Use inside ``mock_aws``."""

    def __init__(self, root):
        super().__init__(root)
        self.s3 = boto3.client("s3")
        self.glue = boto3.client("glue")
        self.athena = ExecutingAthena(boto3.client("athena"), self.glue, self.s3)
        self.s3.create_bucket(Bucket=BUCKET)
        self.glue.create_database(DatabaseInput={"Name": DATABASE})
        self.state = S3StateStore(STATE, self.s3, kms_key_id="alias/lakeseg-state")
        self.readers: list[AthenaReader] = []

    def _write_table(self, model: Model) -> None:
        super()._write_table(model)  # the DuckDB twin reads the same rows
        cols = list(model.columns)
        local = self.root / f"{model.name}.parquet"
        con = duckdb.connect()
        try:
            con.execute(f"create table t ({', '.join(f'{json.dumps(c)} varchar' for c in cols)})")
            if model.rows:
                row = "(" + ", ".join("?" for _ in cols) + ")"
                con.execute(
                    f"insert into t values {', '.join(row for _ in model.rows)}",
                    [None if v is None else str(v) for r in model.rows for v in r],
                )
            con.execute(f"copy t to '{local}' (format parquet)")
        finally:
            con.close()
        prefix = f"lake/{model.name}/"
        for obj in self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []):
            self.s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
        self.s3.upload_file(str(local), BUCKET, f"{prefix}part-0.parquet")
        table = {
            "Name": model.name,
            "TableType": "EXTERNAL_TABLE",
            "StorageDescriptor": {
                "Columns": [{"Name": c.lower(), "Type": "string"} for c in cols],
                "Location": f"s3://{BUCKET}/{prefix}",
            },
        }
        try:
            self.glue.delete_table(DatabaseName=DATABASE, Name=model.name)
        except self.glue.exceptions.EntityNotFoundException:
            pass
        self.glue.create_table(DatabaseName=DATABASE, TableInput=table)

    def lake_run(
        self, *, engine: str = "athena", destination=None, run_id: str | None = None, min_rows: int = 0, **options
    ) -> RunReport:
        """One run on the Athena target, its state on S3; ``engine``: diff.engine (``athena`` or ``duckdb``)."""
        from sync.destinations.files import FilesDestination

        run_id = run_id or new_run_id()
        reader = AthenaReader(self.athena, self.s3, s3_staging_dir=STAGING, sleep=lambda _s: None, run_id=run_id)
        self.readers.append(reader)
        lake = LakeDiff(reader, self.glue, self.state, "files", run_id) if engine != "duckdb" else None
        run = SyncRun(
            artifacts=self.artifacts(),
            reader=reader,
            destination=destination or FilesDestination(self.exports),
            destination_key="files",
            state=self.state,
            options=self.options(diff_engine=engine, pushdown_min_rows=min_rows, **options),
            target="prod",
            work_dir=self.work,
            command="sync",
            run_id=run_id,
            lake=lake,
        )
        return run.execute()

    # --------------------------------------------------------------- read back
    def lake_pointer(self, segment: str) -> dict | None:
        try:
            body = self.s3.get_object(Bucket=BUCKET, Key=f"lakeseg/state/snapshots/files/{segment}/current.json")
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body["Body"].read())

    def keys_under(self, prefix: str) -> list[str]:
        got = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            got.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(got)

    def diff_tables(self) -> list[str]:
        return sorted(
            t["Name"]
            for t in self.glue.get_tables(DatabaseName=DATABASE)["TableList"]
            if t["Name"].startswith("lakeseg_diff_")
        )
