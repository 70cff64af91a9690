"""The sample lake generator: large CRM tables are written in time-sorted files; events written in
several chunks are the events of one chunk, with the same distributions in every chunk."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import duckdb
import pytest

from sync.lake import sample_lake
from sync.lake.sample_lake import LakeSpec, generate


def query(sql: str) -> duckdb.DuckDBPyRelation:
    """``sql`` on a connection of its own: DuckDB's default connection (``duckdb.sql``) does not survive a
    fork (its worker threads stay in the parent), and ``make mutation`` forks a child per mutant."""
    return duckdb.connect().sql(sql)


SPEC = LakeSpec(endpoints=400, events_per_endpoint=3, days=5)


def rows(root, table):
    return query(f"select * from read_parquet('{root}/crm/{table}/*.parquet') order by all").fetchall()


@pytest.mark.parametrize("table,column", [("app_logins", "login_timestamp"), ("web_sessions", "session_timestamp")])
def test_a_crm_table_split_into_files_holds_the_same_rows_each_file_in_time_order(tmp_path, monkeypatch, table, column):
    # Given the same lake written once in one file per table, once in files of 300 rows
    generate(tmp_path / "one", SPEC)
    monkeypatch.setattr(sample_lake, "CRM_ROWS_PER_FILE", 300)
    generate(tmp_path / "split", SPEC)
    # Then the split table has ceil(1600 / 300) files, each sorted by time
    files = sorted((tmp_path / "split" / "crm" / table).glob("*.parquet"))
    assert [f.name for f in files] == [f"{table}-{k:04d}.parquet" for k in range(6)]
    for f in files:
        times = [r[0] for r in query(f"select {column} from '{f}'").fetchall()]
        assert times == sorted(times)
    # And together they hold exactly the rows of the single file
    assert [f.name for f in (tmp_path / "one" / "crm" / table).glob("*.parquet")] == [f"{table}.parquet"]
    assert rows(tmp_path / "split", table) == rows(tmp_path / "one", table)
    assert len(rows(tmp_path / "one", table)) == 4 * SPEC.endpoints


# --------------------------------------------------------------------------- events across generation chunks

# 20 ingest days of 1,000 events over 2,000 endpoints; with 4,000 events per chunk the
# generator writes 5 chunks of 4 days each through the same code path as a 300k-endpoint lake.
CHUNKED = LakeSpec(endpoints=2_000, events_per_endpoint=10, days=20)
SMALL_CHUNK = 4_000
DAYS_PER_CHUNK = SMALL_CHUNK // (CHUNKED.events // CHUNKED.days)


def expected_distinct_endpoints(n: int, draws: int) -> float:
    """Expected distinct endpoints among ``draws`` events: ``skewed`` picks endpoint k with
    probability ((k+1)/n)^(1/2.2) - (k/n)^(1/2.2)."""
    p = [((k + 1) / n) ** (1 / 2.2) - (k / n) ** (1 / 2.2) for k in range(n)]
    return sum(1 - (1 - q) ** draws for q in p)


def endpoint_ids(spec: LakeSpec) -> set[str]:
    def one(i):
        m = hashlib.md5(f"lakeseg-{spec.seed}-{i}".encode()).hexdigest()
        return f"{m[:8]}-{m[8:12]}-{m[12:16]}-{m[16:20]}-{m[20:32]}"

    return {one(i) for i in range(spec.endpoints)}


def events(root):
    return f"read_parquet('{root}/due/all_events/**/*.parquet', hive_partitioning = true)"


@pytest.fixture(scope="module")
def chunked_lake(tmp_path_factory):
    """The same lake written in one chunk and in 5; the progress each reported, in ``steps``."""
    root = tmp_path_factory.mktemp("lakes")
    steps = {"one": [], "chunked": []}
    generate(root / "one", CHUNKED, progress=lambda done, total: steps["one"].append((done, total)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sample_lake, "CHUNK_EVENTS", SMALL_CHUNK)
        generate(root / "chunked", CHUNKED, progress=lambda done, total: steps["chunked"].append((done, total)))
    return SimpleNamespace(root=root, steps=steps)


@pytest.mark.parametrize(
    "lake,event_chunks", [pytest.param("one", 1, id="one-chunk"), pytest.param("chunked", 5, id="five-chunks")]
)
def test_generation_reports_progress_once_per_event_chunk_and_crm_file(chunked_lake, lake, event_chunks):
    # Given a lake generated with a progress callback
    # Then it heard 0 of the total first, then one step per event chunk and per CRM file (4), in order
    total = event_chunks + 4
    assert chunked_lake.steps[lake] == [(done, total) for done in range(total + 1)]


def by_chunk(root, select: str) -> dict[int, tuple]:
    """``select`` (aggregates over the events) per generation chunk, keyed by the chunk's number."""
    start = CHUNKED.start_dt.strftime("%Y-%m-%d")
    return {
        row[0]: row[1:]
        for row in query(
            f"select (ingest_timestamp::date - date '{start}') // {DAYS_PER_CHUNK} as chunk, {select} "
            f"from {events(root)} group by chunk order by chunk"
        ).fetchall()
    }


def test_a_lake_written_in_several_chunks_holds_the_same_events_as_one_written_in_one(chunked_lake):
    # Given the same lake generated in one chunk and in 5 chunks of 4 ingest days
    # Then both hold exactly the same events, row for row
    one, chunked = events(chunked_lake.root / "one"), events(chunked_lake.root / "chunked")
    assert query(f"select count(*) from {chunked}").fetchall()[0][0] == CHUNKED.events
    differ = query(
        f"select count(*) from ((from {one} except all from {chunked}) "
        f"union all (from {chunked} except all from {one}))"
    ).fetchall()[0][0]
    assert differ == 0


@pytest.mark.parametrize(
    "chunk",
    [
        pytest.param(c, id=f"chunk-{c}-days-{c * DAYS_PER_CHUNK}-to-{(c + 1) * DAYS_PER_CHUNK - 1}")
        for c in range(CHUNKED.days // DAYS_PER_CHUNK)
    ],
)
def test_every_chunk_of_a_large_lake_has_the_distributions_segments_rely_on(chunked_lake, chunk):
    # Given a lake generated in 5 chunks
    root = chunked_lake.root / "chunked"
    per_day = CHUNKED.events // CHUNKED.days
    # When one chunk's events are counted
    total, endpoints, sessions, session_ids, session_endpoints = by_chunk(
        root,
        """
        count(*), count(distinct client.client_id),
        count(*) filter (where event_type like '_session%'),
        count(distinct session['session_id']) filter (where event_type like '_session%'),
        count(distinct client.client_id) filter (where event_type like '_session%')""",
    )[chunk]
    # Then it holds its 4 days of events, drawn from the lake's endpoints as often as expected
    assert total == DAYS_PER_CHUNK * per_day
    expected = expected_distinct_endpoints(CHUNKED.endpoints, total)
    assert abs(endpoints - expected) < 0.1 * expected, (endpoints, expected)
    # And each of its ingest days too
    start = CHUNKED.start_dt.strftime("%Y-%m-%d")
    days = query(
        f"select count(*), count(distinct client.client_id) from {events(root)} "
        f"where (ingest_timestamp::date - date '{start}') // {DAYS_PER_CHUNK} = {chunk} "
        f"group by ingest_timestamp"
    ).fetchall()
    assert len(days) == DAYS_PER_CHUNK
    expected_day = expected_distinct_endpoints(CHUNKED.endpoints, per_day)
    for count, distinct in days:
        assert count == per_day and abs(distinct - expected_day) < 0.15 * expected_day, (distinct, expected_day)
    # And every endpoint is one of the lake's own (a contact id, not an id outside the range)
    ids = {
        r[0]
        for r in query(
            f"select distinct client.client_id from {events(root)} "
            f"where (ingest_timestamp::date - date '{start}') // {DAYS_PER_CHUNK} = {chunk}"
        ).fetchall()
    }
    assert ids <= endpoint_ids(CHUNKED)
    # And the event types follow the mix within 3 points
    mix = dict(
        query(
            f"select event_type, count(*) from {events(root)} "
            f"where (ingest_timestamp::date - date '{start}') // {DAYS_PER_CHUNK} = {chunk} "
            f"group by event_type"
        ).fetchall()
    )
    assert set(mix) == {name for name, _ in sample_lake.EVENT_MIX}
    for name, basis_points in sample_lake.EVENT_MIX:
        assert abs(mix[name] / total - basis_points / 10_000) < 0.03, name
    # And every session event carries a session id (two events per session), spread over endpoints as expected
    share = sum(bp for name, bp in sample_lake.EVENT_MIX if name.startswith("_session")) / 10_000
    assert abs(sessions - share * total) < 0.03 * total
    assert sessions / 2 <= session_ids <= sessions
    expected_sessions = expected_distinct_endpoints(CHUNKED.endpoints, sessions)
    assert abs(session_endpoints - expected_sessions) < 0.1 * expected_sessions, (session_endpoints, expected_sessions)
