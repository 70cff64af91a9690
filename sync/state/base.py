"""The state store: committed snapshots, in-doubt records, locks and run history.

Layout under the store's root (a directory, or an S3 prefix):

    snapshots/<destination>/<segment>/current.json      pointer: file, sha256, rows, fields, quarantine, ...
    snapshots/<destination>/<segment>/<run_id>-<uuid>.parquet      Id, k1, k2, digest per member
    snapshots/<destination>/<segment>/in_doubt.json     pointer to the ids of an unconfirmed delivery
    snapshots/<destination>/<segment>/in-doubt-<run_id>-<uuid>.parquet   Id per row handed over
    snapshots/<destination>/<segment>/search.json       pointer to an unfinished search for refused rows
    snapshots/<destination>/<segment>/search-<run_id>-<uuid>.parquet     Id, grp, pos per suspect row
    snapshots/<destination>/<segment>/jobs.json         platform jobs created and not known to have ended
    locks/<destination>/<segment>.json                  owner: run id, host, pid, lease, acquired_at, token
    lease/run.json                                      the run lease: owner, renewed_at, expires_at, token
    history/<started_at>-<run_id>.json                  one document per run (one line of JSON)
    snapshots/<destination>/<segment>/lake-<run_id>-<hex>/...   a base Athena wrote (the diff in Athena)
    keys/<fingerprint>/key.parquet                      the diff in Athena's digest key (a subkey, never the secret)
    lake-scratch/<destination>/<segment>/<run_id>/...   Ids a run's diff in Athena resends (while it runs)

A commit writes the data file under a fresh name, then replaces the pointer in
one atomic step (``os.replace`` locally, a single PutObject on S3). Until the
pointer moves, every reader sees the previous snapshot; a crash in between
leaves an orphan data file, never a half-committed state.

The in-doubt record is written the same way *before* files are handed to a
destination. It names every Id the delivery carries (plus those of earlier
unconfirmed deliveries), so the next run resends them whatever the committed
snapshot says. A commit by the same run supersedes it: a record whose run id
is the committed snapshot's is void, so commit-then-crash is harmless.

The search record holds the groups of Ids a destination's search for refused
rows left unproven (each still holds a refused row; which, is not known yet),
with the header they were found with. Ids only, no values. The next run resends
those rows and continues the search; a commit that leaves none clears it.

Every pointer is schema-checked (one pydantic model per document, in
``sync/state/documents.py``) and may only name a data file in its own folder;
a corrupt one refuses its segment, never the run.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from sync.core import clock, failpoints
from sync.core.errors import ConfigError, LockHeld, SegmentRefused
from sync.state import deltas, documents
from sync.state.documents import (
    PLATFORM_REFUSED,
    DataPart,
    DataPointer,
    DeltaPart,
    DocumentError,
    InDoubtPointer,
    JobLedgerDocument,
    LakeBase,
    LakePart,
    LedgerEntry,
    LockDocument,
    QuarantineEntry,
    RunRecord,
    SearchPointer,
    SnapshotDeltaPointer,
    SnapshotLakePointer,
    SnapshotPointer,
)

log = logging.getLogger(__name__)

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
P = TypeVar("P", bound=DataPointer)
POINTER = "current.json"
IN_DOUBT = "in_doubt.json"
LEASE_KEY = "lease/run.json"  # the run lease: one run at a time per deployment (sync/run/lease.py)
SNAPSHOT_SCHEMA = {"Id": "VARCHAR", "k1": "UBIGINT", "k2": "UBIGINT", "digest": "UBIGINT"}
# Destinations whose data expires also keep when each member was last confirmed (UTC).
SNAPSHOT_SCHEMA_CONFIRMED = {**SNAPSHOT_SCHEMA, "confirmed_at": "TIMESTAMP"}
# A snapshot the diff in Athena keeps (sync.run.pushdown): Trino's signed 64-bit keys and digest.
SNAPSHOT_SCHEMA_LAKE = {"Id": "VARCHAR", "k1": "BIGINT", "k2": "BIGINT", "digest": "BIGINT"}
IN_DOUBT_SCHEMA = {"Id": "VARCHAR"}
# The data files snapshot commits store: a base ``<run id>-<8 hex>.parquet`` or a delta ``delta-<...>`` (never an
# in-doubt or search record's file, which have their own prefixes).
_SNAPSHOT_FILE = re.compile(r"^(?!in-doubt-|search-)[A-Za-z0-9_.-]+-[0-9a-f]{8}\.parquet$")
# A file of a base Athena wrote: ``lake-<run id>-<8 hex>/<any name Athena chose>``.
_LAKE_FILE = re.compile(r"^(lake-[A-Za-z0-9_.-]+-[0-9a-f]{8})/[^/]+$")
_HINT = "Restore it, or delete it to resend the whole segment"
SEARCH = "search.json"
JOBS = "jobs.json"  # the platform jobs a segment's deliveries created and that may not have ended
SEARCH_SCHEMA = {"Id": "VARCHAR", "grp": "INTEGER", "pos": "INTEGER"}


def safe_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value or not _SAFE.match(value) or value in (".", ".."):
        raise ConfigError(f"{kind} name {value!r} cannot be used in state keys (letters, digits, _ . - only)")
    return value


def utcnow() -> datetime:
    return clock.now()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parquet_facts(path: Path) -> tuple[dict[str, str], int]:
    """A Parquet file's columns (name -> type) and row count, read with one DuckDB connection."""
    con = duckdb.connect()
    try:
        columns = con.execute("describe select * from read_parquet(?)", [str(path)]).fetchall()
        rows = con.execute("select count(*) from read_parquet(?)", [str(path)]).fetchall()[0][0]
    finally:
        con.close()
    return {c[0]: c[1] for c in columns}, rows


# Snapshot files: Ids are unique and their hashes random, so neither dictionary encoding nor a codec shrinks them.
_SNAPSHOT_FORMAT = "format parquet, compression uncompressed, dictionary_size_limit 1"
# The state store's own DuckDB work (a delta, a membership) spills past this.
_MEMORY_LIMIT = "256MB"


def _connect(spill: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"set memory_limit = '{_MEMORY_LIMIT}'")
    con.execute("set temp_directory = '" + str(spill).replace("'", "''") + "'")
    con.execute("set preserve_insertion_order = false")
    return con


def _lit(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _rp(path: Path | list[Path]) -> str:
    """read_parquet of one file, or of several as one relation."""
    if isinstance(path, Path):
        return f"read_parquet({_lit(path)})"
    return f"read_parquet([{', '.join(_lit(p) for p in path)}], union_by_name = true)"


def _membership(base: Path | list[Path], delta_files: list[Path], columns: list[str], out: Path) -> Path:
    """Write the current membership (latest row per Id over the base -- one file, or the files of a base
    Athena wrote -- and deltas) to ``out``."""
    con = _connect(out.parent / ".spill")
    try:
        sql = deltas.current_sql(_rp(base), [_rp(d) for d in delta_files], columns)
        con.execute(f"copy ({sql}) to '{str(out).replace(chr(39), chr(39) * 2)}' ({_SNAPSHOT_FORMAT})")
    finally:
        con.close()
    return out


def _write_delta(new: Path, previous: Path, columns: list[str], out: Path) -> tuple[int, int]:
    """Write the delta from ``previous`` to ``new`` (both memberships) to ``out``: (upserts, tombstones)."""
    con = _connect(out.parent / ".spill")
    try:
        sql = deltas.delta_sql(_rp(new), _rp(previous), columns)
        con.execute(f"copy ({sql}) to '{str(out).replace(chr(39), chr(39) * 2)}' ({_SNAPSHOT_FORMAT})")
    finally:
        con.close()
    return _count_delta(out)


def _count_delta(path: Path) -> tuple[int, int]:
    """A delta file's (upserts, tombstones)."""
    con = _connect(path.parent / ".spill")
    try:
        upserts, tombstones = con.execute(
            f"select count(*) filter (where not {deltas.DELETED}), count(*) filter (where {deltas.DELETED}) "
            f"from {_rp(path)}"
        ).fetchall()[0]
    finally:
        con.close()
    return int(upserts), int(tombstones)


def _named_files(pointer_bytes: bytes) -> set[str]:
    """Every data file a pointer names: its file (format 1), or its base and deltas (format 2); none when it is
    unreadable."""
    try:
        return documents.parse(documents.NamedFiles, pointer_bytes).keys()
    except DocumentError:
        return set()


@dataclass(frozen=True)
class QuarantinedRow:
    """A row the platform keeps rejecting: resent every run, listed until accepted.

    It holds the Id, a code (``platform-refused``), run ids and a count: the platform's message, which may
    quote the row's values, goes to the local log at debug level only.
    """

    id: str
    code: str
    first_run_id: str
    last_run_id: str
    attempts: int = 1

    @classmethod
    def from_dict(cls, doc: Any) -> QuarantinedRow:
        """An entry read back from a pointer. One written before codes (with the platform's ``message``) is read
        as ``platform-refused`` and its message dropped: the next commit rewrites the pointer without it."""
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            raise ValueError("a quarantine entry has no id")
        return cls.from_entry(QuarantineEntry.model_validate(doc))

    @classmethod
    def from_entry(cls, entry: QuarantineEntry) -> QuarantinedRow:
        return cls(entry.id, entry.code, entry.first_run_id, entry.last_run_id, entry.attempts)

    def entry(self) -> QuarantineEntry:
        return QuarantineEntry(**asdict(self))


@dataclass(frozen=True)
class Snapshot:
    path: Path
    fields: tuple[str, ...]
    mapping_hash: str
    rows: int
    run_id: str
    committed_at: str
    quarantine: tuple[QuarantinedRow, ...] = ()
    confirmed: bool = False  # the data file has confirmed_at per member
    parts: SnapshotParts | None = field(default=None, compare=False, repr=False)  # what the pointer named


@dataclass(frozen=True)
class SnapshotParts:
    """What a loaded snapshot's pointer named: its bytes, the base and the deltas (file, sha256, rows)."""

    raw: bytes
    base: DataPart
    deltas: tuple[DeltaPart, ...]
    columns: dict[str, str]


@dataclass(frozen=True)
class PointedSnapshot:
    """A committed snapshot as its pointer alone says it, nothing downloaded: the diff in Athena
    (``sync.run.pushdown``) reads the files where they are, by their locations."""

    pointer: documents.AnySnapshotPointer
    raw: bytes  # the pointer's bytes: a commit moves it only while it still holds them
    base: tuple[str, ...]  # locations (s3://...) of the base's files
    deltas: tuple[str, ...]  # location of each delta's file, oldest first

    @property
    def rows(self) -> int:
        return self.pointer.rows

    @property
    def mapping_hash(self) -> str:
        return self.pointer.mapping_hash

    @property
    def run_id(self) -> str:
        return self.pointer.run_id

    @property
    def fields(self) -> tuple[str, ...]:
        return self.pointer.fields

    @property
    def quarantine(self) -> tuple[QuarantinedRow, ...]:
        return tuple(QuarantinedRow.from_entry(q) for q in self.pointer.quarantine)


@dataclass(frozen=True)
class InDoubt:
    """Ids handed to the destination by a run that never confirmed."""

    path: Path  # Parquet: Id
    rows: int
    run_id: str
    recorded_at: str


@dataclass(frozen=True)
class SavedSearch:
    """An unfinished search for refused rows: groups of Ids still suspect, and the header they were found with."""

    groups: tuple[tuple[str, ...], ...]
    fields: tuple[str, ...]
    run_id: str

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(i for group in self.groups for i in group)

    @property
    def rows(self) -> int:
        return sum(len(group) for group in self.groups)


@dataclass
class LockInfo:
    destination: str
    segment: str
    owner: dict = field(default_factory=dict)
    acquired_at: str = ""
    age_seconds: float = 0.0
    location: str = ""
    token: str = ""

    def is_stale(self, max_age_seconds: float) -> bool:
        return self.age_seconds > max_age_seconds

    def describe(self) -> str:
        o = self.owner
        who = f"run {o.get('run_id', '?')} on {o.get('host', '?')} (pid {o.get('pid', '?')})"
        mins = self.age_seconds / 60
        age = f"{mins:.0f} min" if mins < 120 else f"{mins / 60:.1f} h"
        return f"held by {who} for {age}"


def _age_seconds(stamp: str) -> float:
    when = clock.parse_stamp(stamp)  # a naive stamp is taken as UTC, never compared with an aware one
    return 0.0 if when is None else (utcnow() - when).total_seconds()


class StateStore(abc.ABC):
    url: str
    # When a commit writes a new base instead of a delta (settings: snapshots.compact_share, max_deltas).
    compaction: deltas.Compaction = deltas.Compaction.from_env()

    @property
    def _loaded(self) -> dict[tuple[str, str], Snapshot]:
        """The snapshot this store last loaded per (destination, segment): what a commit's delta is taken against."""
        return self.__dict__.setdefault("_loaded_snapshots", {})

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
    def _delete_if_unchanged(self, key: str, expected: bytes) -> bool:
        """Delete ``key`` only if it still holds exactly ``expected`` (compare-and-delete)."""

    @abc.abstractmethod
    def _replace_if_unchanged(self, key: str, expected: bytes, data: bytes) -> bool:
        """Replace ``key`` with ``data`` only if it still holds exactly ``expected`` (compare-and-swap)."""

    @abc.abstractmethod
    def _list(self, prefix: str) -> list[str]: ...

    @abc.abstractmethod
    def _upload(self, key: str, path: Path) -> None: ...

    @abc.abstractmethod
    def _download(self, key: str, path: Path) -> bool: ...

    @abc.abstractmethod
    def _location(self, key: str) -> str: ...

    def _list_sized(self, prefix: str) -> list[tuple[str, str, int]]:
        """(key, ETag, size) of every object under ``prefix``: what a base Athena wrote is recorded by."""
        raise ConfigError(f"the state store at {self.url} keeps no snapshot Athena writes: put the state on S3")

    def _download_exact(self, key: str, path: Path, etag: str) -> bool:
        """Download ``key`` only while its ETag is ``etag``; False when it is missing or changed."""
        raise ConfigError(f"the state store at {self.url} keeps no snapshot Athena writes: put the state on S3")

    # ---- the interface the sync uses ---------------------------------------
    def check_writable(self) -> None:
        key = f"_probe/{uuid.uuid4().hex}"
        try:
            self._write(key, b"lakeseg write probe")
            self._delete(key)
        except Exception as exc:  # noqa: BLE001 - any failure means "not writable"
            raise ConfigError(f"state store {self.url} is not writable: {exc}") from exc

    def collect_debris(self, is_dead, max_age_seconds: float) -> list[str]:
        """Remove what dead writers left behind (temporary files); a store that writes in one step has none."""
        return []

    def _folder(self, destination: str, segment: str) -> str:
        return f"snapshots/{safe_name('destination', destination)}/{safe_name('segment', segment)}"

    def _pointer_key(self, destination: str, segment: str, name: str = POINTER) -> str:
        return f"{self._folder(destination, segment)}/{name}"

    # ---- pointed files: one mechanism for snapshots and in-doubt records -----
    def _load_pointed(
        self,
        destination: str,
        segment: str,
        name: str,
        model: type[P],
        schema: dict[str, str] | tuple[dict, ...],
        workdir: Path,
        what: str,
    ) -> tuple[P, Path, dict[str, str]] | None:
        """Read a pointer and the data file it names, checking everything it claims: (pointer, file, columns).

        Any inconsistency raises SegmentRefused: a damaged record is never
        read as "nothing there" (that would resend or forget a whole segment).
        """
        found = self._read_pointer(destination, segment, name, what, lambda raw: documents.parse(model, raw))
        if found is None:
            return None
        pointer, _raw = found
        local, columns = self._fetch_part(destination, segment, name, pointer, schema, workdir, what)
        return pointer, local, columns

    def _read_pointer(self, destination: str, segment: str, name: str, what: str, parse) -> tuple[Any, bytes] | None:
        """A pointer document read by ``parse`` (one of ``sync.state.documents``), with its bytes; None when there
        is none."""
        pointer_key = self._pointer_key(destination, segment, name)
        raw = self._read(pointer_key)
        if raw is None:
            return None
        try:
            return parse(raw), raw
        except DocumentError as exc:
            raise SegmentRefused(
                f"{what} pointer for {destination}/{segment} at {self._location(pointer_key)} is corrupt ({exc}); "
                f"refusing to treat it as empty. {_HINT}"
            ) from exc

    def _fetch_part(
        self,
        destination: str,
        segment: str,
        name: str,
        part: DataPart,
        schema: dict[str, str] | tuple[dict, ...],
        workdir: Path,
        what: str,
    ) -> tuple[Path, dict[str, str]]:
        """Download one data file a pointer names and check what the pointer claims of it."""
        folder = self._folder(destination, segment)
        where = f"{destination}/{segment} at {self._location(f'{folder}/{name}')}"
        leaf = self._confined_leaf(folder, part.file, what, where)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        local = workdir / leaf
        self._fetch_checked(part, local, what, where)
        return local, self._checked_columns(part, local, schema, what, where)

    @staticmethod
    def _confined_leaf(folder: str, data_key: str, what: str, where: str) -> str:
        """The data file's name in ``folder``: a tampered pointer can neither read nor, on the next commit,
        delete any other file. _SAFE admits no "/" and no empty name: the leaf is a file directly in the folder."""
        leaf = data_key.removeprefix(folder + "/")
        if leaf == data_key or not _SAFE.match(leaf) or not leaf.endswith(".parquet"):
            raise SegmentRefused(
                f"{what} pointer for {where} names {data_key!r}, outside its folder {folder}/; "
                "refusing to read it. " + _HINT
            )
        return leaf

    def _fetch_checked(self, part: DataPart, local: Path, what: str, where: str) -> None:
        """Download the data file to ``local``; it must be there and match the pointer's checksum."""
        if not self._download(part.file, local):
            raise SegmentRefused(
                f"{what} data {self._location(part.file)} for {where} is missing; refusing to treat it as empty"
            )
        if sha256_file(local) != part.sha256:
            raise SegmentRefused(
                f"{what} data {self._location(part.file)} for {where} fails its checksum; refusing to treat it as empty"
            )

    def _checked_columns(
        self, part: DataPart, local: Path, schema: dict[str, str] | tuple[dict, ...], what: str, where: str
    ) -> dict[str, str]:
        """The data file's columns, which must be one of ``schema``'s, and its rows the pointer's count."""
        try:
            found, actual = parquet_facts(local)
        except duckdb.Error as exc:
            raise SegmentRefused(
                f"{what} data for {where} is unreadable ({exc}); refusing to treat it as empty"
            ) from exc
        schemas = schema if isinstance(schema, tuple) else (schema,)
        if found not in schemas:
            raise SegmentRefused(
                f"{what} data {self._location(part.file)} for {where} has columns {found}, "
                f"expected {' or '.join(str(s) for s in schemas)}; refusing to read it"
            )
        if actual != part.rows:
            raise SegmentRefused(f"{what} data for {where} has {actual} rows, its pointer says {part.rows}")
        return found

    def _point_to(
        self, destination: str, segment: str, name: str, parquet: Path, prefix: str, model: type[P], **fields: Any
    ) -> str:
        """Store ``parquet`` under a fresh name, then move pointer ``name`` (a ``model`` with ``fields``) to it in
        one write."""
        folder = self._folder(destination, segment)
        pointer_key = f"{folder}/{name}"
        data_key = f"{folder}/{prefix}{safe_name('run id', fields['run_id'])}-{uuid.uuid4().hex[:8]}.parquet"
        previous = self._read(pointer_key)
        self._upload(data_key, Path(parquet))
        pointer = model(file=data_key, sha256=sha256_file(Path(parquet)), **fields)
        self._write(pointer_key, pointer.dump(indent=2))
        if previous:  # the pointer has moved: the superseded data file is garbage now
            self._delete_data(folder, previous, keep=data_key)
        return data_key

    def _delete_data(self, folder: str, pointer_bytes: bytes, keep: str | None = None) -> None:
        """Delete the data files a superseded pointer named (its base and deltas), except those in use."""
        self._delete_files(folder, _named_files(pointer_bytes) - {keep})

    def _delete_files(self, folder: str, keys) -> None:
        """Delete each key directly in ``folder``; a key anywhere else (a tampered pointer can name any) stays."""
        for old in keys:
            if isinstance(old, str) and old.startswith(folder + "/") and "/" not in old[len(folder) + 1 :]:
                with contextlib.suppress(Exception):
                    self._delete(old)

    # ---- snapshots -----------------------------------------------------------
    def load_snapshot(self, destination: str, segment: str, workdir: Path) -> Snapshot | None:
        """The committed snapshot: one local Parquet file of the current membership, whatever its format.

        A format-1 pointer names one data file; a format-2 pointer names a base
        and deltas (``sync.state.deltas``), each checked like a format-1 file,
        and the membership is their latest row per Id.
        """
        found = self._read_pointer(destination, segment, POINTER, "snapshot", documents.parse_snapshot_pointer)
        if found is None:
            return None
        pointer, raw = found
        schemas = (SNAPSHOT_SCHEMA, SNAPSHOT_SCHEMA_CONFIRMED, SNAPSHOT_SCHEMA_LAKE)
        base: DataPart | None = None
        local: Path | list[Path]
        if isinstance(pointer, SnapshotLakePointer):
            local, columns = (
                self._fetch_lake_base(destination, segment, pointer.lake_base, workdir),
                SNAPSHOT_SCHEMA_LAKE,
            )
            delta_parts = pointer.deltas
        else:
            base, delta_parts = pointer.parts()
            local, columns = self._fetch_part(destination, segment, POINTER, base, schemas, workdir, "snapshot")
        delta_schema = {**columns, deltas.DELETED: "BOOLEAN"}
        delta_files = [
            self._fetch_part(destination, segment, POINTER, d, delta_schema, workdir, "snapshot delta")[0]
            for d in delta_parts
        ]
        if delta_files or not isinstance(local, Path):
            local = _membership(local, delta_files, list(columns), Path(workdir) / "membership.parquet")
            actual = parquet_facts(local)[1]
            if actual != pointer.rows:
                raise SegmentRefused(
                    f"snapshot data for {destination}/{segment} holds {actual} members, its pointer says {pointer.rows}"
                )
        snapshot = Snapshot(
            local,
            pointer.fields,
            pointer.mapping_hash,
            pointer.rows,
            pointer.run_id,
            pointer.committed_at,
            tuple(QuarantinedRow.from_entry(q) for q in pointer.quarantine),
            confirmed=columns == SNAPSHOT_SCHEMA_CONFIRMED,
            # A base Athena wrote takes no delta from the runner: its next commit writes a new base.
            parts=SnapshotParts(raw, base, delta_parts, columns) if base is not None else None,
        )
        self._loaded[(destination, segment)] = snapshot
        return snapshot

    def _fetch_lake_base(self, destination: str, segment: str, lake: LakeBase, workdir: Path) -> list[Path]:
        """Download the files of a base Athena wrote, each only as committed (its ETag and size)."""
        folder = self._folder(destination, segment)
        where = f"{destination}/{segment} at {self._location(f'{folder}/{POINTER}')}"
        local_dir = Path(workdir) / "lake-base"
        local_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not lake.parts:  # a base of no members (all had left): Athena wrote no file
            if lake.rows:
                raise SegmentRefused(f"snapshot pointer for {where} names no file for {lake.rows} members. {_HINT}")
            empty = local_dir / "empty.parquet"
            con = duckdb.connect()
            try:
                cols = ", ".join(f"cast(null as {t}) as {c}" for c, t in SNAPSHOT_SCHEMA_LAKE.items())
                con.execute(f"copy (select {cols} where false) to {_lit(empty)} (format parquet)")
            finally:
                con.close()
            return [empty]
        files, rows = [], 0
        for n, part in enumerate(lake.parts):
            self._confined_lake_file(folder, lake.folder, part.file, where)
            local = local_dir / f"part-{n:05d}.parquet"
            if not self._download_exact(part.file, local, part.etag) or local.stat().st_size != part.size:
                raise SegmentRefused(
                    f"snapshot data {self._location(part.file)} for {where} is missing or changed since it was "
                    f"committed; refusing to treat it as empty. {_HINT}"
                )
            found, count = parquet_facts(local)
            if {k.lower(): v for k, v in found.items()} != {k.lower(): v for k, v in SNAPSHOT_SCHEMA_LAKE.items()}:
                raise SegmentRefused(f"snapshot data {self._location(part.file)} for {where} has columns {found}")
            files.append(local)
            rows += count
        if rows != lake.rows:
            raise SegmentRefused(f"snapshot data for {where} has {rows} rows, its pointer says {lake.rows}")
        return files

    @staticmethod
    def _confined_lake_file(folder: str, lake_folder: str, key: str, where: str) -> None:
        """A base Athena wrote may only name files directly in its own ``lake-...`` folder of ``folder``."""
        found = _LAKE_FILE.match(key.removeprefix(folder + "/")) if key.startswith(folder + "/") else None
        if found is None or found.group(1) != lake_folder:
            raise SegmentRefused(
                f"snapshot pointer for {where} names {key!r}, outside its folder {folder}/{lake_folder}/; "
                "refusing to read it. " + _HINT
            )

    def read_snapshot(self, destination: str, segment: str) -> PointedSnapshot | None:
        """The committed snapshot's pointer and the locations of the files it names, nothing downloaded
        (the diff in Athena reads them where they are); None when there is none."""
        found = self._read_pointer(destination, segment, POINTER, "snapshot", documents.parse_snapshot_pointer)
        if found is None:
            return None
        pointer, raw = found
        folder = self._folder(destination, segment)
        where = f"{destination}/{segment} at {self._location(f'{folder}/{POINTER}')}"
        if isinstance(pointer, SnapshotLakePointer):
            for part in pointer.lake_base.parts:
                self._confined_lake_file(folder, pointer.lake_base.folder, part.file, where)
            base = [part.file for part in pointer.lake_base.parts]
            delta_parts = pointer.deltas
        else:
            first, delta_parts = pointer.parts()
            base = [first.file]
        for key in [*base[: 0 if isinstance(pointer, SnapshotLakePointer) else 1], *(d.file for d in delta_parts)]:
            self._confined_leaf(folder, key, "snapshot", where)
        return PointedSnapshot(
            pointer, raw, tuple(self._location(k) for k in base), tuple(self._location(d.file) for d in delta_parts)
        )

    # ---- files the diff in Athena reads: the segment's folder, its key and a run's scratch ----------------
    def snapshot_location(self, destination: str, segment: str) -> str:
        """The segment's snapshot folder, where Athena reads what a pointer names (ends in /)."""
        return self._location(self._folder(destination, segment)) + "/"

    def put_lake_key(self, fingerprint: str, parquet: Path) -> str:
        """Store the lake digest's key table (one row, ``sync.run.pushdown.sql``) once per key; its folder."""
        key = f"keys/{safe_name('key fingerprint', fingerprint)}/key.parquet"
        if self._read(key) is None:
            self._upload(key, parquet)
        return self._location(key.rsplit("/", 1)[0]) + "/"

    def _scratch(self, destination: str, segment: str) -> str:
        return f"lake-scratch/{safe_name('destination', destination)}/{safe_name('segment', segment)}"

    def put_scratch(self, destination: str, segment: str, run_id: str, name: str, parquet: Path) -> str:
        """Store a file of this run's diff in Athena (the Ids to resend) in a folder of its own; its folder."""
        file = safe_name("file", name)
        folder = f"{self._scratch(destination, segment)}/{safe_name('run id', run_id)}/{file}"
        self._upload(f"{folder}/{file}.parquet", parquet)
        return self._location(folder) + "/"

    def drop_scratch(self, destination: str, segment: str, *, keep: str | None = None, only: str | None = None) -> None:
        """Delete the segment's scratch files: run ``only``'s, or every run's but ``keep``'s (called under the
        segment's lock: the other runs that left some are dead)."""
        prefix = self._scratch(destination, segment) + "/"
        for key in self._list(f"{prefix}{only}/" if only else prefix):
            if keep is None or not key.startswith(f"{prefix}{keep}/"):
                with contextlib.suppress(Exception):
                    self._delete(key)

    def commit_lake_delta(
        self,
        destination: str,
        segment: str,
        delta: Path,
        *,
        previous: PointedSnapshot,
        fields,
        mapping_hash: str,
        rows: int,
        run_id: str,
        quarantine: tuple[QuarantinedRow, ...] = (),
        compact: Callable[[str, list[str]], None] | None = None,
    ) -> None:
        """Commit the diff in Athena's change (``delta``: upserts and tombstones, ``sync.state.deltas``) as one
        more delta beside what ``previous`` named; past the compaction thresholds, ``compact(location, files)``
        has Athena write the membership over ``files`` (the base's and every delta's, this one's included) as a
        new base under ``location`` (a fresh folder), and the pointer names that base alone.

        As every commit: the data is stored under fresh names first and the pointer moves in one write, only
        while it still holds what this run read (``previous.raw``); else nothing moves and the run's delivery
        stays in doubt, resent next run.
        """
        folder = self._folder(destination, segment)
        pointer_key = f"{folder}/{POINTER}"
        if self._read(pointer_key) != previous.raw:
            raise SegmentRefused(
                f"the snapshot pointer of {destination}/{segment} moved since this run read it; nothing committed "
                "(what was sent stays in doubt and is sent again next run)"
            )
        name = f"{safe_name('run id', run_id)}-{uuid.uuid4().hex[:8]}"
        details: dict[str, Any] = {
            "rows": rows,
            "fields": tuple(fields),
            "mapping_hash": mapping_hash,
            "run_id": run_id,
            "committed_at": clock.stamp(utcnow()),
            "quarantine": tuple(q.entry() for q in quarantine),
        }
        pointer = self._lake_pointer(folder, name, previous, delta, details, compact)
        failpoints.hit("commit-after-data")
        self._write(pointer_key, pointer.dump(indent=2))
        failpoints.hit("commit-after-pointer")
        self._sweep(folder, previous.raw, pointer.named_files())
        with contextlib.suppress(Exception):
            self.clear_in_doubt(destination, segment, run_id)

    def _lake_pointer(
        self,
        folder: str,
        name: str,
        previous: PointedSnapshot,
        delta: Path,
        details: dict[str, Any],
        compact: Callable[[str, list[str]], None] | None,
    ) -> documents.AnySnapshotPointer:
        """Store ``delta`` (unless empty) under a fresh name -- and past the compaction thresholds have Athena
        write a new base from everything -- and return the pointer that names the result (not yet written)."""
        old = previous.pointer
        upserts, tombstones = _count_delta(delta)
        parts = list(old.deltas) if isinstance(old, SnapshotLakePointer | SnapshotDeltaPointer) else []
        old_rows = [d.rows for d in parts]
        if upserts + tombstones:
            key = f"{folder}/delta-{name}.parquet"
            self._upload(key, delta)
            parts.append(
                DeltaPart(
                    file=key,
                    sha256=sha256_file(delta),
                    rows=upserts + tombstones,
                    upserts=upserts,
                    tombstones=tombstones,
                )
            )
        base_rows = old.lake_base.rows if isinstance(old, SnapshotLakePointer) else old.parts()[0].rows
        if compact is not None and self.compaction.compacts(base_rows, old_rows, upserts + tombstones):
            lake_folder = f"lake-{name}"
            files = [*previous.base, *previous.deltas, *(self._location(d.file) for d in parts[len(old_rows) :])]
            compact(self._location(f"{folder}/{lake_folder}/"), files)
            listed = self._list_sized(f"{folder}/{lake_folder}/")
            if details["rows"] and not any(n > 0 for _k, _e, n in listed):
                raise SegmentRefused(
                    f"the compaction of {folder} wrote no file for {details['rows']} members; nothing committed "
                    "(what was sent stays in doubt and is sent again next run)"
                )
            lake = LakeBase(
                folder=lake_folder,
                parts=tuple(LakePart(file=k, etag=e, size=n) for k, e, n in sorted(listed) if n > 0),
                rows=details["rows"],
            )
            return SnapshotLakePointer(lake_base=lake, **details)
        if isinstance(old, SnapshotLakePointer):
            return SnapshotLakePointer(lake_base=old.lake_base, deltas=tuple(parts), **details)
        if parts:
            return SnapshotDeltaPointer(base=old.parts()[0], deltas=tuple(parts), **details)
        first = old.parts()[0]
        return SnapshotPointer(file=first.file, sha256=first.sha256, **details)

    def _sweep(self, folder: str, previous_raw: bytes | None, named: set[str]) -> None:
        """After the pointer moved: delete what it named before and names no more, every snapshot file an
        earlier commit stored and was killed before pointing to (or before deleting what it superseded), and
        every file of a base Athena wrote that the pointer does not name."""
        listed = self._list(folder + "/")
        garbage = _named_files(previous_raw or b"") | {k for k in listed if _SNAPSHOT_FILE.match(k[len(folder) + 1 :])}
        self._delete_files(folder, garbage - named)  # only files directly in the folder (see _delete_files)
        for key in listed:
            if key not in named and _LAKE_FILE.match(key[len(folder) + 1 :]):
                with contextlib.suppress(Exception):
                    self._delete(key)

    def commit_snapshot(
        self,
        destination: str,
        segment: str,
        parquet: Path,
        *,
        fields,
        mapping_hash: str,
        rows: int,
        run_id: str,
        quarantine: tuple[QuarantinedRow, ...] = (),
        delta: Path | None = None,
    ) -> Snapshot:
        """Commit ``parquet`` (the whole new membership): as a delta beside the loaded base, or as a new base.

        A delta is written only against the snapshot this store loaded for the
        segment, when the pointer still holds exactly what was loaded and the
        mapping hash and columns are the same; anything else -- and a delta past
        the ``compaction`` thresholds -- writes the whole membership as a new
        base (a format-1 pointer). Either way the data is stored under fresh
        names first and the pointer moves in one write.

        ``delta``, when the caller has it: the change from the loaded snapshot
        to ``parquet`` (``parquet``'s columns and ``deleted``; see
        ``sync.state.deltas``), derived from what the run classified
        (``sync.run.diff.delta_to_commit``). It is stored as it is instead of
        being worked out by joining the two memberships; the same conditions
        decide whether a delta is stored at all.
        """
        committed_at = clock.stamp(utcnow())
        details: dict[str, Any] = {
            "rows": rows,
            "fields": tuple(fields),
            "mapping_hash": mapping_hash,
            "run_id": run_id,
            "committed_at": committed_at,
            "quarantine": tuple(q.entry() for q in quarantine),
        }
        folder = self._folder(destination, segment)
        pointer_key = f"{folder}/{POINTER}"
        previous_raw = self._read(pointer_key)
        loaded = self._loaded.pop((destination, segment), None)
        pointer = self._store_snapshot_data(folder, loaded, previous_raw, Path(parquet), details, delta)
        failpoints.hit("commit-after-data")
        self._write(pointer_key, pointer.dump(indent=2))
        failpoints.hit("commit-after-pointer")
        # The pointer has moved: what it named and no longer names is garbage now.
        self._sweep(folder, previous_raw, pointer.named_files())
        # The commit supersedes this run's in-doubt record (see load_in_doubt); drop it now.
        with contextlib.suppress(Exception):
            self.clear_in_doubt(destination, segment, run_id)
        return Snapshot(Path(parquet), tuple(fields), mapping_hash, rows, run_id, committed_at, tuple(quarantine))

    def _store_snapshot_data(
        self,
        folder: str,
        loaded: Snapshot | None,
        previous_raw: bytes | None,
        parquet: Path,
        details: dict,
        derived: Path | None = None,
    ) -> SnapshotPointer | SnapshotDeltaPointer:
        """Upload the commit's data under fresh names -- a delta beside the loaded base, or a new base -- and
        return the pointer that names it (not yet written). ``derived``: the run's own delta, if any."""
        delta = self._delta_against(loaded, previous_raw, parquet, details["mapping_hash"], derived)
        name = f"{safe_name('run id', details['run_id'])}-{uuid.uuid4().hex[:8]}.parquet"
        if delta is None or loaded is None or loaded.parts is None:
            base_key = f"{folder}/{name}"
            self._upload(base_key, parquet)
            return SnapshotPointer(file=base_key, sha256=sha256_file(parquet), **details)
        parts = list(loaded.parts.deltas)
        delta_file, delta_part = delta
        if delta_part["rows"]:
            data_key = f"{folder}/delta-{name}"
            self._upload(data_key, delta_file)
            parts.append(DeltaPart(file=data_key, **delta_part))
        if not parts:  # nothing changed since a format-1 base: the pointer stays format 1
            base = loaded.parts.base
            return SnapshotPointer(file=base.file, sha256=base.sha256, **details)
        return SnapshotDeltaPointer(base=loaded.parts.base, deltas=tuple(parts), **details)

    def _delta_against(
        self,
        loaded: Snapshot | None,
        previous_raw: bytes | None,
        parquet: Path,
        mapping_hash: str,
        derived: Path | None = None,
    ) -> tuple[Path, dict] | None:
        """The delta from ``loaded`` to ``parquet`` (its file; sha256, rows, upserts, tombstones), or None for a
        new base: nothing loaded, the pointer moved since, another mapping or columns, or past compaction.

        ``derived``: the delta as the run derived it, taken instead of joining ``parquet`` with ``loaded``."""
        if loaded is None or loaded.parts is None or previous_raw is None or loaded.parts.raw != previous_raw:
            return None
        if loaded.mapping_hash != mapping_hash or len(loaded.parts.deltas) + 1 > self.compaction.max_deltas:
            return None
        columns, _rows = parquet_facts(parquet)
        if columns != loaded.parts.columns:
            return None
        if derived is not None:
            derived_columns, _rows = parquet_facts(derived)
            if derived_columns != {**columns, deltas.DELETED: "BOOLEAN"}:
                return None
            out = derived
            upserts, tombstones = _count_delta(derived)
        else:
            out = parquet.parent / f"delta-{uuid.uuid4().hex[:8]}.parquet"
            upserts, tombstones = _write_delta(parquet, loaded.path, list(columns), out)
        base_rows = loaded.parts.base.rows
        if self.compaction.compacts(base_rows, [d.rows for d in loaded.parts.deltas], upserts + tombstones):
            return None
        return out, {
            "sha256": sha256_file(out),
            "rows": upserts + tombstones,
            "upserts": upserts,
            "tombstones": tombstones,
        }

    def committed_fields(self, destination: str, segment: str) -> tuple[str, ...]:
        """The fields of the committed snapshot (read from its pointer only), or () if none."""
        raw = self._read(self._pointer_key(destination, segment))
        if raw is None:
            return ()
        return documents.parse(documents.CommittedFields, raw).fields

    # ---- in-doubt records ----------------------------------------------------
    def record_in_doubt(self, destination: str, segment: str, parquet: Path, *, rows: int, run_id: str) -> None:
        """Durably note the Ids a delivery is about to carry, before it starts."""
        self._point_to(
            destination,
            segment,
            IN_DOUBT,
            parquet,
            "in-doubt-",
            InDoubtPointer,
            rows=rows,
            run_id=run_id,
            recorded_at=clock.stamp(utcnow()),
        )

    def load_in_doubt(
        self, destination: str, segment: str, workdir: Path, committed_run_id: str | None = None
    ) -> InDoubt | None:
        """The open in-doubt record, or None (none, or superseded by a commit of the same run)."""
        found = self._load_pointed(destination, segment, IN_DOUBT, InDoubtPointer, IN_DOUBT_SCHEMA, workdir, "in-doubt")
        if found is None:
            return None
        pointer, local, _columns = found
        if committed_run_id and pointer.run_id == committed_run_id:
            return None
        return InDoubt(local, pointer.rows, pointer.run_id, pointer.recorded_at)

    def clear_in_doubt(self, destination: str, segment: str, run_id: str) -> None:
        """Remove the in-doubt record if ``run_id`` wrote it (a newer one is left alone)."""
        key = self._pointer_key(destination, segment, IN_DOUBT)
        raw = self._read(key)
        if raw is None:
            return
        try:
            owner = documents.parse(documents.WrittenBy, raw).run_id
        except DocumentError:
            return
        if owner == run_id and self._delete_if_unchanged(key, raw):
            self._delete_data(self._folder(destination, segment), raw)

    # ---- the unfinished search for refused rows --------------------------------
    def save_search(self, destination: str, segment: str, groups, *, fields, run_id: str, workdir: Path) -> None:
        """Durably keep the groups of Ids still suspect (replacing any earlier search of this segment)."""
        groups = [tuple(g) for g in groups if g]
        if not groups:
            self.clear_search(destination, segment)
            return
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = workdir / "search.parquet"
        ids = [i for g in groups for i in g]
        grp = [n for n, g in enumerate(groups) for _ in g]
        pos = [p for g in groups for p in range(len(g))]
        con = duckdb.connect()
        try:
            con.execute(
                "copy (select unnest($1::varchar[]) as Id, unnest($2::integer[]) as grp, "
                "unnest($3::integer[]) as pos) to '" + str(out).replace("'", "''") + "' (format parquet)",
                [ids, grp, pos],
            )
        finally:
            con.close()
        self._point_to(
            destination,
            segment,
            SEARCH,
            out,
            "search-",
            SearchPointer,
            rows=len(ids),
            groups=len(groups),
            fields=tuple(fields),
            run_id=run_id,
            recorded_at=clock.stamp(utcnow()),
        )

    def load_search(self, destination: str, segment: str, workdir: Path) -> SavedSearch | None:
        found = self._load_pointed(destination, segment, SEARCH, SearchPointer, SEARCH_SCHEMA, workdir, "search")
        if found is None:
            return None
        pointer, local, _columns = found
        con = duckdb.connect()
        try:
            rows = con.execute("select grp, Id from read_parquet(?) order by grp, pos", [str(local)]).fetchall()
        finally:
            con.close()
        groups: dict[int, list[str]] = {}
        for grp, rid in rows:
            groups.setdefault(grp, []).append(rid)
        return SavedSearch(tuple(tuple(g) for g in groups.values()), pointer.fields, pointer.run_id)

    def clear_search(self, destination: str, segment: str) -> None:
        key = self._pointer_key(destination, segment, SEARCH)
        raw = self._read(key)
        if raw is not None and self._delete_if_unchanged(key, raw):
            self._delete_data(self._folder(destination, segment), raw)

    # ---- the jobs a segment's deliveries created ---------------------------------
    def job_ledger(self, destination: str, segment: str) -> StateJobLedger:
        return StateJobLedger(self, self._pointer_key(destination, segment, JOBS))

    # ---- locks ---------------------------------------------------------------
    def _lock_key(self, destination: str, segment: str) -> str:
        return f"locks/{safe_name('destination', destination)}/{safe_name('segment', segment)}.json"

    def read_lock(self, destination: str, segment: str) -> LockInfo | None:
        key = self._lock_key(destination, segment)
        raw = self._read(key)
        if raw is None:
            return None
        try:
            doc = documents.parse(LockDocument, raw)
        except DocumentError:
            doc = LockDocument(owner={"note": "unreadable lock file"})
        return LockInfo(
            destination,
            segment,
            doc.owner,
            doc.acquired_at,
            _age_seconds(doc.acquired_at),
            self._location(key),
            doc.token,
        )

    @contextlib.contextmanager
    def lock(self, destination: str, segment: str, owner: dict) -> Iterator[LockInfo]:
        key = self._lock_key(destination, segment)
        token = uuid.uuid4().hex
        now = clock.stamp(utcnow())
        data = LockDocument(owner=owner, acquired_at=now, token=token).dump()
        if not self._create(key, data):
            held = self.read_lock(destination, segment)
            desc = held.describe() if held else "held by another run"
            raise LockHeld(
                f"{destination}/{segment} is locked ({desc}, {self._location(key)}). If that run is dead, "
                f"remove the lock with `lakeseg unlock --destination {destination} --segment {segment}`"
            )
        info = LockInfo(destination, segment, owner, now, 0.0, self._location(key), token)
        try:
            yield info
        finally:
            # Release only a lock that is still ours: compare-and-delete on its exact content.
            with contextlib.suppress(Exception):
                self._delete_if_unchanged(key, data)

    def force_unlock(self, destination: str, segment: str, token: str | None = None) -> LockInfo | None:
        """Remove the lock; with ``token``, only if it is still that lock (compare-and-delete).

        Two runs that both judged the same lock dead cannot both take it: the
        second one's delete finds the first one's new lock and leaves it.
        """
        key = self._lock_key(destination, segment)
        raw = self._read(key)
        if raw is None:
            return None
        info = self.read_lock(destination, segment)
        if token is not None and (info is None or info.token != token):
            return None
        return info if self._delete_if_unchanged(key, raw) else None

    # ---- the run lease (sync/run/lease.py decides; these only store) ---------
    def read_lease(self) -> bytes | None:
        return self._read(LEASE_KEY)

    def create_lease(self, data: bytes) -> bool:
        """Write the lease only if there is none (one of two racing runs wins)."""
        return self._create(LEASE_KEY, data)

    def replace_lease(self, expected: bytes, data: bytes) -> bool:
        """Renew or take over: only if the lease still holds exactly ``expected``."""
        return self._replace_if_unchanged(LEASE_KEY, expected, data)

    def delete_lease(self, expected: bytes) -> bool:
        """Release: only if the lease is still exactly ``expected`` (never another run's)."""
        return self._delete_if_unchanged(LEASE_KEY, expected)

    def lease_location(self) -> str:
        return self._location(LEASE_KEY)

    # ---- history -------------------------------------------------------------
    @staticmethod
    def _history_key(run: dict) -> str:
        started = re.sub(r"[^0-9TZ]", "", str(run.get("started_at", "")).replace("+00:00", "Z"))
        return f"history/{started}-{safe_name('run id', run['run_id'])}.json"

    def write_run(self, run: dict) -> None:
        # One line of JSON per document: Athena's JSON SerDe reads the history as a table.
        self._write(self._history_key(run), RunRecord.model_validate(run).dump())

    def _read_run(self, key: str) -> dict:
        raw = self._read(key)
        try:
            return documents.parse(RunRecord, raw or b"").as_dict()
        except DocumentError as exc:
            log.debug("history document %s: %s", self._location(key), exc)
            raise ConfigError(
                f"history document {self._location(key)} is corrupt; move it away to read the rest"
            ) from None

    def list_runs(self, limit: int = 20) -> list[dict]:
        """The newest runs; a corrupt document is skipped with a warning (it names the file)."""
        runs = []
        for key in sorted(self._list("history/"), reverse=True)[:limit]:
            try:
                runs.append(self._read_run(key))
            except ConfigError as exc:
                log.warning("%s", exc)
        return runs

    def get_run(self, run_id: str) -> dict | None:
        for key in self._list("history/"):
            if key.endswith(f"-{run_id}.json"):
                return self._read_run(key)
        return None


class StateJobLedger:
    """``JobLedger`` (sync.destinations.base) in the state store: one small JSON document per segment.

    Only the run holding the segment's lock writes it; its threads share a lock.
    Names and ids only. A damaged document reads as never used (the destination
    then lists the platform's jobs instead).
    """

    def __init__(self, store: StateStore, key: str):
        self._store, self._key = store, key
        self._lock = threading.Lock()

    def _load(self) -> list[LedgerEntry] | None:
        raw = self._store._read(self._key)
        if raw is None:
            return None
        try:
            return documents.parse(JobLedgerDocument, raw).jobs
        except DocumentError as exc:
            log.warning(
                "job ledger %s is unreadable (%s); jobs are looked up by listing", self._store._location(self._key), exc
            )
            return None

    def _save(self, jobs: list[LedgerEntry]) -> None:
        self._store._write(self._key, JobLedgerDocument(jobs=jobs).dump(indent=1))

    def entries(self) -> list[dict] | None:
        with self._lock:
            jobs = self._load()
            return None if jobs is None else [j.model_dump() for j in jobs]

    def remember(self, name: str, job_id: str | None, run_id: str) -> None:
        with self._lock:
            jobs = [j for j in self._load() or [] if j.name != name]
            jobs.append(LedgerEntry(name=name, job_id=job_id, run_id=run_id, recorded_at=clock.stamp(utcnow())))
            self._save(jobs)

    def forget(self, name: str) -> None:
        with self._lock:
            jobs = self._load() or []
            kept = [j for j in jobs if j.name != name]
            if len(kept) != len(jobs):
                self._save(kept)


__all__ = [
    "PLATFORM_REFUSED",
    "InDoubt",
    "LockInfo",
    "QuarantinedRow",
    "SavedSearch",
    "Snapshot",
    "StateJobLedger",
    "StateStore",
    "asdict",
    "safe_name",
]
