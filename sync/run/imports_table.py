r"""What the platform imported, as a table: one per segment, one partition per run.

After a confirmed delivery the sync registers the delivered import files
(UTF-8, RFC-4180 CSV with a header row) so that

    select * from <imports schema>.<segment> where run_id = '...'

shows exactly what the platform imported in that run.

* **Athena** (``GlueImportsTable``): a CSV-backed Glue table in the database
  ``<profile schema>_imports`` (e.g. ``lakeseg_imports``), created through the
  Glue API -- the same table ``athena_ddl`` spells as DDL: OpenCSVSerDe,
  separator ``,``, quote ``"``, escape U+0001, ``skip.header.line.count=1``,
  partitioned by ``run_id``; each partition's location is the run's folder of
  import files (Athena reads its subfolders too, e.g. one per Pinpoint import
  job, but skips names starting with ``_`` or ``.``: isolation re-imports and
  job markers live under ``_isolation/`` and ``_jobs/``).
  Columns are mapped **by position**: a Pinpoint field name such as
  ``User.UserAttributes.HasClicked`` cannot be an Athena column name, so each
  column is named after the segment model's column and carries the field name
  as its comment.
* **Local** (``DuckDBImportsViews``): a DuckDB view ``imports.<segment>`` per
  segment, in ``lakeseg_imports.duckdb`` beside the export folder
  (``build/lakeseg_imports.duckdb`` for ``build/exports``), over every run's
  CSV files (all values as text, the same columns, ``run_id`` from the folder).

**Why escape U+0001.** Athena's OpenCSVSerDe is Hive's ``OpenCSVSerde`` over
opencsv 2.3. Given escape ``"`` (RFC-4180's doubling), Hive builds its reader
with opencsv's default escape instead, backslash, which then drops lone
backslashes and reads ``\\`` as ``\`` (``C:\temp\new`` read back as
``C:tempnew``). The escape must be a character no value holds: U+0001 is a
control character, and the contract refuses control characters in every
exported value (``pinpoint_no_control_chars``, ``sync/core/fields.py``), so the
parser never meets it. A doubled quote inside a quoted value still reads as
one quote (opencsv treats ``""`` inside quotes as an escaped quote), so every
value DuckDB writes reads back exactly. Tested with a model of the SerDe
(``tests/readers/opencsv23.py``). A table registered with other parameters
(escape ``"`` before) gets these at its next registration, its partitions too
(``_migrate_partitions``, once).

**Empty reads as ``''``, in both.** The SerDe cannot tell an empty value from
NULL (both are an empty field, read as the empty string), so every value is a
``string`` and an empty or NULL value reads as ``''`` -- an exit value of
``""`` too. The local view reads them the same way (``coalesce(.., '')``), so
a query gives the same rows on either target.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from sync.core.errors import ConfigError, public_reason
from sync.core.sql import qi, ql
from sync.dbt.contract import Segment

SERDE = "org.apache.hadoop.hive.serde2.OpenCSVSerde"
# Not '"': Hive reads an escape equal to opencsv's writer default as backslash (see above).
ESCAPE_CHAR = "\u0001"
SERDE_PARAMETERS = {"separatorChar": ",", "quoteChar": '"', "escapeChar": ESCAPE_CHAR}
INPUT_FORMAT = "org.apache.hadoop.mapred.TextInputFormat"
OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
log = logging.getLogger(__name__)


class ImportsTable(Protocol):
    """Where confirmed deliveries are registered, and everything the sync asks of it.

    Every imports table states each capability, even as none: the sync calls them directly and refuses a
    table that lacks one (``sync.core.capabilities.require``).
    """

    def know(self, segments: Sequence[Segment]) -> None:
        """The project's segments, before the run (a table rebuilt from its files needs every one)."""

    def repair(self) -> None:
        """Before the run: bring a table left damaged or behind (a full disk) in step with what was delivered."""

    def register(self, segment: Segment, run_id: str, location: str) -> None:
        """Make ``location`` (the run's delivered files of ``segment``) the partition run_id = ``run_id``."""


def _checked(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"{what} {name!r} cannot name an Athena table or column (lowercase letters, digits, _)")
    return name


def columns(segment: Segment) -> list[dict]:
    """Glue columns, in the import file's column order: model column name, string, field name as comment."""
    return [
        {"Name": _checked(m.column.lower(), f"segment {segment.name}: column"), "Type": "string", "Comment": m.field}
        for m in segment.mappings
    ]


def _folder(location: str) -> str:
    return location if location.endswith("/") else location + "/"


def table_input(segment: Segment, table_location: str) -> dict:
    """The Glue TableInput of a segment's imports table."""
    return {
        "Name": _checked(segment.name.lower(), "segment"),
        "Description": f"Import files lakeseg delivered for {segment.name} (RFC-4180 CSV, header row); "
        "one partition per run_id; columns by position, every value a string, "
        "an empty value (or NULL) reads as ''.",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"EXTERNAL": "TRUE", "classification": "csv", "skip.header.line.count": "1"},
        "PartitionKeys": [{"Name": "run_id", "Type": "string"}],
        "StorageDescriptor": _storage(segment, table_location),
    }


def _storage(segment: Segment, location: str) -> dict:
    return {
        "Columns": columns(segment),
        "Location": _folder(location),
        "InputFormat": INPUT_FORMAT,
        "OutputFormat": OUTPUT_FORMAT,
        "SerdeInfo": {"SerializationLibrary": SERDE, "Parameters": dict(SERDE_PARAMETERS)},
        "Parameters": {"skip.header.line.count": "1"},
    }


def athena_ddl(database: str, segment: Segment, table_location: str) -> str:
    """The same table as Athena DDL (for reading, or to create it by hand)."""
    cols = ",\n  ".join(f"`{c['Name']}` string COMMENT '{c['Comment']}'" for c in columns(segment))
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{segment.name.lower()}` (\n  {cols}\n)\n"
        "PARTITIONED BY (`run_id` string)\n"
        f"ROW FORMAT SERDE '{SERDE}'\n"
        f"WITH SERDEPROPERTIES ({_serde_properties()})\n"
        f"STORED AS INPUTFORMAT '{INPUT_FORMAT}' OUTPUTFORMAT '{OUTPUT_FORMAT}'\n"
        f"LOCATION '{_folder(table_location)}'\n"
        "TBLPROPERTIES ('skip.header.line.count' = '1', 'classification' = 'csv')"
    )


def _literal(value: str) -> str:
    """A Hive string literal: non-printable characters as \\uXXXX (Hive's unescapeSQLString reads them)."""
    return "'" + "".join(c if c.isprintable() and c not in "'\\" else f"\\u{ord(c):04x}" for c in value) + "'"


def _serde_properties() -> str:
    return ", ".join(f"{_literal(k)} = {_literal(v)}" for k, v in SERDE_PARAMETERS.items())


def _serde_parameters(table_or_partition: dict) -> dict:
    return table_or_partition.get("StorageDescriptor", {}).get("SerdeInfo", {}).get("Parameters", {})


def _parent(location: str) -> str:
    """s3://b/imports/<run>/<segment>/ -> s3://b/imports/ (the table's own location)."""
    parts = location.rstrip("/").split("/")
    return "/".join(parts[:-2]) + "/" if len(parts) > 4 else _folder(location)


class GlueImportsTable:
    """Registers delivered S3 import files in the Glue catalog (Athena reads them)."""

    def __init__(self, glue_client, database: str, catalog_id: str | None = None):
        self.glue = glue_client
        self.database = _checked(database, "imports database")
        self.catalog = {"CatalogId": catalog_id} if catalog_id else {}
        self._lock = threading.Lock()

    def know(self, segments: Sequence[Segment]) -> None:
        """Glue keeps each table itself: it needs no list of segments."""

    def repair(self) -> None:
        """Each registration is its own Glue call: nothing is left half-written to repair before a run."""

    def register(self, segment: Segment, run_id: str, location: str) -> None:
        if not location.startswith("s3://"):
            raise ConfigError(f"the imports table reads S3 files; {segment.name} was delivered to {location!r}")
        with self._lock:
            self._ensure_database()
            self._upsert_table(table_input(segment, _parent(location)))
            self._upsert_partition(segment, run_id, location)

    def _ensure_database(self) -> None:
        try:
            self.glue.get_database(Name=self.database, **self.catalog)
        except self.glue.exceptions.EntityNotFoundException:
            try:
                self.glue.create_database(
                    DatabaseInput={
                        "Name": self.database,
                        "Description": "lakeseg: what each run imported, one table per segment",
                    },
                    **self.catalog,
                )
            except self.glue.exceptions.AlreadyExistsException:
                pass

    def _upsert_table(self, table: dict) -> None:
        try:
            self.glue.create_table(DatabaseName=self.database, TableInput=table, **self.catalog)
        except self.glue.exceptions.AlreadyExistsException:
            before = self.glue.get_table(DatabaseName=self.database, Name=table["Name"], **self.catalog)["Table"]
            # The latest field mapping names the table's columns; each partition keeps its own.
            self.glue.update_table(DatabaseName=self.database, TableInput=table, **self.catalog)
            if _serde_parameters(before) != SERDE_PARAMETERS:
                self._migrate_partitions(table["Name"])

    def _migrate_partitions(self, name: str) -> None:
        """Give partitions registered under other SerDe parameters (escape '"' before) the current ones, once.

        Their files were written alike (quote '"', doubled quotes), so the current parameters read them exactly;
        each partition keeps its columns and location.
        """
        pages = self.glue.get_paginator("get_partitions").paginate(
            DatabaseName=self.database, TableName=name, **self.catalog
        )
        for page in pages:
            for part in page["Partitions"]:
                if _serde_parameters(part) == SERDE_PARAMETERS:
                    continue
                sd = dict(part["StorageDescriptor"])
                sd["SerdeInfo"] = {**sd.get("SerdeInfo", {}), "Parameters": dict(SERDE_PARAMETERS)}
                self.glue.update_partition(
                    DatabaseName=self.database,
                    TableName=name,
                    PartitionValueList=part["Values"],
                    PartitionInput={"Values": part["Values"], "StorageDescriptor": sd},
                    **self.catalog,
                )

    def _upsert_partition(self, segment: Segment, run_id: str, location: str) -> None:
        partition = {"Values": [run_id], "StorageDescriptor": _storage(segment, location)}
        try:
            self.glue.create_partition(
                DatabaseName=self.database, TableName=segment.name.lower(), PartitionInput=partition, **self.catalog
            )
        except self.glue.exceptions.AlreadyExistsException:
            self.glue.update_partition(
                DatabaseName=self.database,
                TableName=segment.name.lower(),
                PartitionValueList=[run_id],
                PartitionInput=partition,
                **self.catalog,
            )


def view_sql(segment: Segment, exports: Path) -> str:
    """A DuckDB view over every run's import files of a segment: the same columns as the Athena table.

    An empty value reads as ``''``, as the SerDe reads it (DuckDB alone would read NULL).
    """
    pattern = str(Path(exports).resolve() / "*" / segment.name / "*.csv")
    cols = ", ".join(
        f"coalesce({qi(m.field)}, '') as {qi(c['Name'])}" for m, c in zip(segment.mappings, columns(segment))
    )
    return (
        f"create or replace view imports.{qi(segment.name.lower())} as "
        f"select {cols}, regexp_extract(filename, '([^/\\\\]+)[/\\\\][^/\\\\]+[/\\\\][^/\\\\]+$', 1) as run_id "
        f"from read_csv({ql(pattern)}, header = true, all_varchar = true, union_by_name = true, "
        "filename = true, quote = '\"', escape = '\"', delim = ',')"
    )


class DuckDBImportsViews:
    """The local counterpart: views in ``lakeseg_imports.duckdb`` next to the export folder.

    The views are derived data: a database that cannot be opened (a disk that filled up while it was
    written: "Corrupt database file", "not a valid DuckDB database file") is rebuilt from the export
    folder -- a view for every known segment with delivered files -- instead of failing every later run.
    """

    def __init__(self, exports: Path, database: Path | None = None):
        self.exports = Path(exports)
        # Beside the export folder, never inside it: that holds only <run_id>/<segment>/ folders.
        self.database = Path(database) if database else self.exports.parent / "lakeseg_imports.duckdb"
        self._lock = threading.Lock()
        self.segments: dict[str, Segment] = {}  # every segment of the project: a rebuild gives each its view

    def know(self, segments: Sequence[Segment]) -> None:
        """The project's segments, so that a rebuilt database has a view for each one delivered before."""
        self.segments.update({s.name: s for s in segments})

    def repair(self) -> None:
        """Give every known segment with delivered files its view: a database left unreadable, or without a
        view for a delivery it could not register (a full disk), is brought in step with the export folder."""
        import duckdb

        with self._lock:
            delivered = self._delivered()
            if not delivered:
                return
            try:
                con = duckdb.connect(str(self.database), read_only=True) if self.database.exists() else None
                try:
                    have = (
                        {
                            r[0]
                            for r in con.execute(
                                "select view_name from duckdb_views() where schema_name = 'imports'"
                            ).fetchall()
                        }
                        if con
                        else set()
                    )
                finally:
                    if con is not None:
                        con.close()
                missing = [s for s in delivered if s.name.lower() not in have]
                if missing:
                    self.database.parent.mkdir(parents=True, exist_ok=True)
                    self._create_views(missing)
            except duckdb.Error as exc:
                self._rebuild_after(exc)

    def _rebuild_after(self, exc: Exception) -> None:
        """The views are derived data: a database DuckDB cannot open or update is rebuilt from the export
        folder -- unless another process holds its lock, which makes it not ours to replace (re-raised)."""
        if any(w in str(exc).lower() for w in ("could not set lock", "conflicting lock")):
            raise exc
        log.debug("imports database %s: %s", self.database, exc)
        log.warning(
            "imports database %s cannot be opened or updated (%s); rebuilding it from %s",
            self.database,
            public_reason(exc),
            self.exports,
        )
        self._rebuild()

    def _delivered(self) -> list[Segment]:
        return [s for name, s in sorted(self.segments.items()) if any(self.exports.glob(f"*/{name}/*.csv"))]

    def register(self, segment: Segment, run_id: str, location: str) -> None:
        import duckdb

        with self._lock:
            self.segments[segment.name] = segment
            self.database.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._create_views([segment])
            except duckdb.Error as exc:
                self._rebuild_after(exc)

    def _create_views(self, segments: Sequence[Segment]) -> None:
        import duckdb

        con = duckdb.connect(str(self.database))
        try:
            con.execute("create schema if not exists imports")
            for segment in segments:
                con.execute(view_sql(segment, self.exports))
        finally:
            con.close()

    def _rebuild(self) -> None:
        """A fresh database: the views of every known segment with delivered import files."""
        for stale in (self.database, self.database.with_name(self.database.name + ".wal")):
            stale.unlink(missing_ok=True)
        self._create_views(self._delivered())


def register_all(
    table: ImportsTable | None, segment: Segment, run_id: str, location: str | None, notes: list[str]
) -> bool:
    """Register a confirmed delivery; a failure becomes a note (returns False), never undoing the delivery."""
    if table is None or not location:
        return True
    try:
        table.register(segment, run_id, location)
    except Exception as exc:  # noqa: BLE001 - the delivery is confirmed and committed already
        # A reader's error may quote the import files' rows: the note keeps what public_reason keeps.
        logging.getLogger(__name__).debug("imports table not updated for %s: %s", segment.name, exc)
        notes.append(f"imports table not updated: {public_reason(exc)}")
        return False
    return True
