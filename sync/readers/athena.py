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
report (``stats_for``: the segment report's ``data_scanned_bytes``, in history
and as the ``DataScannedBytes`` metric).

No query outlives the run that started it: ``StopQueryExecution`` is sent when
the query runs longer than ``timeout_seconds`` (``$LAKESEG_ATHENA_QUERY_TIMEOUT``,
default 3600, measured in wall time on the monotonic clock, however long the
polls themselves take), and on every other way the wait can end early: an
exception, Ctrl-C, or SIGTERM (the CLI turns it into ``Terminated``, see
``sync/core/signals.py``; CodeBuild sends it when a build times out or is
stopped). ``cleanup`` stops any query still running.

A start is idempotent: ``ClientRequestToken`` is derived from the run id and
the segment's table (and so is the UNLOAD prefix), so a retried
``StartQueryExecution`` -- botocore's retry after a lost response, or the
segment staged again in the same run -- gets the query already started instead
of running it twice.

Athena lowercases identifiers, so declared column names are matched
case-insensitively and the declared case is restored in DuckDB.
"""

from __future__ import annotations

import hashlib
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
        raise ConfigError(
            f"LAKESEG_ATHENA_QUERY_TIMEOUT={raw!r}: give the query timeout in seconds (a positive number)"
        )
    return value


class AthenaReader:
    def __init__(
        self,
        athena_client,
        s3_client,
        *,
        s3_staging_dir: str,
        work_group: str | None = None,
        catalog: str = "awsdatacatalog",
        poll_seconds: float = 0.5,
        max_poll_seconds: float = 10.0,
        timeout_seconds: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        run_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
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
        self.run_id = run_id  # with it, starts are idempotent per (run, segment)
        self.clock = clock
        self._running: set[str] = set()  # started and not yet seen to end: stopped by cleanup
        self._last_query: str | None = None
        self._prefixes: list[str] = []
        self._dirs: list[Path] = []
        self.stats: dict[str, dict] = {}  # str(relation) -> {query_id, data_scanned_bytes}
        self._queries: dict[str, dict] = {}

    @classmethod
    def from_profile(cls, target: dict, session, run_id: str | None = None) -> AthenaReader:
        region = target.get("region_name")
        return cls(
            session.client("athena", region_name=region),
            session.client("s3", region_name=region),
            s3_staging_dir=target.get("s3_staging_dir", ""),
            work_group=target.get("work_group"),
            catalog=target.get("database") or "awsdatacatalog",
            poll_seconds=float(target.get("poll_interval", 0.5)),
            timeout_seconds=_timeout_from_env(),
            run_id=run_id,
        )

    # ------------------------------------------------------------------ query
    def request_token(self, relation: RelationRef | str) -> str | None:
        """The ClientRequestToken of a segment's query in this run (64 hex characters), or None without a run id."""
        if not self.run_id:
            return None
        return hashlib.sha256(f"lakeseg:{self.run_id}:{relation}".encode()).hexdigest()

    def run_query(self, sql: str, database: str | None = None, token: str | None = None) -> str:
        """Start a query and wait until it ends; return its id or raise AthenaQueryFailed.

        ``database`` is the query's context database: without one Athena resolves the query in
        ``default``, a database the runner's policy does not grant (RunnerAthenaPolicy). ``token`` is
        its ClientRequestToken. However the wait ends early (timeout, exception, SIGTERM), the query is stopped.
        """
        context = {"Catalog": self.catalog, **({"Database": database} if database else {})}
        args = {
            "QueryString": sql,
            "QueryExecutionContext": context,
            "ResultConfiguration": {"OutputLocation": self.output_location},
        }
        if self.work_group:
            args["WorkGroup"] = self.work_group
        if token:
            args["ClientRequestToken"] = token
        query_id = self.athena.start_query_execution(**args)["QueryExecutionId"]
        self._running.add(query_id)
        self._last_query = query_id
        log.info("athena query %s started", query_id)
        deadline = self.clock() + self.timeout_seconds
        delay = self.poll_seconds
        execution: dict = {}
        try:
            while True:
                execution = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
                self._note_scanned(query_id, execution)
                status = execution["Status"]
                state = status["State"]
                if state in DONE:
                    self._running.discard(query_id)
                    break
                left = deadline - self.clock()
                if left <= 0:
                    raise AthenaQueryFailed(
                        f"Athena query {query_id} did not finish in {self.timeout_seconds:.0f}s (wall time); stopped it"
                    )
                self.sleep(min(delay, left))
                delay = min(delay * 2, self.max_poll_seconds)
        except BaseException as exc:
            log.debug("athena query %s: the wait ended with %r", query_id, exc)  # a message may quote data: debug only
            self._stop(query_id, type(exc).__name__)
            raise
        if state != "SUCCEEDED":
            reason = (
                status.get("StateChangeReason")
                or (status.get("AthenaError") or {}).get("ErrorMessage")
                or "no reason given"
            )
            raise AthenaQueryFailed(
                f"Athena query {query_id} {state}: {reason}",
                public=f"Athena query {query_id} {state} (Athena's reason is in the local log "
                "at debug level and in the Athena console)",
            )
        log.info("athena query %s succeeded, scanned %s bytes", query_id, self._queries[query_id]["data_scanned_bytes"])
        return query_id

    def _note_scanned(self, query_id: str, execution: dict) -> None:
        scanned = (execution.get("Statistics") or {}).get("DataScannedInBytes")
        self._queries[query_id] = {"query_id": query_id, "data_scanned_bytes": scanned}

    def _stop(self, query_id: str, why: str) -> None:
        """StopQueryExecution, best effort: the run is ending anyway, and a failed stop must not hide why."""
        self._running.discard(query_id)
        try:
            self.athena.stop_query_execution(QueryExecutionId=query_id)
            log.warning("stopped athena query %s (%s)", query_id, why)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not stop athena query %s (%s): %s", query_id, why, type(exc).__name__)

    @property
    def output_location(self) -> str:
        return f"s3://{_key(self.bucket, self.base)}/"

    def preflight(self) -> None:
        """Nothing to check before the first query: a workgroup or bucket it cannot use fails that query."""

    def stats_for(self, relation: RelationRef) -> dict | None:
        """The segment's query id and bytes scanned (``data_scanned_bytes``), once its query ran."""
        return self.stats.get(str(relation))

    def notes_for(self, relation: RelationRef) -> list[str]:
        """One line for the run report: the segment's Athena query id and bytes scanned."""
        got = self.stats.get(str(relation))
        if not got:
            return []
        return [f"athena query {got['query_id']} scanned {got['data_scanned_bytes']} bytes"]

    # ----------------------------------------------------------------- reader
    def stage(
        self, con: duckdb.DuckDBPyConnection, relation: RelationRef, columns: Sequence[str], workdir: Path
    ) -> str:
        select = ", ".join(qi(c.lower()) for c in columns)
        table = f"{qi(relation.schema)}.{qi(relation.identifier)}"
        files = self.unload(f"SELECT {select} FROM {table}", relation, workdir / "athena")
        if not files:  # UNLOAD of zero rows writes no file
            cols = ", ".join(f"cast(null as varchar) as {qi(c)}" for c in columns)
            return f"(select {cols} where false)"
        listing = "[" + ", ".join(ql(str(f)) for f in files) + "]"
        actual = [r[0] for r in con.execute(f"describe select * from read_parquet({listing})").fetchall()]
        return f"(select {select_declared(actual, columns, f'{relation} (as unloaded by Athena)')} from read_parquet({listing}))"

    def unload(self, select: str, relation: RelationRef, local: Path, label: str = "lakeseg-unload") -> list[Path]:
        """UNLOAD ``select`` (Athena's SQL) for the segment ``relation`` into a prefix of the staging dir, and
        download the Parquet files to ``local``: their paths (none for zero rows). The prefix and ``local`` go
        at ``cleanup``; the query's id and bytes scanned are the segment's ``stats``."""
        token = self.request_token(f"{label}:{relation}" if label != "lakeseg-unload" else relation)
        # With a run id the prefix is derived like the token: a retried start sends the very same request.
        prefix = _key(self.base, label, f"{self.run_id}-{token[:16]}" if token else self.new_id())
        self._prefixes.append(prefix)
        self._last_query = None
        try:
            self.unload_to(select, f"s3://{self.bucket}/{prefix}/", relation.schema, token)
        finally:  # bytes scanned are billed, and reported, for a failed or stopped query too
            if self._last_query:
                self.stats[str(relation)] = self._queries.get(
                    self._last_query, {"query_id": self._last_query, "data_scanned_bytes": None}
                )
        local.mkdir(parents=True, exist_ok=True)
        self._dirs.append(local)
        files = []
        for n, key in enumerate(self._list(prefix)):
            dest = local / f"part-{n:05d}.parquet"
            self.s3.download_file(self.bucket, key, str(dest))
            files.append(dest)
        return files

    def unload_to(self, select: str, location: str, database: str, token: str | None = None) -> str:
        """UNLOAD ``select`` (Athena's SQL) to Parquet at ``location`` (an empty s3:// folder); the query id."""
        return self.run_query(
            f"UNLOAD ({select}) TO {ql(location)} WITH (format = 'PARQUET', compression = 'SNAPPY')",
            database=database,
            token=token,
        )

    def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + "/"):
            keys.extend(o["Key"] for o in page.get("Contents", []) if o.get("Size", 1) > 0)
        return sorted(keys)

    def cleanup(self) -> None:
        for query_id in sorted(self._running):
            self._stop(query_id, "the run is cleaning up")
        for prefix in self._prefixes:
            keys = self._list(prefix)
            for i in range(0, len(keys), 1000):
                self.s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True}
                )
        self._prefixes.clear()
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._dirs.clear()
