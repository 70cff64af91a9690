"""An Athena that executes its SQL: moto records the calls, DuckDB computes the answers.

moto's Athena accepts StartQueryExecution and answers SUCCEEDED without running
anything. ``ExecutingAthena`` wraps a moto client: each query is started in
moto (so the request is validated against botocore's model and recorded), then
its text is executed here: ``UNLOAD (<select>) TO 's3://...'`` is split, the
select transpiled with ``sqlglot.transpile(sql, read="athena", write="duckdb")``,
every Glue table it names read from moto S3 the way Athena reads a location
(every object under it but names starting with ``_`` or ``.``, with a
``"$path"`` column), and the result written back to moto S3 as Parquet. Trino's
functions DuckDB lacks (xxhash64, hmac_sha256, from_big_endian_64, substr of
varbinary) are Python UDFs with Trino's semantics.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import shutil
import struct
import tempfile
import uuid
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp

_UNLOAD = re.compile(r"^\s*UNLOAD\s*\((?P<select>.*)\)\s*TO\s*'(?P<to>s3://[^']+)'\s*WITH\s*\(.*\)\s*$", re.S | re.I)
_WRITERS = 2  # an UNLOAD's rows are split over this many files (fewer rows: a file each)
_TYPES = {"string": "varchar", "bigint": "bigint", "boolean": "boolean", "binary": "blob", "int": "integer"}
_M64 = (1 << 64) - 1
_P1, _P2, _P3, _P4, _P5 = (
    11400714785074694791,
    14029467366897019727,
    1609587929392839161,
    9650029242287828579,
    2870177450012600261,
)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _M64, 31) * _P1) & _M64


def xxhash64(data: bytes, seed: int = 0) -> int:
    """XXH64, as Trino's xxhash64 computes it (seed 0)."""
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M64, (seed + _P2) & _M64, seed, (seed - _P1) & _M64]
        while i + 32 <= n:
            for j in range(4):
                v[j] = _round(v[j], struct.unpack_from("<Q", data, i + 8 * j)[0])
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M64
        for lane in v:
            h = (((h ^ _round(0, lane)) * _P1) + _P4) & _M64
    else:
        h = (seed + _P5) & _M64
    h = (h + n) & _M64
    while i + 8 <= n:
        h = ((_rotl(h ^ _round(0, struct.unpack_from("<Q", data, i)[0]), 27) * _P1) + _P4) & _M64
        i += 8
    if i + 4 <= n:
        h = ((_rotl(h ^ (struct.unpack_from("<I", data, i)[0] * _P1 & _M64), 23) * _P2) + _P3) & _M64
        i += 4
    while i < n:
        h = (_rotl(h ^ (data[i] * _P5 & _M64), 11) * _P1) & _M64
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M64
    h ^= h >> 29
    h = (h * _P3) & _M64
    return h ^ (h >> 32)


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.create_function("xxhash64", lambda b: struct.pack(">Q", xxhash64(bytes(b))), ["BLOB"], "BLOB")
    con.create_function(
        "hmac_sha256", lambda b, k: hmac.new(bytes(k), bytes(b), hashlib.sha256).digest(), ["BLOB", "BLOB"], "BLOB"
    )
    con.create_function("from_big_endian_64", _from_big_endian_64, ["BLOB"], "BIGINT")
    con.create_function(
        "varbinary_substr", lambda b, s, n: bytes(b)[s - 1 : s - 1 + n], ["BLOB", "BIGINT", "BIGINT"], "BLOB"
    )
    return con


def _from_big_endian_64(b: bytes) -> int:
    b = bytes(b)
    if len(b) != 8:
        raise ValueError("from_big_endian_64: expected 8 bytes")  # as Trino: INVALID_FUNCTION_ARGUMENT
    return struct.unpack(">q", b)[0]


def _binary_substr(node: exp.Expression) -> exp.Expression:
    """Trino's substr of a varbinary (here: of hmac_sha256's result) as the UDF DuckDB has for it."""
    if isinstance(node, exp.Substring) and isinstance(node.this, exp.Anonymous):
        if node.this.name.lower() in ("hmac_sha256", "xxhash64"):
            return exp.Anonymous(
                this="varbinary_substr", expressions=[node.this, node.args["start"], node.args["length"]]
            )
    return node


def _to_duckdb(select: str) -> exp.Expression:
    """An Athena SELECT as the tree DuckDB runs (its dialect, with the UDFs above for Trino's functions)."""
    return sqlglot.parse_one(select, read="athena").transform(_binary_substr)


def evaluate(select: str) -> list[tuple]:
    """The rows of a SELECT that reads no table (Athena's dialect), computed as ``ExecutingAthena`` computes them."""
    con = _connect()
    try:
        return con.execute(_to_duckdb(select).sql(dialect="duckdb")).fetchall()
    finally:
        con.close()


class ExecutingAthena:
    """Wraps a moto Athena client; ``glue`` and ``s3`` are moto clients of the same account."""

    def __init__(self, athena, glue, s3):
        self._athena, self.glue, self.s3 = athena, glue, s3
        self.exceptions = athena.exceptions
        self.executed: list[str] = []  # the Athena SQL of every query, in order
        self.databases: list[str | None] = []  # each query's context database (None: Athena's `default`)
        self.stopped: list[str] = []
        self.fail_next: str | None = None  # a state to end the next query in (FAILED, CANCELLED)
        self.hang = False  # queries stay RUNNING until stopped
        # botocore checks a string's least length only; Athena refuses a query over the model's greatest too
        shape = athena.meta.service_model.operation_model("StartQueryExecution").input_shape
        self._max_query = shape.members["QueryString"].metadata["max"]
        self._states: dict[str, str] = {}
        self._scanned: dict[str, int] = {}

    def __getattr__(self, name):
        return getattr(self._athena, name)

    def start_query_execution(self, **kwargs):
        if len(kwargs["QueryString"]) > self._max_query:
            error = {"Code": "InvalidRequestException", "Message": f"query longer than {self._max_query} characters"}
            raise self.exceptions.InvalidRequestException(
                {"Error": error},
                "StartQueryExecution",
            )
        got = self._athena.start_query_execution(**kwargs)
        qid = got["QueryExecutionId"]
        sql = kwargs["QueryString"]
        self.executed.append(sql)
        self.databases.append(kwargs.get("QueryExecutionContext", {}).get("Database"))
        if self.hang:
            self._states[qid] = "RUNNING"
        elif self.fail_next:
            self._states[qid], self.fail_next = self.fail_next, None
        else:
            self._scanned[qid] = self.execute(sql)
            self._states[qid] = "SUCCEEDED"
        return got

    def get_query_execution(self, QueryExecutionId):
        got = self._athena.get_query_execution(QueryExecutionId=QueryExecutionId)
        got["QueryExecution"]["Status"]["State"] = self._states.get(QueryExecutionId, "SUCCEEDED")
        got["QueryExecution"].setdefault("Statistics", {})["DataScannedInBytes"] = self._scanned.get(
            QueryExecutionId, 0
        )
        return got

    def stop_query_execution(self, QueryExecutionId):
        self.stopped.append(QueryExecutionId)
        self._states[QueryExecutionId] = "CANCELLED"
        return self._athena.stop_query_execution(QueryExecutionId=QueryExecutionId)

    def unload_targets(self, since: int = 0) -> list[str]:
        """The S3 folders the UNLOADs run since the ``since``-th query wrote to, in order."""
        return [m["to"] for q in self.executed[since:] if (m := _UNLOAD.match(q))]

    # ------------------------------------------------------------------ execution
    def execute(self, sql: str) -> int:
        """Run ``sql`` (an UNLOAD); returns the bytes read, as Athena's DataScannedInBytes counts them roughly."""
        m = _UNLOAD.match(sql)
        if not m:
            raise AssertionError(f"the double runs UNLOAD statements only: {sql[:80]}")
        tree = _to_duckdb(m["select"])
        select = tree.sql(dialect="duckdb")
        tmp = Path(tempfile.mkdtemp(prefix="athena-double-"))
        con = _connect()
        scanned = 0
        try:
            seen = set()
            # Trino prunes a table's files by its "$path" predicates before it opens any (the Hive connector's
            # split loader): a query that filters on "$path" reads only the files it names.
            named = (
                {lit.this for lit in tree.find_all(exp.Literal) if lit.is_string and lit.this.startswith("s3://")}
                if '"$path"' in m["select"]
                else None
            )
            for table in tree.find_all(exp.Table):
                if table.db and (table.db, table.name) not in seen:
                    seen.add((table.db, table.name))
                    scanned += self._register(con, table.db, table.name, tmp, named)
            out = tmp / "out.parquet"
            con.execute(f"copy ({select}) to '{out}' (format parquet)")
            rows = con.execute(f"select count(*) from read_parquet('{out}')").fetchall()[0][0]
            bucket, _, prefix = m["to"][5:].partition("/")
            # Athena's writers each write a file of their share of the rows (none for no rows at all)
            parts = min(_WRITERS, rows)
            for n in range(parts):
                part = tmp / f"part-{n}.parquet"
                con.execute(
                    f"copy (select * exclude (_n) from (select *, row_number() over () as _n "
                    f"from read_parquet('{out}')) where _n % {parts} = {n}) to '{part}' (format parquet)"
                )
                self.s3.upload_file(str(part), bucket, f"{prefix.rstrip('/')}/{uuid.uuid4().hex}.parquet")
        finally:
            con.close()
            shutil.rmtree(tmp, ignore_errors=True)
        return scanned

    def _register(self, con, database: str, name: str, tmp: Path, named: set[str] | None = None) -> int:
        table = self.glue.get_table(DatabaseName=database, Name=name)["Table"]
        sd = table["StorageDescriptor"]
        bucket, _, prefix = sd["Location"][5:].partition("/")
        # A table the query filters by "$path" (it names files under the table's location) reads those alone.
        pruned = {n for n in named if n.startswith(sd["Location"])} if named else None
        pruned = pruned or None
        files, scanned = [], 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                leaf = obj["Key"].rsplit("/", 1)[-1]
                if leaf.startswith(("_", ".")) or any(
                    p.startswith(("_", ".")) for p in obj["Key"][len(prefix) :].split("/")
                ):
                    continue
                if pruned is not None and f"s3://{bucket}/{obj['Key']}" not in pruned:
                    continue
                local = tmp / "s3" / bucket / obj["Key"]
                local.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(bucket, obj["Key"], str(local))
                files.append(local)
                scanned += obj["Size"]
        con.execute(f'create schema if not exists "{database}"')
        cols = [(c["Name"], _TYPES[c["Type"]]) for c in sd["Columns"]]
        if not files:
            body = (
                ", ".join(f'cast(null as {t}) as "{n}"' for n, t in cols)
                + ', cast(null as varchar) as "$path" where false'
            )
            con.execute(f'create view "{database}"."{name}" as select {body}')
            return 0
        listing = "[" + ", ".join(f"'{f}'" for f in files) + "]"
        found = {
            r[0].lower()
            for r in con.execute(f"describe select * from read_parquet({listing}, union_by_name=true)").fetchall()
        }
        picked = ", ".join(
            f'cast("{n}" as {t}) as "{n}"' if n in found else f'cast(null as {t}) as "{n}"' for n, t in cols
        )
        root = str(tmp / "s3") + "/"
        con.execute(
            f'create view "{database}"."{name}" as select {picked}, '
            f"'s3://' || substr(filename, {len(root) + 1}) as \"$path\" "
            f"from read_parquet({listing}, union_by_name=true, filename=true)"
        )
        return scanned
