"""Each seed segment's endpoints, checked against an independent computation.

The expected sets are computed here in plain Python -- datetime arithmetic,
dicts and counters over the raw rows of the sample lake -- not with the
models' SQL. DuckDB is used only to read the Parquet rows.

The rule the segments state: an event counts when it happened in the window
(as_of - window, as_of] and was ingested by as_of (its ingest partition starts
no later than as_of). Nothing after as_of counts, whatever the window.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import date, datetime, timedelta

import duckdb
import pytest
from dateutil.relativedelta import relativedelta

from tests.e2e.conftest import dbt_build

pytestmark = pytest.mark.e2e

LOOKBACK_DAYS = 190  # dbt_project.yml var lookback_days
EPOCH = datetime(1970, 1, 1)


def ms(value: int) -> datetime:
    return EPOCH + timedelta(milliseconds=value)


class Lake:
    """The raw rows of the sample lake, as Python tuples."""

    def __init__(self, path):
        con = duckdb.connect()
        self.events = [
            (etype, ms(ets), ms(ats), client_id, ingest)
            for etype, ets, ats, client_id, ingest in con.execute(
                f"select event_type, event_timestamp, arrival_timestamp, client.client_id, ingest_timestamp "
                f"from read_parquet('{path}/due/all_events/**/*.parquet', hive_partitioning = true)"
            ).fetchall()
        ]
        crm = lambda t, cols: con.execute(f"select {cols} from read_parquet('{path}/crm/{t}/*.parquet')").fetchall()  # noqa: E731
        self.contacts = crm("contacts", "id, username, state")
        self.subscriptions = crm("subscriptions", "contact_id, end_date, auto_renewal, missed_payments")
        self.logins = crm("app_logins", "username, login_timestamp")
        self.web_sessions = crm("web_sessions", "user_id, session_timestamp")
        con.close()

    def lake_end(self) -> datetime:
        return max(e[2] for e in self.events)

    def events_in(self, event_type: str, start: datetime, as_of: datetime):
        """Events of a type that happened in (start, as_of] and were ingested by as_of."""
        return [e for e in self.events if e[0] == event_type and start < e[1] <= as_of and e[4] <= as_of]

    # ---- the segments, as the issue states them -----------------------------
    def email_clickers(self, as_of):
        start = as_of - timedelta(days=LOOKBACK_DAYS)
        return {e[3]: "Yes" for e in self.events_in("_email.click", start, as_of) if e[3]}

    def active_last_24h(self, as_of):
        start = as_of - timedelta(hours=24)
        return {e[3]: "Yes" for e in self.events_in("_session.start", start, as_of)}

    def email_opens_30d(self, as_of):
        opens = Counter(e[3] for e in self.events_in("_email.open", as_of - timedelta(days=30), as_of))
        return {k: str(v) for k, v in opens.items()}

    def lifecycle_renewal(self, as_of):
        today: date = as_of.date()
        renewing = {
            cid
            for cid, end, auto, missed in self.subscriptions
            if today <= end < today + timedelta(days=30) and not auto and missed == 0
        }
        return {cid: "Renewal" for cid, _, _ in self.contacts if cid in renewing}

    def unengaged_by_state(self, as_of):
        start = as_of - relativedelta(months=6)
        within = lambda t: start < t <= as_of  # noqa: E731
        clicks = Counter(e[3] for e in self.events_in("_email.click", start, as_of))
        logins = Counter(u for u, t in self.logins if within(t))
        sessions = Counter(c for c, t in self.web_sessions if within(t))
        return {
            cid: state
            for cid, username, state in self.contacts
            if state is not None and clicks[cid] < 2 and logins[username] < 2 and sessions[cid] < 2
        }

    def newsletter_split(self, as_of):
        """A 45 / B 45 / holdout 10 by md5(salt:id) with hashlib: the macro must agree on every contact."""

        def group(cid):
            bucket = int(hashlib.md5(f"newsletter-2026-11:{cid}".encode()).hexdigest()[:8], 16) % 10000
            return "A" if bucket < 4500 else "B" if bucket < 9000 else "holdout"

        return {cid: group(cid) for cid, _, _ in self.contacts if cid is not None}


@pytest.fixture(scope="module")
def raw(lake) -> Lake:
    return Lake(lake)


def built(build, model: str, value_column: str) -> dict:
    con = duckdb.connect(str(build.build_dir / "lakeseg.duckdb"), read_only=True)
    try:
        return dict(con.execute(f"select endpoint_id, {value_column}::varchar from main_segments.{model}").fetchall())
    finally:
        con.close()


CASES = [
    ("seg_email_clickers", "has_clicked", "email_clickers"),
    ("seg_active_last_24h", "logged_in_last_24h", "active_last_24h"),
    ("seg_email_opens_30d", "emails_opened_30d", "email_opens_30d"),
    ("seg_lifecycle_stage", "lifecycle_stage", "lifecycle_renewal"),
    ("seg_unengaged_by_state", "unengaged_state", "unengaged_by_state"),
    ("seg_newsletter_split", "newsletter_group", "newsletter_split"),
]


@pytest.mark.parametrize("model,column,method", CASES, ids=[c[0] for c in CASES])
def test_segment_matches_independent_computation(raw, build_now, model, column, method):
    # Given the lake's end as as_of (the models' default on DuckDB)
    as_of = raw.lake_end()
    # When the expected members are computed from the raw rows
    expected = getattr(raw, method)(as_of)
    # Then the built segment has exactly those endpoints and values
    assert expected, "the sample lake must give this segment members, or the test proves nothing"
    assert built(build_now, model, column) == expected


@pytest.mark.parametrize("model,column,method", CASES, ids=[c[0] for c in CASES])
def test_pinned_as_of_moves_every_window(raw, build_later, model, column, method):
    # Given the build pinned with --vars '{as_of: "2026-10-31 12:00:00"}'
    as_of = datetime(2026, 10, 31, 12, 0, 0)
    expected = getattr(raw, method)(as_of)
    assert expected
    assert built(build_later, model, column) == expected


@pytest.fixture(scope="module")
def build_backfill(e2e_root, lake, profiles_dir):
    """Built as of two months before the lake's end: a backfill."""
    b = dbt_build(e2e_root, "backfill", lake, profiles_dir, "--vars", '{as_of: "2026-09-01 00:00:00"}')
    assert b.ok, (b.build_dir / "logs" / "dbt.log").read_text()[-3000:]
    return b


@pytest.mark.parametrize("model,column,method", CASES, ids=[c[0] for c in CASES])
def test_backfill_before_the_lakes_end_ignores_everything_after_as_of(raw, build_backfill, model, column, method):
    # Given as_of pinned two months before the lake's end
    as_of = datetime(2026, 9, 1)
    # When the expected members are computed from the raw rows
    expected = getattr(raw, method)(as_of)
    assert expected
    # Then the built segment has exactly those: nothing that happened (or arrived) later counts
    assert built(build_backfill, model, column) == expected


def test_backfill_clickers_exclude_endpoints_whose_clicks_all_came_later(raw, build_backfill):
    # Given endpoints whose only clicks in the lake happened after as_of
    as_of = datetime(2026, 9, 1)
    clicked_before = set(raw.email_clickers(as_of))
    clicked_ever = {e[3] for e in raw.events if e[0] == "_email.click"}
    later_only = clicked_ever - clicked_before
    assert later_only, "the lake must have clicks after as_of, or the test proves nothing"
    # Then none of them is in the backfilled segment
    assert not later_only & set(built(build_backfill, "seg_email_clickers", "has_clicked"))
