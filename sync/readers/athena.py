"""Reading segments built on Athena.

``stage`` runs ``UNLOAD (SELECT <mapped columns> FROM <table>) TO '<prefix>'
WITH (format = 'PARQUET')`` into a run-specific prefix under the profile's
``s3_staging_dir``, waits for it (polling with backoff), downloads the Parquet
files with boto3 and hands them to DuckDB. Parquet keeps every value exact --
commas, quotes, non-ASCII text -- where Athena's CSV output would not quote.
``cleanup`` deletes the prefix and the local copies; a run killed before
``cleanup`` leaves the prefix to the staging bucket's lifecycle rule (the
stack's bucket expires ``<AthenaStagingPrefix>/`` after a day).

Every query sends ``ResultConfiguration`` (a work group that enforces its own
settings overrides it; one that does not, such as a fresh ``primary``, would
otherwise reject the query). Each segment's query id and bytes scanned
(``DataScannedInBytes``, what Athena bills) are kept in ``stats`` for the run
report. A query that runs longer than ``timeout_seconds``
(``$LAKESEG_ATHENA_QUERY_TIMEOUT``, default 3600) is stopped.

Athena lowercases identifiers, so declared column names are matched
case-insensitively and the declared case is restored in DuckDB.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb

from sync.core.errors import ConfigError, LakesegError
from sync.core.sql import qi, ql
from sync.readers.base import RelationRef, select_declared

log = logging.getLogger(__name__)

DONE = {"SUCCEEDED", "FAILED", "CANCELLED"}


class AthenaQueryFailed(LakesegError):
    """An Athena query ended FAILED or CANCELLED (or timed out)."""

    def __init__(self, message: str, public: str | None = None):
        super().__init__(message)
        self._public = public

    @property
    def public(self) -> str:
        """Athena's reason may quote data (a value it could not cast): history keeps the query id and state."""
        return self._public or str(self)




def _split_s3(url: str) -> tuple[str, str]:
    """(bucket, key prefix) with redundant slashes removed: 's3://b//x/' -> ('b', 'x')."""
    if not url.startswith("s3://"):
        raise ConfigError(f"s3_staging_dir {url!r} is not an s3:// URL")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise ConfigError(f"s3_staging_dir {url!r} names no bucket")
    return bucket, "/".join(part for part in key.split("/") if part)


def _key(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def _timeout_from_env(default: float = 3600.0) -> float:
    raw = os.environ.get("LAKESEG_ATHENA_QUERY_TIMEOUT")
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise ConfigError(f"LAKESEG_ATHENA_QUERY_TIMEOUT={raw!r}: give the query timeout in seconds (a positive number)")
    return value


class AthenaReader:
    def __init__(self, athena_client, s3_client, *, s3_staging_dir: str, work_group: str | None = None,
                 catalog: str = "awsdatacatalog", poll_seconds: float = 0.5, max_poll_seconds: float = 10.0,
                 timeout_seconds: float = 3600.0, sleep: Callable[[float], None] = time.sleep,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex):
        if not s3_staging_dir:
            raise ConfigError("the athena target has no s3_staging_dir (profiles.yml): lakeseg unloads segments there")
        self.athena = athena_client
        self.s3 = s3_client
        self.bucket, base = _split_s3(s3_staging_dir)
        self.base = base
        self.work_group = work_group
        self.catalog = catalog
        self.poll_seconds = poll_seconds
        self.max_poll_seconds = max_poll_seconds
        self.timeout_seconds = timeout_seconds
        self.sleep = sleep
        self.new_id = new_id
        self._prefixes: list[str] = []
        self._dirs: list[Path] = []
        self.stats: dict[str, dict] = {}  # str(relation) -> {query_id, data_scanned_bytes}
        self._queries: dict[str, dict] = {}

    @classmethod
    def from_profile(cls, target: dict, session) -> AthenaReader:
        region = target.get("region_name")
        return cls(
            session.client("athena", region_name=region), session.client("s3", region_name=region),
            s3_staging_dir=target.get("s3_staging_dir", ""), work_group=target.get("work_group"),
            catalog=target.get("database") or "awsdatacatalog",
            poll_seconds=float(target.get("poll_interval", 0.5)), timeout_seconds=_timeout_from_env(),
        )

    # ------------------------------------------------------------------ query
    def run_query(self, sql: str, database: str | None = None) -> str:
        """Start a query and wait until it ends; return its id or raise AthenaQueryFailed.

        ``database`` is the query's context database: without one Athena resolves the query in
        ``default``, a database the runner's policy does not grant (RunnerAthenaPolicy).
        """
        context = {"Catalog": self.catalog, **({"Database": database} if database else {})}
        args = {"QueryString": sql, "QueryExecutionContext": context,
                "ResultConfiguration": {"OutputLocation": self.output_location}}
        if self.work_group:
            args["WorkGroup"] = self.work_group
        query_id = self.athena.start_query_execution(**args)["QueryExecutionId"]
        log.info("athena query %s started", query_id)
        waited, delay = 0.0, self.poll_seconds
        while True:
            execution = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            status = execution["Status"]
            state = status["State"]
            if state in DONE:
                break
            if waited >= self.timeout_seconds:
                self.athena.stop_query_execution(QueryExecutionId=query_id)
                raise AthenaQueryFailed(f"Athena query {query_id} did not finish in {self.timeout_seconds:.0f}s; stopped it")
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, self.max_poll_seconds)
        if state != "SUCCEEDED":
            reason = status.get("StateChangeReason") or (status.get("AthenaError") or {}).get("ErrorMessage") or "no reason given"
            raise AthenaQueryFailed(f"Athena query {query_id} {state}: {reason}",
                                    public=f"Athena query {query_id} {state} (Athena's reason is in the local log "
                                           "at debug level and in the Athena console)")
        scanned = (execution.get("Statistics") or {}).get("DataScannedInBytes")
        self._queries[query_id] = {"query_id": query_id, "data_scanned_bytes": scanned}
        log.info("athena query %s succeeded, scanned %s bytes", query_id, scanned)
        return query_id

    @property
    def output_location(self) -> str:
        return f"s3://{_key(self.bucket, self.base)}/"

    def notes_for(self, relation: RelationRef) -> list[str]:
        """One line for the run report: the segment's Athena query id and bytes scanned."""
        got = self.stats.get(str(relation))
        if not got:
            return []
        return [f"athena query {got['query_id']} scanned {got['data_scanned_bytes']} bytes"]

    # ----------------------------------------------------------------- reader
    def stage(self, con: duckdb.DuckDBPyConnection, relation: RelationRef, columns: Sequence[str],
              workdir: Path) -> str:
        prefix = _key(self.base, "lakeseg-unload", self.new_id())
        self._prefixes.append(prefix)
        select = ", ".join(qi(c.lower()) for c in columns)
        table = f"{qi(relation.schema)}.{qi(relation.identifier)}"
        query_id = self.run_query(f"UNLOAD (SELECT {select} FROM {table}) TO {ql(f's3://{self.bucket}/{prefix}/')} "
                                  "WITH (format = 'PARQUET', compression = 'SNAPPY')", database=relation.schema)
        self.stats[str(relation)] = self._queries.get(query_id, {"query_id": query_id, "data_scanned_bytes": None})
        local = Path(workdir) / "athena"
        local.mkdir(parents=True, exist_ok=True)
        self._dirs.append(local)
        files = []
        for n, key in enumerate(self._list(prefix)):
            dest = local / f"part-{n:05d}.parquet"
            self.s3.download_file(self.bucket, key, str(dest))
            files.append(dest)
        if not files:  # UNLOAD of zero rows writes no file
            cols = ", ".join(f"cast(null as varchar) as {qi(c)}" for c in columns)
            return f"(select {cols} where false)"
        listing = "[" + ", ".join(ql(str(f)) for f in files) + "]"
        actual = [r[0] for r in con.execute(f"describe select * from read_parquet({listing})").fetchall()]
        return f"(select {select_declared(actual, columns, f'{relation} (as unloaded by Athena)')} from read_parquet({listing}))"

    def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + "/"):
            keys.extend(o["Key"] for o in page.get("Contents", []) if o.get("Size", 1) > 0)
        return sorted(keys)

    def cleanup(self) -> None:
        for prefix in self._prefixes:
            keys = self._list(prefix)
            for i in range(0, len(keys), 1000):
                self.s3.delete_objects(Bucket=self.bucket,
                                       Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
        self._prefixes.clear()
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._dirs.clear()
