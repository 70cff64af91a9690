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

from typing import Annotated, Any, TypeVar

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
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        return "not JSON"
    if error["type"] == "model_type" and not error["loc"]:
        return "not a JSON object"
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
    return f"{where}: {error['msg']}" if where else str(error["msg"])


class QuarantineEntry(Document):
    """A row the platform keeps refusing, as a snapshot pointer lists it: Id, code, run ids, attempts."""

    id: StrictStr
    code: Annotated[str, BeforeValidator(_known_code)] = PLATFORM_REFUSED
    first_run_id: Text = ""
    last_run_id: Text = ""
    attempts: int = 1


class DataPointer(Document):
    """What every pointer holds: the data file it names (in its own folder), its checksum and row count, and the
    run that wrote it. Snapshot, in-doubt and search pointers add their own fields."""

    file: StrictStr
    sha256: Annotated[StrictStr, Field(pattern=SHA256_PATTERN)]
    rows: Count
    run_id: StrictStr = ""


class SnapshotPointer(DataPointer):
    """``current.json``: the committed snapshot."""

    fields: Names = ()
    mapping_hash: StrictStr = ""
    committed_at: Text = ""
    quarantine: Annotated[tuple[QuarantineEntry, ...], BeforeValidator(_none_as_empty)] = ()


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


class NamedFile(Document):
    """Only the data file a pointer names (to delete it once superseded, whatever else the pointer holds)."""

    file: StrictStr


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
