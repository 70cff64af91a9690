"""The diff in the lake gives the plan and the rows the DuckDB diff gives, with the SQL really executed.

The lake side runs through ``AthenaReader.run_query`` against ``ExecutingAthena``
(moto records each call; DuckDB executes the Athena SQL after sqlglot's
transpilation), over Glue tables registered in moto and Parquet in moto S3.
"""

from __future__ import annotations

import random
from pathlib import Path

import boto3
import duckdb
import pytest
from moto import mock_aws

from sync.core.fields import ID_FIELD
from sync.core.sql import ql
from sync.readers.athena import AthenaReader
from sync.run import classify
from sync.run.diff import changes_sql, prepare, snapshot_to_commit
from sync.run.digest_key import DigestKey
from sync.run.pushdown import glue, sql
from sync.state import deltas
from tests.pushdown.athena_double import ExecutingAthena
from tests.sync.test_diff import Snap, load, make_segment

BUCKET, DB = "stack-bucket", "lakeseg_diff"
STATE = "lakeseg/state/snapshots/pinpoint/seg_t/lake"
KEY = DigestKey("k" * 32, "test")
FIELDS = ("Id", "User.UserAttributes.Tier", "User.UserAttributes.Score")


def _delta_sql(sent: str) -> str:
    """The snapshot delta from the rows UNLOADed to send: upserts for entered and changed, tombstones for exits."""
    return f"select Id, k1, k2, digest, kind = 'x' as {deltas.DELETED} from {sent} where kind in ('e', 'c', 'x')"


def _base_sql(previous: str, sent: str) -> str:
    """The whole new membership, for a new base: the previous one with this run's delta applied."""
    cols = list(deltas.SNAPSHOT_ROW)
    return deltas.current_sql(f"(select {', '.join(cols)} from {previous})", [f"({_delta_sql(sent)})"], cols)


def _unload(select: str, location: str) -> str:
    """``select`` (DuckDB's dialect) as an Athena UNLOAD to Parquet at ``location``."""
    return f"UNLOAD ({classify.to_engine(select, 'athena')}) TO {ql(location)} WITH (format = 'PARQUET')"


@pytest.fixture
def lake(tmp_path, monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        s3, g = boto3.client("s3"), boto3.client("glue")
        s3.create_bucket(Bucket=BUCKET)
        g.create_database(DatabaseInput={"Name": DB})
        athena = ExecutingAthena(boto3.client("athena"), g, s3)
        reader = AthenaReader(athena, s3, s3_staging_dir=f"s3://{BUCKET}/lakeseg/athena/", sleep=lambda _s: None)
        yield Lake(tmp_path, s3, glue.GlueTables(g, DB), reader, athena)


class Lake:
    """One segment in the lake and its snapshot files, diffed by the statements sync.run.pushdown.sql writes."""

    def __init__(self, tmp: Path, s3, tables: glue.GlueTables, reader: AthenaReader, athena: ExecutingAthena):
        self.tmp, self.s3, self.tables, self.reader, self.athena = tmp, s3, tables, reader, athena
        self.base: list[str] = []
        self.deltas: list[list[str]] = []
        self.runs = 0
        con = duckdb.connect()
        con.execute(f"copy (select unhex('{sql.athena_subkey(KEY.secret).hex()}') as key) to '{tmp / 'key.parquet'}'")
        s3.upload_file(str(tmp / "key.parquet"), BUCKET, "lakeseg/state/keys/fp/key.parquet")
        self.key = tables.register("key_t", f"s3://{BUCKET}/lakeseg/state/keys/fp/", glue.KEY_COLUMNS)
        self.snap = tables.register("snap_t", f"s3://{BUCKET}/{STATE}/", glue.SNAPSHOT_COLUMNS)

    def _files(self, prefix: str) -> list[str]:
        got = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])
        return sorted(f"s3://{BUCKET}/{o['Key']}" for o in got)

    def sync(self, seg, rows: list[tuple]) -> tuple[dict, set[tuple]]:
        """One run: the plan's counts and the rows to send (exit values applied locally)."""
        self.runs += 1
        run = f"r{self.runs}"
        con = duckdb.connect()
        src = self.tmp / f"seg-{run}.parquet"
        load(con, "src", rows)
        con.execute(f"copy src to '{src}' (format parquet)")
        self.s3.upload_file(str(src), BUCKET, f"lake/seg/{run}/part-0.parquet")
        table = self.tables.register(
            f"seg_{run}", f"s3://{BUCKET}/lake/seg/{run}/", [(c, "string") for c in seg.columns]
        )
        current = sql.current_sql(table, seg.columns, seg.fields, self.key)
        previous = sql.previous_sql(self.snap, self.base, self.deltas, native=True)
        full = not self.base
        # (b) one statement: every member classified, only the rows to send UNLOADed
        out = f"lakeseg/athena/lakeseg-diff/{run}"
        self.reader.run_query(
            _unload(sql.rows_to_send_sql(current, previous, None, len(seg.fields), full), f"s3://{BUCKET}/{out}/")
        )
        sent_table = self.tables.register(
            f"sent_{run}",
            f"s3://{BUCKET}/{out}/",
            [
                *((f"c{n}", "string") for n in range(len(seg.fields))),
                ("id", "string"),
                ("k1", "bigint"),
                ("k2", "bigint"),
                ("digest", "bigint"),
                ("kind", "string"),
            ],
        )
        # (c) the new version: a base on a first sync, else a delta, under a fresh prefix of the state folder
        version = f"{STATE}/v-{run}"
        body = _base_sql(previous, sent_table) if full else _delta_sql(sent_table)
        self.reader.run_query(_unload(body, f"s3://{BUCKET}/{version}/"))
        if full:
            self.base = self._files(version)
        elif self._files(version):
            self.deltas.append(self._files(version))
        # (d) the runner reads only the rows to send
        files = self._files(out)
        got = (
            con.execute(
                "select kind, count(*) from read_parquet(["
                + ", ".join(f"'{self._local(f)}'" for f in files)
                + "]) group by kind"
            ).fetchall()
            if files
            else []
        )
        counts = dict(got)
        rows_out = set()
        if files:
            listing = "[" + ", ".join(f"'{self._local(f)}'" for f in files) + "]"
            exit_values = seg.exit_values
            cols = ", ".join(
                f"c{n}"
                if f == ID_FIELD
                else f"case when kind in ('x', 'q') then {_lit(exit_values.get(f))} else c{n} end"
                for n, f in enumerate(seg.fields)
            )
            keep = "where kind <> 'n'" if exit_values else "where kind not in ('x', 'q', 'n')"
            rows_out = {
                tuple(r)
                for r in con.execute(
                    f"select {cols.replace('c0', 'coalesce(c0, id)', 1)} from read_parquet({listing}) {keep}"
                ).fetchall()
            }
        return counts, rows_out

    def _local(self, url: str) -> Path:
        key = url[len(f"s3://{BUCKET}/") :]
        local = self.tmp / "dl" / key
        local.parent.mkdir(parents=True, exist_ok=True)
        self.s3.download_file(BUCKET, key, str(local))
        return local


def _lit(value) -> str:
    return "null" if value is None else "'" + str(value).replace("'", "''") + "'"


def duckdb_sync(tmp: Path, seg, runs: list[list[tuple]]) -> list[tuple[dict, set[tuple]]]:
    """The same runs through sync.run.diff: plan counts and rows sent."""
    con, previous, out = duckdb.connect(), None, []
    for n, rows in enumerate(runs):
        src = load(con, f"src_{n}", rows)
        work = tmp / f"duck-{n}"
        work.mkdir()
        prepared = prepare(con, seg, src, previous=previous, workdir=work, digest_key=KEY)
        sent = {tuple(r) for r in con.execute(changes_sql(prepared)).fetchall()} if prepared.plan.to_send else set()
        path = snapshot_to_commit(con, prepared, frozenset())
        previous = Snap(path, prepared.plan.rows, prepared.mapping_hash)
        p = prepared.plan
        out.append(({"entered": p.entered, "changed": p.changed, "exited": p.exited}, sent))
    return out


def _churn(pattern: str, seed: int) -> list[list[tuple]]:
    rnd = random.Random(seed)
    members = {f"id-{i}": (rnd.choice(["gold", "silver", None, ""]), str(rnd.randint(0, 9))) for i in range(60)}
    runs = [dict(members)]
    for _ in range(3):
        now = dict(runs[-1])
        ids = sorted(now)
        if pattern in ("values", "mixed"):
            for i in rnd.sample(ids, 8):
                now[i] = (rnd.choice(["gold", "bronze", None, ""]), now[i][1])
        if pattern in ("leave", "mixed"):
            for i in rnd.sample(ids, 6):
                del now[i]
        if pattern in ("enter", "mixed"):
            for i in range(5):
                now[f"new-{len(runs)}-{i}"] = ("gold", "1")
        if pattern == "back-and-forth" and len(runs) == 2:
            now = dict(runs[0])
        runs.append(now)
    return [[(i, *v) for i, v in sorted(r.items())] for r in runs]


PATTERNS = ["values", "leave", "enter", "mixed", "back-and-forth", "none"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_lake_diff_sends_what_the_duckdb_diff_sends(lake, tmp_path, pattern):
    # Given a segment over four runs with a churn pattern, diffed on DuckDB
    seg = make_segment(exit="keep", fields=FIELDS)
    runs = _churn(pattern, seed=len(pattern))
    expected = duckdb_sync(tmp_path, seg, runs)
    # When the same runs are diffed in the lake (one classification statement, one UNLOAD of the new version each)
    for n, rows in enumerate(runs):
        counts, sent = lake.sync(seg, rows)
        plan, want = expected[n]
        # Then each run counts the same entered / changed / exited and sends the very same rows
        if n == 0:
            assert counts.get("e", 0) + counts.get("u", 0) == len(rows)
        else:
            assert {k: counts.get(c, 0) for k, c in (("entered", "e"), ("changed", "c"), ("exited", "x"))} == plan, (
                pattern,
                n,
            )
        assert sent == want, (pattern, n)
    # And no query text holds the key
    assert all(sql.athena_subkey(KEY.secret).hex() not in q and KEY.secret not in q for q in lake.athena.executed)


def test_a_run_drops_only_its_segments_tables_of_other_runs():
    # Given the names of segment seg's tables for destination d in some run, and of others' tables
    from sync.run.pushdown.lake import run_tables, table_tag

    run = "20261207t032734816z_a38f34"
    mine = [f"{table_tag('d', 'seg', run)}_{kind}" for kind in ("key", "snap", "base", "dirty")]
    others = [
        f"{table_tag('d', 'seg__2024', run)}_snap",  # another segment whose name extends this one's
        f"{table_tag('d', 'seg_x', run)}_snap",
        f"{table_tag('other', 'seg', run)}_snap",  # the same segment synced to another destination
        f"{table_tag('d', 'Seg', run)}_snap",  # a name that Glue's letters fold onto this one
        "seg",  # the segment's own table
    ]
    # Then the pattern of (d, seg)'s run tables matches its own and none of the others
    pattern = run_tables("d", "seg")
    assert all(pattern.fullmatch(n) for n in mine)
    assert not [n for n in others if pattern.fullmatch(n)]


def test_a_statement_over_athenas_length_limit_is_refused_by_the_double_as_by_athena(lake):
    # Given a statement one character longer than the service model allows a query's text (botocore checks
    # only the least length)
    too_long = "select 1" + " " * (262_144 - len("select 1") + 1)
    # When it is started, Then it is refused as Athena refuses it, and nothing runs
    with pytest.raises(lake.athena.exceptions.InvalidRequestException, match="262144"):
        lake.athena.start_query_execution(QueryString=too_long, WorkGroup="primary")
    assert lake.athena.executed == []


# Snapshot rows (Id, k1, k2, digest, deleted); keys stand for each Id's and are the same in every file
_ROWS = {
    "base": [("a", 1, 1, 10, False), ("b", 2, 2, 20, False)],
    "delta": [("a", 1, 1, None, True), ("c", 3, 3, 30, False)],  # a leaves, c enters
    "stray": [("z", 9, 9, 90, False)],  # in the folder, but named by no pointer
}


@pytest.mark.parametrize(
    ("base", "deltas", "members"),
    [
        pytest.param([], [], set(), id="nothing-committed"),
        pytest.param(["base"], [], {"a", "b"}, id="a-base"),
        pytest.param(["base"], [["delta"]], {"b", "c"}, id="a-base-and-a-delta"),
        pytest.param([], [["delta"]], {"c"}, id="a-delta-without-a-base"),
    ],
)
@pytest.mark.parametrize("native", [True, False], ids=["this-scheme", "another-scheme"])
def test_the_committed_membership_is_read_from_exactly_the_files_the_pointer_names(
    lake, tmp_path, base, deltas, members, native
):
    # Given snapshot files in the segment's folder, one of them named by no pointer
    urls = {}
    con = duckdb.connect()
    for name, rows in _ROWS.items():
        local = tmp_path / f"{name}.parquet"
        con.execute("create or replace table r (id varchar, k1 bigint, k2 bigint, digest bigint, deleted boolean)")
        con.executemany("insert into r values (?, ?, ?, ?, ?)", rows)
        con.execute(f"copy r to '{local}' (format parquet)")
        lake.s3.upload_file(str(local), BUCKET, f"{STATE}/{name}/part-0.parquet")
        urls[name] = f"s3://{BUCKET}/{STATE}/{name}/part-0.parquet"
    # When the committed membership over the files a pointer names is read in Athena
    rel = sql.previous_sql(lake.snap, [urls[b] for b in base], [[urls[d] for d in ds] for ds in deltas], native)
    out = f"lakeseg/athena/members-{native}"
    lake.reader.run_query(_unload(f"select Id from {rel} m", f"s3://{BUCKET}/{out}/"))
    # Then it is the base with each delta applied in turn, whatever else the folder holds
    got = {r[0] for f in lake._files(out) for r in con.execute(f"select * from '{lake._local(f)}'").fetchall()}
    assert got == members
