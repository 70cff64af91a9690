"""The JSON documents the state store holds, one pydantic model each.

Each is read with ``model_validate_json`` and written with ``model_dump_json``; a
malformed or foreign document fails as one ``DocumentError`` naming the document
and the field (``rows: Input should be greater than or equal to 0``). What a
reader does with that (refuse a segment, skip a history entry, list jobs
instead) stays with the reader.

The bytes written read back with the code before these models (keys and value
types are the same); a document written before them reads with them. Callers
that compare-and-swap keep the exact bytes they read: a model never stands in
for them.

Ids, counts, names, run ids and times only: no document holds an attribute
value (a quarantine entry says why by a code, never by the platform's message).

The run lease's document is the run's (``sync.run.lease``); this module holds
what ``sync.state`` writes itself.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, ValidationError

M = TypeVar("M", bound=BaseModel)

# A quarantine entry says why a row is there by a code, never by the platform's message (which may quote the
# row's values). The one code today: the platform refused the row.
PLATFORM_REFUSED = "platform-refused"
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class DocumentError(ValueError):
    """A state document that is not JSON, not an object, or has a field of the wrong kind."""


def _none_as_empty(value: Any) -> Any:
    return () if value is None else value


def _as_text(value: Any) -> str:
    return str(value)


def _mapping_or_empty(value: Any) -> Any:
    return value if isinstance(value, dict) else {}


def _known_code(value: Any) -> str:
    # One written before codes (with the platform's message) or with an unknown code reads as refused.
    return value if value in (PLATFORM_REFUSED,) else PLATFORM_REFUSED


Text = Annotated[str, BeforeValidator(_as_text)]  # any JSON value, read as text (as str() would)
# Text or nothing: a run's times may be handed over as datetimes; they are written as str() writes them.
MaybeText = Annotated[str | None, BeforeValidator(lambda v: v if v is None else str(v))]
Names = Annotated[tuple[StrictStr, ...], BeforeValidator(_none_as_empty)]  # a list of strings; null reads as none
Owner = Annotated[dict[str, Any], BeforeValidator(_mapping_or_empty)]  # who holds a lock; not a mapping reads as none
Count = Annotated[StrictInt, Field(ge=0)]  # a whole number, not a bool, not text


class Document(BaseModel):
    """A document of the state store: frozen, keys it does not know are ignored (a newer writer's)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def dump(self, indent: int | None = None) -> bytes:
        return self.model_dump_json(indent=indent).encode()


def parse(model: type[M], raw: bytes | str) -> M:
    """The ``model`` document in ``raw``, or DocumentError naming the first field that is wrong."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise DocumentError(reason(exc)) from None


def reason(exc: ValidationError) -> str:
    """The first error as ``field: what is wrong`` (``quarantine[0].id: Field required``)."""
    error = exc.errors()[0]
    if error["type"] == "json_invalid":
        return "not JSON"
    if error["type"] == "model_type" and not error["loc"]:
        return "not a JSON object"
    # Past those two, an error is always in a field: its place starts with the field's name.
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    return f"{where.removeprefix('.')}: {error['msg']}"


class QuarantineEntry(Document):
    """A row the platform keeps refusing, as a snapshot pointer lists it: Id, code, run ids, attempts."""

    id: StrictStr
    code: Annotated[str, BeforeValidator(_known_code)] = PLATFORM_REFUSED
    first_run_id: Text = ""
    last_run_id: Text = ""
    attempts: int = 1


Sha256 = Annotated[StrictStr, Field(pattern=SHA256_PATTERN)]
# 1: one data file; 2: a base and deltas (sync.state.deltas.POINTER_FORMAT); 3: a base Athena wrote, and deltas
SNAPSHOT_FORMATS = (1, 2, 3)
ETAG_PATTERN = r'^"?[0-9A-Za-z-]+"?$'
# The folder of a base Athena wrote: ``lake-<run id>-<8 hex>``, directly in the segment's snapshot folder.
LAKE_BASE_PATTERN = r"^lake-[A-Za-z0-9_.-]+-[0-9a-f]{8}$"


class DataPart(Document):
    """A data file a pointer names (in its own folder), with its checksum and row count."""

    file: StrictStr
    sha256: Sha256
    rows: Count


class DeltaPart(DataPart):
    """A delta of a format-2 snapshot: its rows are upserts and tombstones."""

    upserts: Count = 0
    tombstones: Count = 0


class DataPointer(DataPart):
    """A pointer that names one data file, and the run that wrote it: in-doubt and search records add theirs."""

    run_id: StrictStr = ""


class SnapshotDetails(Document):
    """What every snapshot pointer (``current.json``) says besides the data files it names."""

    rows: Count  # members of the snapshot
    run_id: StrictStr = ""
    fields: Names = ()
    mapping_hash: StrictStr = ""
    committed_at: Text = ""
    quarantine: Annotated[tuple[QuarantineEntry, ...], BeforeValidator(_none_as_empty)] = ()

    def parts(self) -> tuple[DataPart, tuple[DeltaPart, ...]]:
        """(base, deltas): the data files whose latest row per Id is the membership."""
        raise NotImplementedError

    def named_files(self) -> set[str]:
        base, deltas = self.parts()
        return {base.file, *(d.file for d in deltas)}


class SnapshotPointer(SnapshotDetails):
    """Format 1 (no ``format`` key; every pointer before deltas): one data file, the whole membership."""

    file: StrictStr
    sha256: Sha256

    def parts(self) -> tuple[DataPart, tuple[DeltaPart, ...]]:
        return DataPart(file=self.file, sha256=self.sha256, rows=self.rows), ()

    def dump(self, indent: int | None = None) -> bytes:
        return self.model_dump_json(indent=indent).encode()


class SnapshotDeltaPointer(SnapshotDetails):
    """Format 2: a base and the deltas written since (``sync.state.deltas``)."""

    format: Literal[2] = 2
    base: DataPart
    deltas: Annotated[tuple[DeltaPart, ...], BeforeValidator(_none_as_empty)] = ()

    def parts(self) -> tuple[DataPart, tuple[DeltaPart, ...]]:
        return self.base, self.deltas


class LakePart(Document):
    """A data file Athena wrote (an UNLOAD of a new base, ``sync.run.pushdown``): its key, S3 ETag and size.

    Athena computes no sha256; a reader fetches the file with ``If-Match`` on the ETag, so a file changed
    since the commit is refused by S3 itself."""

    file: StrictStr
    etag: Annotated[StrictStr, Field(pattern=ETAG_PATTERN)]
    size: Count


class LakeBase(Document):
    """A base Athena wrote: every file under ``folder`` (a subfolder of the segment's snapshot folder)."""

    folder: Annotated[StrictStr, Field(pattern=LAKE_BASE_PATTERN)]
    parts: Annotated[tuple[LakePart, ...], BeforeValidator(_none_as_empty)] = ()
    rows: Count


class SnapshotLakePointer(SnapshotDetails):
    """Format 3: a base Athena wrote (``lake_base``) and the deltas written since.

    Only the diff in Athena writes it; a lakeseg that reads formats 1 and 2 only refuses it by its
    ``format`` (it has no ``file`` or ``base`` key another reader could misread)."""

    format: Literal[3] = 3
    lake_base: LakeBase
    deltas: Annotated[tuple[DeltaPart, ...], BeforeValidator(_none_as_empty)] = ()

    def parts(self) -> tuple[DataPart, tuple[DeltaPart, ...]]:
        raise DocumentError("a format-3 snapshot's base is files Athena wrote (lake_base), not one data file")

    def named_files(self) -> set[str]:
        return {*(p.file for p in self.lake_base.parts), *(d.file for d in self.deltas)}


AnySnapshotPointer = SnapshotPointer | SnapshotDeltaPointer | SnapshotLakePointer


class PointerFormat(Document):
    """Only a snapshot pointer's format (1 when it names none)."""

    format: Any = 1


def parse_snapshot_pointer(raw: bytes | str) -> AnySnapshotPointer:
    """A snapshot pointer of either format, or DocumentError (a format this lakeseg does not read too)."""
    fmt = parse(PointerFormat, raw).format
    if fmt == 1 and not isinstance(fmt, bool):
        return parse(SnapshotPointer, raw)
    if fmt == 2 and not isinstance(fmt, bool):
        return parse(SnapshotDeltaPointer, raw)
    if fmt == 3 and not isinstance(fmt, bool):
        return parse(SnapshotLakePointer, raw)
    raise DocumentError(f"format {fmt!r} is not one this lakeseg reads ({' or '.join(map(str, SNAPSHOT_FORMATS))})")


class InDoubtPointer(DataPointer):
    """``in_doubt.json``: the Ids of a delivery not (yet) confirmed."""

    recorded_at: Text = ""


class SearchPointer(DataPointer):
    """``search.json``: the groups of Ids an unfinished search for refused rows still suspects."""

    groups: int = 0
    fields: Names = ()
    recorded_at: Text = ""


class LockDocument(Document):
    """``locks/<destination>/<segment>.json``: who holds a segment's lock (run id, host, pid, lease token)."""

    owner: Owner = Field(default_factory=dict)
    acquired_at: Text = ""
    token: Text = ""


class LedgerEntry(Document):
    """A platform job a segment's delivery created, by name and id."""

    name: StrictStr
    job_id: str | None = None
    run_id: Text = ""
    recorded_at: Text = ""


class NamedFiles(Document):
    """Only the data files a pointer names (to delete them once superseded, whatever else the pointer holds):
    its file (format 1, in-doubt, search), its base and deltas (format 2), or the files of the base Athena
    wrote and deltas (format 3)."""

    file: Any = None
    base: Any = None
    deltas: Any = None
    lake_base: Any = None

    def keys(self) -> set[str]:
        lake = self.lake_base.get("parts") if isinstance(self.lake_base, dict) else None
        parts = [
            {"file": self.file},
            self.base or {},
            *(self.deltas if isinstance(self.deltas, list) else []),
            *(lake if isinstance(lake, list) else []),
        ]
        return {p["file"] for p in parts if isinstance(p, dict) and isinstance(p.get("file"), str)}


class WrittenBy(Document):
    """Only the run that wrote a document (a record another run may not clear)."""

    run_id: Any = None


class CommittedFields(Document):
    """Only the fields of a snapshot pointer, those that are text (read without the data file)."""

    fields: Annotated[
        tuple[str, ...],
        BeforeValidator(lambda v: tuple(f for f in v if isinstance(f, str)) if isinstance(v, list) else ()),
    ] = ()


class JobLedgerDocument(Document):
    """``jobs.json``: the platform jobs a segment's deliveries created and that may not have ended."""

    jobs: list[LedgerEntry]


class SegmentRecord(BaseModel):
    """One segment of a run, as the run history holds it (the fields of ``sync.run.engine.SegmentReport``).

    A segment names itself and its status; the rest is kept as written (the type each field has when the
    engine writes it is noted beside it): readers of the history tolerate other shapes, older or newer."""

    model_config = ConfigDict(extra="allow")

    segment: StrictStr
    status: StrictStr
    reason: Text = ""
    plan: Any = None  # dict[str, Any] | None
    files: Any = Field(default_factory=list)  # list[str]
    bytes: Any = 0  # int
    jobs: Any = Field(default_factory=list)  # list[dict[str, Any]]
    location: MaybeText = None
    started_at: Text = ""
    duration_s: Any = 0.0  # float
    notes: Any = Field(default_factory=list)  # list[str]
    data_scanned_bytes: Any = None  # int | None
    quarantined: Any = Field(default_factory=list)  # list[dict[str, Any]]


class RunRecord(BaseModel):
    """``history/<started_at>-<run_id>.json``: one run (the fields of ``sync.run.engine.RunReport``).

    Only ``run_id`` is required (and each segment's name and status); times and texts are text (a datetime
    handed over is written as ``str()`` writes it); the rest is kept as written, fields a newer writer adds
    too, in the same order, so the history reads the same through this model as without it.
    """

    model_config = ConfigDict(extra="allow")

    run_id: StrictStr
    command: Text = ""
    target: Text = ""
    destination: Text = ""
    state: Text = ""
    started_at: Text = ""
    finished_at: MaybeText = None
    status: Text = ""
    segments: Annotated[list[SegmentRecord], BeforeValidator(lambda v: [] if v is None else v)] = Field(
        default_factory=list
    )
    error: MaybeText = None
    host: MaybeText = None
    pid: Any = None  # int | None
    as_of: MaybeText = None
    built_at: MaybeText = None
    left_alone: Any = Field(default_factory=list)  # list[str]
    phases: Any = Field(default_factory=dict)  # dict[str, float]
    notes: Any = Field(default_factory=list)  # list[str]

    def as_dict(self) -> dict[str, Any]:
        """The document as a plain dict: only what it holds (no defaults it did not have)."""
        return self.model_dump(exclude_unset=True)

    def dump(self) -> bytes:
        """One line of JSON (Athena's JSON SerDe reads the history as a table)."""
        return self.model_dump_json(exclude_unset=True, fallback=str).encode() + b"\n"
