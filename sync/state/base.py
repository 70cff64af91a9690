"""The state store: committed snapshots, locks and run history.

Layout under the store's root (a directory, or an S3 prefix):

    snapshots/<destination>/<segment>/current.json      pointer: file, sha256, rows, fields, ...
    snapshots/<destination>/<segment>/<run_id>-<uuid>.parquet
    locks/<destination>/<segment>.json                  owner: run id, host, pid, acquired_at
    history/<started_at>-<run_id>.json                  one document per run

A commit writes the data file under a fresh name, then replaces the pointer in
one atomic step (``os.replace`` locally, a single PutObject on S3). Until the
pointer moves, every reader sees the previous snapshot; a crash in between
leaves an orphan data file, never a half-committed state.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import duckdb

from ..errors import ConfigError, LockHeld, SegmentRefused

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
POINTER = "current.json"


def safe_name(kind: str, value: str) -> str:
    if not value or not _SAFE.match(value) or value in (".", ".."):
        raise ConfigError(f"{kind} name {value!r} cannot be used in state keys (letters, digits, _ . - only)")
    return value


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Snapshot:
    path: Path
    fields: tuple[str, ...]
    mapping_hash: str
    rows: int
    run_id: str
    committed_at: str


@dataclass
class LockInfo:
    destination: str
    segment: str
    owner: dict = field(default_factory=dict)
    acquired_at: str = ""
    age_seconds: float = 0.0
    location: str = ""

    def is_stale(self, max_age_seconds: float) -> bool:
        return self.age_seconds > max_age_seconds

    def describe(self) -> str:
        o = self.owner
        who = f"run {o.get('run_id', '?')} on {o.get('host', '?')} (pid {o.get('pid', '?')})"
        mins = self.age_seconds / 60
        age = f"{mins:.0f} min" if mins < 120 else f"{mins / 60:.1f} h"
        return f"held by {who} for {age}"


class StateStore(abc.ABC):
    url: str

    # ---- primitives each backend implements -------------------------------
    @abc.abstractmethod
    def _read(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    def _write(self, key: str, data: bytes) -> None:
        """Replace ``key`` atomically."""

    @abc.abstractmethod
    def _create(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if absent; False when it exists."""

    @abc.abstractmethod
    def _delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def _list(self, prefix: str) -> list[str]: ...

    @abc.abstractmethod
    def _upload(self, key: str, path: Path) -> None: ...

    @abc.abstractmethod
    def _download(self, key: str, path: Path) -> bool: ...

    @abc.abstractmethod
    def _location(self, key: str) -> str: ...

    # ---- the interface the sync uses ---------------------------------------
    def check_writable(self) -> None:
        key = f"_probe/{uuid.uuid4().hex}"
        try:
            self._write(key, b"lakeseg write probe")
            self._delete(key)
        except Exception as exc:  # noqa: BLE001 - any failure means "not writable"
            raise ConfigError(f"state store {self.url} is not writable: {exc}") from exc

    def _pointer_key(self, destination: str, segment: str) -> str:
        return f"snapshots/{safe_name('destination', destination)}/{safe_name('segment', segment)}/{POINTER}"

    def load_snapshot(self, destination: str, segment: str, workdir: Path) -> Snapshot | None:
        pointer_key = self._pointer_key(destination, segment)
        where = f"{destination}/{segment} at {self._location(pointer_key)}"
        raw = self._read(pointer_key)
        if raw is None:
            return None
        try:
            meta = json.loads(raw)
            data_key = meta["file"]
            expected = meta["sha256"]
            rows = int(meta["rows"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SegmentRefused(f"snapshot pointer for {where} is corrupt ({exc}); refusing to treat it as empty. "
                                 "Restore it, or delete it to resend the whole segment") from exc
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        local = workdir / Path(data_key).name
        if not self._download(data_key, local):
            raise SegmentRefused(f"snapshot data {self._location(data_key)} for {where} is missing; "
                                 "refusing to treat it as empty")
        if sha256_file(local) != expected:
            raise SegmentRefused(f"snapshot data {self._location(data_key)} for {where} fails its checksum; "
                                 "refusing to treat it as empty")
        try:
            con = duckdb.connect()
            actual = con.execute("select count(*) from read_parquet(?)", [str(local)]).fetchall()[0][0]
            con.close()
        except duckdb.Error as exc:
            raise SegmentRefused(f"snapshot data for {where} is unreadable ({exc}); refusing to treat it as empty") from exc
        if actual != rows:
            raise SegmentRefused(f"snapshot data for {where} has {actual} rows, its pointer says {rows}")
        return Snapshot(local, tuple(meta.get("fields") or ()), meta.get("mapping_hash", ""), rows,
                        meta.get("run_id", ""), meta.get("committed_at", ""))

    def commit_snapshot(self, destination: str, segment: str, parquet: Path, *, fields, mapping_hash: str,
                        rows: int, run_id: str) -> Snapshot:
        pointer_key = self._pointer_key(destination, segment)
        folder = pointer_key.rsplit("/", 1)[0]
        data_key = f"{folder}/{safe_name('run id', run_id)}-{uuid.uuid4().hex[:8]}.parquet"
        previous = self._read(pointer_key)
        self._upload(data_key, Path(parquet))
        committed_at = utcnow().isoformat(timespec="seconds")
        meta = {"file": data_key, "sha256": sha256_file(Path(parquet)), "rows": rows, "fields": list(fields),
                "mapping_hash": mapping_hash, "run_id": run_id, "committed_at": committed_at}
        self._write(pointer_key, json.dumps(meta, indent=2).encode())
        # The pointer has moved: the superseded data file is garbage now.
        if previous:
            with contextlib.suppress(Exception):
                old = json.loads(previous)["file"]
                if old != data_key:
                    self._delete(old)
        return Snapshot(Path(parquet), tuple(fields), mapping_hash, rows, run_id, committed_at)

    # ---- locks ---------------------------------------------------------------
    def _lock_key(self, destination: str, segment: str) -> str:
        return f"locks/{safe_name('destination', destination)}/{safe_name('segment', segment)}.json"

    def read_lock(self, destination: str, segment: str) -> LockInfo | None:
        key = self._lock_key(destination, segment)
        raw = self._read(key)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {"owner": {"note": "unreadable lock file"}, "acquired_at": ""}
        acquired = doc.get("acquired_at", "")
        try:
            age = (utcnow() - datetime.fromisoformat(acquired)).total_seconds()
        except ValueError:
            age = 0.0
        return LockInfo(destination, segment, doc.get("owner") or {}, acquired, age, self._location(key))

    @contextlib.contextmanager
    def lock(self, destination: str, segment: str, owner: dict) -> Iterator[LockInfo]:
        key = self._lock_key(destination, segment)
        token = uuid.uuid4().hex
        now = utcnow().isoformat(timespec="seconds")
        doc = {"owner": owner, "acquired_at": now, "token": token}
        if not self._create(key, json.dumps(doc).encode()):
            held = self.read_lock(destination, segment)
            desc = held.describe() if held else "held by another run"
            raise LockHeld(
                f"{destination}/{segment} is locked ({desc}, {self._location(key)}). If that run is dead, "
                f"remove the lock with `lakeseg unlock --destination {destination} --segment {segment}`"
            )
        info = LockInfo(destination, segment, owner, now, 0.0, self._location(key))
        try:
            yield info
        finally:
            # Release only a lock that is still ours.
            raw = self._read(key)
            with contextlib.suppress(ValueError, TypeError):
                if raw is not None and json.loads(raw).get("token") == token:
                    self._delete(key)

    def force_unlock(self, destination: str, segment: str) -> LockInfo | None:
        info = self.read_lock(destination, segment)
        if info is not None:
            self._delete(self._lock_key(destination, segment))
        return info

    # ---- history -------------------------------------------------------------
    @staticmethod
    def _history_key(run: dict) -> str:
        started = re.sub(r"[^0-9TZ]", "", str(run.get("started_at", "")).replace("+00:00", "Z"))
        return f"history/{started}-{safe_name('run id', run['run_id'])}.json"

    def write_run(self, run: dict) -> None:
        self._write(self._history_key(run), json.dumps(run, indent=2, default=str).encode())

    def list_runs(self, limit: int = 20) -> list[dict]:
        keys = sorted(self._list("history/"), reverse=True)[:limit]
        runs = []
        for key in keys:
            raw = self._read(key)
            if raw:
                with contextlib.suppress(ValueError):
                    runs.append(json.loads(raw))
        return runs

    def get_run(self, run_id: str) -> dict | None:
        for key in self._list("history/"):
            if key.endswith(f"-{run_id}.json"):
                raw = self._read(key)
                return json.loads(raw) if raw else None
        return None


__all__ = ["LockInfo", "Snapshot", "StateStore", "asdict", "safe_name"]
