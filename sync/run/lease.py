"""The run lease: one ``lakeseg run``/``sync`` at a time per deployment, whoever starts it.

One document in the state store (``lease/run.json``) names the run that holds
it: run id, command, host, pid (and pid namespace, process start time),
``renewed_at`` and ``expires_at``. ``lakeseg run`` takes it before ``dbt build``
and keeps it through the sync; ``lakeseg sync`` takes it itself (``plan``, which
writes nothing, does not). Every runner shares the state store, so the
CodeBuild runner, the GitHub workflow and a person at a terminal exclude each
other.

Taking it: create-exclusive (local ``link``, S3 ``IfNoneMatch``), so of two
racing runs exactly one wins. A lease that is already there is taken over --
by compare-and-swap on its exact bytes, so of two runs that both judged it dead
only one gets it -- when its holder is dead:

* **on this host, its process is gone** (same host name and pid namespace, and
  the pid no longer runs or now belongs to a process started at another time):
  taken at once;
* **anywhere, it expired**: ``expires_at`` (last renewal + ``ttl``) has passed.
  A holder still running on this host is never judged dead, expired or not.

Otherwise the run stops with ``LeaseHeld`` (exit 3) before building anything.
A takeover is never silent: it is logged as a warning and noted in the run's
history, naming the dead run.

Why an expired holder is dead, not just slow: the holder renews the lease
every ``heartbeat`` seconds from a thread. It writes ``expires_at`` = (wall
time at the start of the renewal) + ``ttl``, and on its own monotonic clock it
keeps a deadline of (start of the last successful renewal) + ``ttl`` - ``margin``.
Past that deadline it hands nothing more over (``ensure_held`` raises
``LeaseLost`` before every delivery and commit) and the heartbeat thread ends
the process (``os._exit(1)``): a killed run is a case lakeseg is built for
(ids in doubt are resent). So the holder is gone ``margin`` seconds before anyone
may take its lease, as long as the hosts' clocks agree within ``margin``.
A renewal that finds the lease no longer its own (taken over) ends it at once.

Segment locks carry the lease token of the run that took them. While a run
holds the lease, a segment lock taken under any other lease token belongs to a
run that no longer holds a lease -- dead by the rule above -- and is taken
over (see ``SyncRun._acquire_lock``): a killed build no longer leaves locks
that need ``lakeseg unlock``.

Settings (environment): ``LAKESEG_LEASE_TTL_SECONDS`` (default 900) and
``LAKESEG_LEASE_HEARTBEAT_SECONDS`` (default 60, at most a fifth of the ttl).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sync.core.clock import now as _utcnow
from sync.core.clock import parse_stamp, stamp
from sync.core.errors import ConfigError, LeaseHeld, LeaseLost
from sync.state.documents import Owner

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 900.0
DEFAULT_HEARTBEAT_SECONDS = 60.0
LEASE_LOST_EXIT_CODE = 1


def _stamp(when: datetime) -> str:
    return stamp(when, timespec="milliseconds")


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def this_process() -> dict:
    """Who we are, as a lease or lock owner records it."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_ns": _pid_namespace(), "pid_start": _process_start(pid)}


def owner_is_here(owner: dict) -> bool:
    """The owner ran on this host, in this pid namespace (so its pid means the same process numbering)."""
    return (
        owner.get("host") == socket.gethostname()
        and isinstance(owner.get("pid"), int)
        and owner.get("pid_ns", _pid_namespace()) == _pid_namespace()
    )


def owner_is_dead_here(owner: dict) -> bool:
    """True only when the owner ran here and its process is gone (or its pid is now another process)."""
    if not owner_is_here(owner):
        return False
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    started = owner.get("pid_start")
    return bool(started) and _process_start(pid) not in (None, started)


def _seconds_from_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"{name}={raw!r}: give a number of seconds (a positive number)")
    return value


def lease_timing_from_env() -> tuple[float, float]:
    """(ttl, heartbeat) from ``LAKESEG_LEASE_TTL_SECONDS`` and ``LAKESEG_LEASE_HEARTBEAT_SECONDS``."""
    ttl = _seconds_from_env("LAKESEG_LEASE_TTL_SECONDS", DEFAULT_TTL_SECONDS)
    heartbeat = _seconds_from_env("LAKESEG_LEASE_HEARTBEAT_SECONDS", min(DEFAULT_HEARTBEAT_SECONDS, ttl / 5))
    if heartbeat > ttl / 5:
        raise ConfigError(
            f"LAKESEG_LEASE_HEARTBEAT_SECONDS={heartbeat:g} must be at most a fifth of "
            f"LAKESEG_LEASE_TTL_SECONDS={ttl:g}: a run must renew several times before its lease expires"
        )
    return ttl, heartbeat


class LeaseDocument(BaseModel):
    """``lease/run.json``: who holds the run lease (run id, command, host, pid) and until when."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    owner: Owner = Field(default_factory=dict)
    token: str = ""
    acquired_at: str | None = None
    renewed_at: str | None = None
    expires_at: str | None = None
    ttl_seconds: float | None = None
    heartbeat_seconds: float | None = None


@dataclass(frozen=True)
class LeaseDoc:
    """A lease as read from the store: its exact bytes (what a takeover compares) and what they say."""

    raw: bytes
    doc: LeaseDocument

    @property
    def owner(self) -> dict:
        return self.doc.owner

    @property
    def token(self) -> str:
        return self.doc.token

    @property
    def expires_at(self) -> datetime | None:
        return parse_stamp(self.doc.expires_at)

    def describe(self, now: datetime) -> str:
        o = self.owner
        started = "?" if self.doc.acquired_at is None else self.doc.acquired_at
        who = (
            f"run {o.get('run_id', '?')} ({'lakeseg ' + str(o['command']) if o.get('command') else 'lakeseg'}) "
            f"on {o.get('host', '?')} (pid {o.get('pid', '?')}), started {started}"
        )
        renewed = parse_stamp(self.doc.renewed_at)
        expires = self.expires_at
        if renewed is not None:
            who += f", last heartbeat {max(0.0, (now - renewed).total_seconds()):.0f}s ago"
        if expires is not None:
            left = (expires - now).total_seconds()
            who += f", expires in {left:.0f}s" if left >= 0 else f", expired {-left:.0f}s ago"
        return who


def _load(raw: bytes) -> LeaseDoc:
    try:
        doc = LeaseDocument.model_validate_json(raw)
    except ValidationError:
        doc = LeaseDocument(owner={"note": "unreadable lease document"})
    return LeaseDoc(raw, doc)


def _exit_process(reason: str) -> None:
    """The holder outlived its lease: end the process now (see the module docstring)."""
    log.critical(
        "%s; ending this run now (exit %d) so that another run may take over safely", reason, LEASE_LOST_EXIT_CODE
    )
    logging.shutdown()
    os._exit(LEASE_LOST_EXIT_CODE)


class RunLease:
    """Holds the run lease of ``state`` for one run; use as a context manager (acquire, heartbeat, release)."""

    def __init__(
        self,
        state,
        *,
        run_id: str,
        command: str,
        ttl: float = DEFAULT_TTL_SECONDS,
        heartbeat: float = DEFAULT_HEARTBEAT_SECONDS,
        margin: float | None = None,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        on_lost: Callable[[str], None] = _exit_process,
    ):
        if heartbeat <= 0 or ttl <= 0 or heartbeat > ttl / 5:
            raise ConfigError(
                f"lease heartbeat {heartbeat:g}s must be positive and at most a fifth of its ttl {ttl:g}s"
            )
        self.state = state
        self.run_id = run_id
        self.command = command
        self.ttl = ttl
        self.heartbeat = heartbeat
        # How far the holder's deadline runs ahead of the expiry others judge by: clock skew allowance.
        self.margin = margin if margin is not None else max(ttl / 5, min(60.0, ttl / 2))
        self.clock = clock
        self.monotonic = monotonic
        self.on_lost = on_lost
        self.token = uuid.uuid4().hex
        self.took_over: str | None = None  # the note when this run took the lease from a dead run
        self.lost: str | None = None
        self.renewals = 0
        self._raw: bytes | None = None
        self._deadline = 0.0  # monotonic: past it, this run no longer holds the lease
        self._acquired_at = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._owner = {"run_id": run_id, "command": command, **this_process()}

    # ------------------------------------------------------------ the document
    def _document(self, now: datetime) -> bytes:
        return (
            LeaseDocument(
                owner=self._owner,
                token=self.token,
                acquired_at=self._acquired_at or _stamp(now),
                renewed_at=_stamp(now),
                expires_at=_stamp(now + timedelta(seconds=self.ttl)),
                ttl_seconds=self.ttl,
                heartbeat_seconds=self.heartbeat,
            )
            .model_dump_json(indent=2)
            .encode()
        )

    def _dead(self, held: LeaseDoc, now: datetime) -> str | None:
        """Why ``held``'s owner is dead, or None while it may still be alive."""
        if owner_is_dead_here(held.owner):
            return "its process is gone"
        if owner_is_here(held.owner):
            return None  # still running here: alive, whatever its lease says
        expires = held.expires_at
        if expires is None:  # unreadable: nobody can tell; a person removes it (the message names where)
            return None
        if now > expires:
            return f"its lease expired {(now - expires).total_seconds():.0f}s ago (no heartbeat since {held.doc.renewed_at})"
        return None

    # ------------------------------------------------------------------ public
    def acquire(self) -> RunLease:
        """Take the lease, or raise LeaseHeld naming the live holder."""
        self.state.check_writable()  # a store that cannot take the lease is a configuration error (exit 2)
        for _attempt in range(5):
            start, now = self.monotonic(), self.clock()
            self._acquired_at = _stamp(now)
            data = self._document(now)
            if self.state.create_lease(data):
                self._held(data, start)
                return self
            raw = self.state.read_lease()
            if raw is None:
                continue  # released meanwhile: try again
            held = _load(raw)
            why = self._dead(held, now)
            if why is None:
                raise LeaseHeld(
                    f"another run holds the lease ({held.describe(now)}, {self.state.lease_location()}); "
                    "nothing was built or synced. Runs of one deployment never overlap: this one ends here. "
                    "The lease frees itself when that run ends, or once its heartbeat stops for "
                    f"{held.doc.ttl_seconds if held.doc.ttl_seconds is not None else self.ttl:g}s (see docs/scheduling.md)"
                )
            if self.state.replace_lease(raw, data):
                self._held(data, start)
                dead_run = held.owner.get("run_id", "?")
                self.took_over = f"took over the run lease of dead run {dead_run} ({held.describe(now)}): {why}"
                log.warning("%s", self.took_over)
                return self
            # Another run took it over (or it was renewed) between our read and our swap: look again.
        raise LeaseHeld(
            f"could not take the run lease at {self.state.lease_location()}: it kept changing; another run is taking it"
        )

    def _held(self, data: bytes, start: float) -> None:
        self._raw = data
        self._deadline = start + self.ttl - self.margin

    def renew(self) -> bool:
        """One heartbeat: extend the lease if it is still ours. False if it was not renewed."""
        if self._raw is None or self.lost:
            return False
        start, now = self.monotonic(), self.clock()
        data = self._document(now)
        try:
            renewed = self.state.replace_lease(self._raw, data)
        except Exception as exc:  # noqa: BLE001 - a failed heartbeat is retried until the deadline
            log.warning("could not renew the run lease (%s: %s); retrying", type(exc).__name__, exc)
            self._check_deadline()
            return False
        if not renewed:
            self._lose("the run lease is no longer this run's (another run took it over)")
            return False
        self._held(data, start)
        self.renewals += 1
        return True

    def _check_deadline(self) -> None:
        if self.monotonic() >= self._deadline:
            self._lose(f"the run lease was not renewed for {self.ttl - self.margin:.0f}s")

    def _lose(self, reason: str) -> None:
        if self.lost:
            return
        self.lost = f"run {self.run_id}: {reason}"
        self.on_lost(self.lost)

    def ensure_held(self) -> None:
        """Raise LeaseLost unless this run still holds the lease (checked before each hand-over and commit)."""
        if self._raw is None:
            return  # no lease taken (a library caller): nothing to check
        if not self.lost:
            self._check_deadline()
        if self.lost:
            raise LeaseLost(f"{self.lost}; nothing more is handed over or committed by this run")

    def release(self) -> None:
        self._stop.set()
        for thread in (self._thread, self._watchdog):
            if thread is not None:
                thread.join(timeout=10)
        if self._raw is not None and not self.lost:
            try:
                self.state.delete_lease(self._raw)
            except Exception as exc:  # noqa: BLE001 - it expires on its own
                log.warning("could not release the run lease (%s); it expires in %.0fs", exc, self.ttl)
        self._raw = None

    def start_heartbeat(self) -> None:
        """Two daemon threads: one renews every ``heartbeat`` seconds; a watchdog acts on the deadline even
        while a renewal hangs (a store call can block for minutes) and the main thread waits on a platform."""
        self._thread = threading.Thread(target=self._beat, name=f"lakeseg-lease-{self.run_id}", daemon=True)
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch, name=f"lakeseg-lease-watch-{self.run_id}", daemon=True)
        self._watchdog.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            self.renew()
            if self.lost:
                return

    def _watch(self) -> None:
        while not self.lost:
            left = self._deadline - self.monotonic()
            if left <= 0:
                self._check_deadline()
                return
            if self._stop.wait(min(left, self.heartbeat)):
                return

    def __enter__(self) -> RunLease:
        self.acquire()
        self.start_heartbeat()
        return self

    def __exit__(self, *_exc) -> None:
        self.release()


def open_lease(state, *, run_id: str, command: str) -> RunLease:
    """The run lease with the ttl and heartbeat from the environment."""
    ttl, heartbeat = lease_timing_from_env()
    return RunLease(state, run_id=run_id, command=command, ttl=ttl, heartbeat=heartbeat)
