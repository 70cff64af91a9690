"""A deterministic, synthetic customer data lake shaped like the real thing.

Tables (Parquet, under one root directory):

``due/all_events/ingest_timestamp=YYYY-MM-DD 00:00:00/part-00000.parquet``
    The Digital User Engagement (DUE) Events Database's ``all_events`` with
    exactly the real Glue table's columns and types (see ``lake_schema``, which
    cites the source): ``event_type`` (``_email.send``, ``_email.open``, ...),
    epoch-ms ``event_timestamp`` / ``arrival_timestamp``, ``client.client_id``
    (the endpoint id), ``session`` and ``attributes`` maps, email ``facets``.
    ``ingest_timestamp`` is the ``timestamp`` partition column; the sample lake
    has one partition per ingest day (the real database adds one per hour --
    the models filter on the column's value and work with either).
``crm/contacts``, ``crm/subscriptions``, ``crm/app_logins``, ``crm/web_sessions``
    CRM-style tables keyed by the contact id, which is the endpoint id.

Every value comes from a hash of (seed, row, column), so the same parameters
give the same lake on any machine and any number of threads.  All of it is
generated inside DuckDB; nothing is materialised in Python. Events are written
in chunks of whole ingest days (``CHUNK_EVENTS`` events, or one day if a day
holds more), so memory is bounded by a chunk's events; a lake written in many
chunks holds exactly the events of one written in one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import duckdb

from sync.core import clock
from sync.core.sql import ql
from sync.lake.schema import ALL_EVENTS, CRM, duckdb_type

DEFAULT_END = "2026-11-01T00:00:00"
MANIFEST = "_lake.json"
# Bumped whenever the lake's tables change shape: a lake written by an older lakeseg is written
# again by `lake generate --if-missing` instead of being read with the wrong types.
LAKE_FORMAT = 3  # 2: the real DUE schema (session/attributes maps, timestamp ingest partition)
# 3: events past the first chunk (2M events) spread over the endpoints; format 2 put them all on one
CHUNK_EVENTS = 2_000_000  # events per COPY: bounds memory, amortises per-query cost

# Called after each write step with (steps done, steps in all): the lake is written in
# event chunks (CHUNK_EVENTS each) then one step per CRM file.
GenerateProgress = Callable[[int, int], None]

# Share of events per type, in basis points (sum 10000).
EVENT_MIX = (
    ("_email.send", 2900),
    ("_email.delivered", 2500),
    ("_email.open", 1500),
    ("_email.click", 500),
    ("_email.unsubscribe", 50),
    ("_email.hardbounce", 50),
    ("_session.start", 1250),
    ("_session.stop", 1250),
)

US_STATES = (
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO "
    "MT NE NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY"
).split()

# Names that exercise CSV quoting and non-ASCII text downstream.
FIRST_NAMES = ("Ana", "José", "Zoë", "Björn", "Chloé", "Li", "Ngozi", "Søren", "Amélie", "Ravi", "Ютта", "María")
LAST_NAMES = ("Smith", "O'Brien", "Nguyễn", "García", "Müller", "Smith, Jr.", "Okafor", 'Dee "DJ"', "Kowalski", "田中")


@dataclass(frozen=True)
class LakeSpec:
    """Parameters of a sample lake. The defaults generate in seconds."""

    endpoints: int = 50_000
    events_per_endpoint: int = 20
    days: int = 200
    end: str = DEFAULT_END  # exclusive end of the event window, UTC
    seed: int = 42

    @property
    def events(self) -> int:
        return self.endpoints * self.events_per_endpoint

    @property
    def end_dt(self) -> datetime:
        return clock.as_utc(datetime.fromisoformat(self.end))

    @property
    def start_dt(self) -> datetime:
        return self.end_dt - timedelta(days=self.days)


def _sql_list(values) -> str:
    return "[" + ", ".join(ql(v) for v in values) + "]"


def _macros(con: duckdb.DuckDBPyConnection, spec: LakeSpec) -> None:
    seed = int(spec.seed)
    # u(i, salt): a deterministic uniform number in [0, 1) for row i.
    con.execute(f"create or replace macro u(i, salt) as (hash({seed}, i, salt) % 1000000007) / 1000000007.0")
    # Skewed pick in [0, n): low indexes are picked far more often, so a few
    # endpoints are very active and a long tail is nearly silent.
    con.execute(
        "create or replace macro skewed(i, salt, n) as least(n - 1, cast(floor(n * pow(u(i, salt), 2.2)) as bigint))"
    )
    con.execute(
        f"""create or replace macro endpoint_id(i) as (
            with h as (select md5('lakeseg-{seed}-' || i::varchar) as m)
            select substr(m, 1, 8) || '-' || substr(m, 9, 4) || '-' || substr(m, 13, 4) || '-'
                   || substr(m, 17, 4) || '-' || substr(m, 21, 12) from h)"""
    )


def _event_type_case() -> str:
    parts, upper = [], 0
    for name, share in EVENT_MIX:
        upper += share
        parts.append(f"when r < {upper} then '{name}'")
    return "case " + " ".join(parts) + " end"


def _cast_columns(columns) -> str:
    """The select list casting each shaped column to its declared type, in declared order."""
    return ",\n              ".join(f"cast({name} as {duckdb_type(t)}) as {name}" for name, t in columns)


def _days_per_chunk(spec: LakeSpec) -> int:
    """Ingest days per COPY: as many as fit in CHUNK_EVENTS events."""
    per_day = max(1, spec.events // spec.days)
    return max(1, min(spec.days, CHUNK_EVENTS // per_day))


def _event_chunks(spec: LakeSpec) -> int:
    return -(-spec.days // _days_per_chunk(spec))


def _crm_files(spec: LakeSpec) -> int:
    """Files of the CRM tables: contacts, subscriptions, then app_logins and web_sessions."""
    return 2 + 2 * max(1, -(-(spec.endpoints * 4) // CRM_ROWS_PER_FILE))


def _write_events(con, spec: LakeSpec, root: Path, step: Callable[[], None] = lambda: None) -> None:
    """One Parquet file per ingest day, written a chunk of days at a time: memory
    stays bounded by one chunk's events whatever the lake's size.

    Events arrive uniformly over the day of their partition; each happened up to
    two minutes before it arrived (so an event can belong to the previous day's
    event time: the late-arrival slack the models allow for)."""
    total = spec.events
    out = root / "due" / "all_events"
    chunk = _days_per_chunk(spec)
    first = lambda day: -(-day * total // spec.days)  # noqa: E731 -- first row of an ingest day
    staging = root / ".staging"
    for d0 in range(0, spec.days, chunk):
        d1 = min(spec.days, d0 + chunk)
        con.execute(_events_sql(spec, first(d0), first(d1), staging))
        _unstage(staging, out)
        step()
    shutil.rmtree(staging, ignore_errors=True)


# The columns of an event in the DUE export's shape (each row of ``typed`` in ``_events_sql``).
_EVENT_COLUMNS = """                  event_type,
                  event_timestamp,
                  arrival_timestamp,
                  '3.1' as event_version,
                  {'app_id': 'a1b2c3d4e5f6lakeseg'} as application,
                  {'client_id': endpoint_id(ep)} as client,
                  {'platform': map {'name': case when event_type like '_session%' then 'android' else 'email' end}} as device,
                  case when event_type like '_session%'
                       then map {'session_id': 'ses-' || md5((i // 2)::varchar),
                                  'start_timestamp': event_timestamp::varchar}
                  end as session,
                  case when event_type like '_email%'
                       then map {'campaign_id': campaign_id, 'treatment_id': '0', 'campaign_send_status': 'SUCCESS'}
                       else map {'screen': 'home'}
                  end as attributes,
                  null as client_context,
                  '123456789012' as awsaccountid,
                  case when event_type like '_email%' then {'email_channel': {'mail_event': {
                      'mail': {'message_id': message_id,
                               'message_send_timestamp': event_timestamp,
                               'from_address': 'news@example.com',
                               'destination': [ 'user' || ep::varchar || '@example.com' ],
                               'common_headers': {'subject': 'Your November update'}},
                      'click': case when event_type = '_email.click'
                                    then {'link': 'https://example.com/offer?c=' || campaign_id, 'user_agent': 'Mozilla/5.0'} end,
                      'open': case when event_type = '_email.open'
                                   then {'user_agent': 'Mozilla/5.0', 'ip_address': '192.0.2.1'} end
                    }}} end as facets,
                  null as metrics,
                  day
"""


def _events_sql(spec: LakeSpec, lo: int, hi: int, staging: Path) -> str:
    """The COPY of events ``lo`` (inclusive) to ``hi`` into ``staging``, partitioned by ingest day."""
    n = spec.endpoints
    total = spec.events
    start_ms = int(spec.start_dt.timestamp() * 1000)
    return f"""
            copy (
              with base as (
                select i,
                       skewed(i, 1, {n}) as ep,
                       cast(floor(u(i, 2) * 10000) as integer) as r,
                       (i * {spec.days}) // {total} as day,
                       {start_ms} + ((i * {spec.days}) // {total}) * 86400000
                         + cast(floor(u(i, 3) * 86400000) as bigint) as arrival_timestamp
                from range({lo}, {hi}) t(i)
              ), typed as (
                select *, {_event_type_case()} as event_type,
                       arrival_timestamp - cast(u(i, 4) * 120000 as bigint) as event_timestamp,
                       'cmp-' || (hash(i, 7) % 12)::varchar as campaign_id,
                       'msg-' || md5(i::varchar) as message_id
                from base
              ), shaped as (
                select
{_EVENT_COLUMNS}                from typed
              )
              select {_cast_columns(ALL_EVENTS)},
                     make_timestamp(({start_ms} + day * 86400000) * 1000) as ingest_timestamp
              from shaped
            ) to '{staging}' (format parquet, compression zstd, partition_by (ingest_timestamp), overwrite_or_ignore)
            """


def _unstage(staging: Path, out: Path) -> None:
    """Move the staged day folders under ``out``: DuckDB escapes the folder names (%20, %3A); give them the
    plain Hive form."""
    for folder in sorted(staging.iterdir()):
        target = out / unquote(folder.name)
        target.mkdir(parents=True, exist_ok=True)
        for part, f in enumerate(sorted(folder.glob("*.parquet"))):
            f.rename(target / f"part-{part:05d}.parquet")
        folder.rmdir()


def _write_crm(con, spec: LakeSpec, root: Path, step: Callable[[], None] = lambda: None) -> None:
    crm = root / "crm"
    for sub in ("contacts", "subscriptions", "app_logins", "web_sessions"):
        (crm / sub).mkdir(parents=True, exist_ok=True)
    _write_contacts(con, spec, crm)
    step()
    _write_subscriptions(con, spec, crm)
    step()
    _write_activity(con, spec, crm, step)


def _write_contacts(con, spec: LakeSpec, crm: Path) -> None:
    n = spec.endpoints
    start = spec.start_dt.strftime("%Y-%m-%d %H:%M:%S")
    # 97% of endpoints belong to a known contact; the id is the endpoint id.
    con.execute(
        f"""
        copy (select {_cast_columns(CRM["contacts"])} from (
          select endpoint_id(i) as id,
                 'user' || i::varchar as username,
                 'user' || i::varchar || '@example.com' as email,
                 list_extract({_sql_list(FIRST_NAMES)}, 1 + (hash(i, 11) % {len(FIRST_NAMES)})::integer) as first_name,
                 list_extract({_sql_list(LAST_NAMES)}, 1 + (hash(i, 12) % {len(LAST_NAMES)})::integer) as last_name,
                 list_extract({_sql_list(US_STATES)}, 1 + (hash(i, 13) % {len(US_STATES)})::integer) as state,
                 timestamp '{start}' - to_days(cast(u(i, 14) * 900 as integer)) as created_at
          from range({n}) t(i)
          where u(i, 10) < 0.97
          order by i
        )) to '{crm / "contacts" / "contacts.parquet"}' (format parquet)
        """
    )


def _write_subscriptions(con, spec: LakeSpec, crm: Path) -> None:
    n = spec.endpoints
    end = spec.end_dt.strftime("%Y-%m-%d %H:%M:%S")
    con.execute(
        f"""
        copy (select {_cast_columns(CRM["subscriptions"])} from (
          select 'sub-' || i::varchar as subscription_id,
                 endpoint_id(i) as contact_id,
                 list_extract(['basic', 'plus', 'pro'], 1 + (hash(i, 21) % 3)::integer) as plan,
                 cast(timestamp '{end}' - to_days(cast(u(i, 22) * 600 as integer) + 30) as date) as start_date,
                 cast(timestamp '{end}' + to_days(cast(u(i, 23) * 400 as integer) - 100) as date) as end_date,
                 u(i, 24) < 0.6 as auto_renewal,
                 case when u(i, 25) < 0.8 then 0 else 1 + (hash(i, 26) % 3)::integer end as missed_payments
          from range({n}) t(i)
          where u(i, 10) < 0.97 and u(i, 20) < 0.7
          order by i
        )) to '{crm / "subscriptions" / "subscriptions.parquet"}' (format parquet)
        """
    )


def _write_activity(con, spec: LakeSpec, crm: Path, step: Callable[[], None]) -> None:
    """App logins and web sessions: four per endpoint each, in time order."""
    n = spec.endpoints
    start = spec.start_dt.strftime("%Y-%m-%d %H:%M:%S")
    span_s = spec.days * 86_400
    _write_in_time_order(
        con,
        crm / "app_logins",
        CRM["app_logins"],
        n * 4,
        "login_timestamp",
        f"""
          select 'login-' || i::varchar as login_id,
                 'user' || skewed(i, 31, {n})::varchar as username,
                 timestamp '{start}' + to_seconds(cast(floor(u(i, 32) * {span_s}) as bigint)) as login_timestamp,
                 list_extract(['ios', 'android', 'web'], 1 + (hash(i, 33) % 3)::integer) as client
        """,
        step,
    )
    _write_in_time_order(
        con,
        crm / "web_sessions",
        CRM["web_sessions"],
        n * 4,
        "session_timestamp",
        f"""
          select 'ga-' || i::varchar as session_id,
                 endpoint_id(skewed(i, 41, {n})) as user_id,
                 timestamp '{start}' + to_seconds(cast(floor(u(i, 42) * {span_s}) as bigint)) as session_timestamp,
                 1 + (hash(i, 43) % 12)::integer as page_views,
                 list_extract(['organic', 'paid', 'email', 'direct'], 1 + (hash(i, 44) % 4)::integer) as traffic_source
        """,
        step,
    )


# Rows per file of the large CRM tables: one file up to a 1M-endpoint lake,
# so the sort of each file stays well inside DuckDB's memory limit.
CRM_ROWS_PER_FILE = 4_000_000


def _write_in_time_order(
    con, folder: Path, columns, rows: int, order_by: str, select: str, step: Callable[[], None] = lambda: None
) -> None:
    """Write ``rows`` generated rows (``select`` reads ``i`` from a ``range``) as
    Parquet files of at most ``CRM_ROWS_PER_FILE`` rows, each sorted by time.

    A single global sort of 40M rows (a 10M-endpoint lake) outgrows the memory
    limit; per-file sorts do not, and keep each file's row groups narrow in time.
    """
    files = max(1, -(-rows // CRM_ROWS_PER_FILE))
    for k in range(files):
        lo, hi = k * CRM_ROWS_PER_FILE, min(rows, (k + 1) * CRM_ROWS_PER_FILE)
        name = f"{folder.name}.parquet" if files == 1 else f"{folder.name}-{k:04d}.parquet"
        con.execute(
            f"""
            copy (select {_cast_columns(columns)} from (
              {select}
              from range({lo}, {hi}) t(i)
              order by {order_by}
            )) to '{folder / name}' (format parquet)
            """
        )
        step()


def generate(
    root: Path,
    spec: LakeSpec = LakeSpec(),
    *,
    threads: int | None = None,
    memory_limit: str = "1GB",
    progress: GenerateProgress | None = None,
) -> dict:
    """Write the sample lake under ``root`` (replacing it) and return its manifest.

    ``progress(done, total)`` is called once before the first write step and after each one."""
    root = Path(root)
    total = _event_chunks(spec) + _crm_files(spec)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    if root.exists():
        shutil.rmtree(root)
    (root / "due").mkdir(parents=True)
    con = duckdb.connect()
    try:
        if threads:
            con.execute(f"set threads = {int(threads)}")
        con.execute("set preserve_insertion_order = false")
        # Sorting the CRM tables of a large lake spills to disk instead of growing.
        con.execute(f"set memory_limit = '{memory_limit}'")
        con.execute(f"set temp_directory = '{root / '.tmp'}'")
        con.execute("set enable_progress_bar = false")
        _macros(con, spec)
        if progress:
            progress(0, total)
        _write_events(con, spec, root, step)
        _write_crm(con, spec, root, step)
        counts = {
            "all_events": con.sql(
                f"select count(*) from read_parquet('{root}/due/all_events/**/*.parquet')"
            ).fetchall()[0][0],
            **{
                t: con.sql(f"select count(*) from read_parquet('{root}/crm/{t}/*.parquet')").fetchall()[0][0]
                for t in ("contacts", "subscriptions", "app_logins", "web_sessions")
            },
        }
    finally:
        con.close()
        shutil.rmtree(root / ".tmp", ignore_errors=True)
    manifest = {"format": LAKE_FORMAT, "spec": asdict(spec), "end": spec.end, "rows": counts}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(root: Path) -> dict | None:
    """The manifest of an existing lake, or None when there is none."""
    try:
        return json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
