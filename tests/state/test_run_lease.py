"""The run lease (sync/run/lease.py): one run at a time per deployment, on local and S3 (moto) state.

Each case runs against both stores: the lease is only as good as the store's create-exclusive and
compare-and-swap, and those differ (link() and an flock locally, IfNoneMatch/IfMatch on S3).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto import mock_aws

from sync.core.errors import ConfigError, LeaseHeld, LeaseLost
from sync.run.lease import RunLease, lease_timing_from_env, this_process
from sync.state import open_state_store

T0 = datetime(2026, 12, 1, 5, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, monkeypatch):
    if request.param == "local":
        yield open_state_store(str(tmp_path / "state"))
        return
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="lakeseg-state")
        yield open_state_store("s3://lakeseg-state/prod/state", s3_client=client)


class Clock:
    """Wall and monotonic time a test moves by hand."""

    def __init__(self, start: datetime = T0):
        self.now, self.mono = start, 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def lease(store, run_id="r-new", clock=None, lost=None, **kw) -> RunLease:
    clock = clock or Clock()
    return RunLease(
        store,
        run_id=run_id,
        command="run",
        ttl=600,
        heartbeat=60,
        clock=clock.wall,
        monotonic=clock.monotonic,
        on_lost=(lost.append if lost is not None else lambda _r: None),
        **kw,
    )


def plant(store, *, run_id="r-old", host="runner-7f3a", pid=4242, expires_in=300.0, now=T0, **owner) -> bytes:
    """A lease left in the store by another run."""
    doc = {
        "owner": {"run_id": run_id, "command": "run", "host": host, "pid": pid, **owner},
        "token": "t-old",
        "acquired_at": (now - timedelta(hours=1)).isoformat(),
        "renewed_at": (now + timedelta(seconds=expires_in - 600)).isoformat(),
        "expires_at": (now + timedelta(seconds=expires_in)).isoformat(),
        "ttl_seconds": 600,
    }
    raw = json.dumps(doc).encode()
    assert store.create_lease(raw)
    return raw


def held(store) -> dict:
    return json.loads(store.read_lease())


def test_a_run_takes_a_free_lease_and_releases_it(store):
    # Given no lease, when a run takes it
    with lease(store, run_id="r-1") as mine:
        # then the store names this run, its host and pid, until the run ends
        doc = held(store)
        assert doc["owner"]["run_id"] == "r-1" and doc["owner"]["host"] == socket.gethostname()
        assert doc["token"] == mine.token and mine.took_over is None
        assert doc["expires_at"] == (T0 + timedelta(seconds=600)).isoformat(timespec="milliseconds")
    assert store.read_lease() is None


@pytest.mark.parametrize("where", ["other-host", "this-host"])
def test_a_live_holder_refuses_the_second_run_naming_it(store, live_pid, where):
    # Given a run that is alive: heartbeating on another host, or a live process on this host
    host = socket.gethostname() if where == "this-host" else "runner-7f3a"
    planted = plant(store, host=host, pid=live_pid, expires_in=300)
    # When a second run tries to take the lease, then it is refused, naming the holder and why it waits
    with pytest.raises(LeaseHeld) as err:
        lease(store).acquire()
    message = str(err.value)
    assert "another run holds the lease" in message and "run r-old (lakeseg run)" in message
    assert f"pid {live_pid}" in message and "expires in 300s" in message and "nothing was built or synced" in message
    assert err.value.exit_code == 3
    # and the holder's lease is untouched
    assert store.read_lease() == planted


def test_a_live_process_on_this_host_keeps_its_lease_even_when_expired(store, live_pid):
    # Given a lease past its expiry whose process still runs on this host (stopped, or a heartbeat stuck)
    plant(store, host=socket.gethostname(), pid=live_pid, **this_process_ids(), expires_in=-3600)
    # When a run tries to take it, then it is refused: the owner may still be alive
    with pytest.raises(LeaseHeld, match="expired 3600s ago"):
        lease(store).acquire()


def this_process_ids() -> dict:
    me = this_process()
    return {"pid_ns": me["pid_ns"]}


def test_an_expired_lease_is_taken_over_naming_the_dead_run(store, caplog):
    # Given a lease from another host whose heartbeat stopped 10 minutes past its expiry
    plant(store, run_id="r-killed", host="codebuild-1", pid=7, expires_in=-600)
    # When a run takes the lease
    mine = lease(store).acquire()
    # Then it holds it, and says so: a warning and a note naming the dead run
    assert held(store)["owner"]["run_id"] == "r-new"
    assert mine.took_over.startswith("took over the run lease of dead run r-killed")
    assert "its lease expired 600s ago" in mine.took_over
    assert any("dead run r-killed" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_a_dead_process_on_this_host_frees_the_lease_at_once(store):
    # Given a lease still valid for 10 minutes, held by a process of this host that has ended
    child = subprocess.Popen(["true"])
    child.wait()
    plant(store, run_id="r-crashed", host=socket.gethostname(), pid=child.pid, expires_in=600, **this_process_ids())
    # When a run takes the lease, then it takes it over at once, saying why
    mine = lease(store).acquire()
    assert held(store)["owner"]["run_id"] == "r-new"
    assert "dead run r-crashed" in mine.took_over and "its process is gone" in mine.took_over


def test_the_heartbeat_extends_the_lease(store):
    # Given a run holding the lease (ttl 600 s)
    clock = Clock()
    mine = lease(store, clock=clock).acquire()
    # When 5 minutes pass and it renews
    clock.advance(300)
    assert mine.renew() is True
    # Then the lease expires 600 s after the renewal, not after the start
    assert held(store)["expires_at"] == (T0 + timedelta(seconds=900)).isoformat(timespec="milliseconds")
    assert held(store)["acquired_at"] == T0.isoformat(timespec="milliseconds")
    # and another run 8 minutes after the start (past the first expiry) still finds it alive
    other = lease(store, run_id="r-late", clock=clock)
    clock.advance(180)
    with pytest.raises(LeaseHeld):
        other.acquire()


def test_the_heartbeat_thread_renews_while_the_run_lives(store):
    # Given a run with a short heartbeat, when it runs a while
    mine = RunLease(store, run_id="r-1", command="sync", ttl=5, heartbeat=0.05, on_lost=lambda r: None)
    with mine:
        first = held(store)["renewed_at"]
        deadline = threading.Event()
        for _ in range(100):
            if mine.renewals >= 2:
                break
            deadline.wait(0.05)
        # then the thread renewed it, moving its expiry
        assert mine.renewals >= 2 and held(store)["renewed_at"] > first
    assert store.read_lease() is None


@pytest.mark.parametrize("planted", ["free", "expired"])
def test_of_two_runs_racing_for_the_lease_exactly_one_wins(store, planted):
    # Given a free lease, or an expired one both runs judge dead
    if planted == "expired":
        plant(store, host="codebuild-1", expires_in=-600)
    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def race(run_id: str) -> None:
        attempt = lease(store, run_id=run_id)
        barrier.wait()
        try:
            attempt.acquire()
            outcome[run_id] = "won"
        except LeaseHeld as exc:
            outcome[run_id] = exc

    threads = [threading.Thread(target=race, args=(r,)) for r in ("r-a", "r-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then exactly one holds it, and the store names that one
    winners = [r for r, v in outcome.items() if v == "won"]
    assert len(winners) == 1, outcome
    assert held(store)["owner"]["run_id"] == winners[0]


def test_a_lease_taken_over_is_lost_by_its_old_holder(store):
    # Given a run whose lease another run took over (it looked dead from there)
    clock, lost = Clock(), []
    mine = lease(store, clock=clock, lost=lost).acquire()
    raw = store.read_lease()
    doc = json.loads(raw)
    doc["owner"]["run_id"], doc["token"] = "r-usurper", "t-usurper"
    assert store.replace_lease(raw, json.dumps(doc).encode())
    # When its heartbeat renews, then it learns it lost the lease, and hands nothing more over
    assert mine.renew() is False
    assert lost and "no longer this run's" in lost[0]
    with pytest.raises(LeaseLost):
        mine.ensure_held()
    # and releasing leaves the other run's lease alone
    mine.release()
    assert held(store)["owner"]["run_id"] == "r-usurper"


def test_a_holder_that_cannot_renew_stops_before_others_may_take_over(store, monkeypatch):
    # Given a run holding the lease whose renewals fail (the store unreachable)
    clock, lost = Clock(), []
    mine = lease(store, clock=clock, lost=lost).acquire()
    monkeypatch.setattr(store, "replace_lease", lambda *a: (_ for _ in ()).throw(OSError("unreachable")))
    # When renewals keep failing until its deadline (ttl minus the skew margin)
    clock.advance(600 - mine.margin - 1)
    assert mine.renew() is False and not lost
    mine.ensure_held()  # still its own
    clock.advance(1)
    mine.renew()
    # Then it gives the lease up (by default: ends the process), before the lease expires for others
    assert lost and "not renewed" in lost[0]
    assert clock.now < T0 + timedelta(seconds=600)
    with pytest.raises(LeaseLost):
        mine.ensure_held()


@pytest.mark.parametrize(
    "env,message",
    [
        ({"LAKESEG_LEASE_TTL_SECONDS": "soon"}, "LAKESEG_LEASE_TTL_SECONDS"),
        ({"LAKESEG_LEASE_TTL_SECONDS": "600", "LAKESEG_LEASE_HEARTBEAT_SECONDS": "300"}, "at most a fifth"),
    ],
    ids=["ttl-not-a-number", "heartbeat-too-slow"],
)
def test_lease_timing_settings_are_checked(monkeypatch, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=message):
        lease_timing_from_env()


def test_lease_timing_defaults(monkeypatch):
    monkeypatch.delenv("LAKESEG_LEASE_TTL_SECONDS", raising=False)
    monkeypatch.delenv("LAKESEG_LEASE_HEARTBEAT_SECONDS", raising=False)
    assert lease_timing_from_env() == (900.0, 60.0)


def test_the_watchdog_gives_the_lease_up_while_a_renewal_hangs(store, monkeypatch):
    # Given a run whose renewal blocks (a store call that never answers)
    hang = threading.Event()
    lost: list[str] = []
    mine = RunLease(store, run_id="r-1", command="run", ttl=1.0, heartbeat=0.05, margin=0.5, on_lost=lost.append)
    mine.acquire()
    monkeypatch.setattr(store, "replace_lease", lambda *a: hang.wait(5) and False)
    # When its deadline (ttl - margin after the last renewal) passes
    mine.start_heartbeat()
    for _ in range(100):
        if lost:
            break
        threading.Event().wait(0.05)
    hang.set()
    mine.release()
    # Then the watchdog gave the lease up on time, though the heartbeat thread was stuck
    assert lost and "not renewed" in lost[0]
