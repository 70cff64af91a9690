"""Glue tables over Parquet the diff reads in the lake: the snapshot folder, the key, the run's staging.

Each is an external Parquet table (Hive metadata, Parquet SerDe) whose
location is a folder. Athena reads every object under a location except names
starting with ``_`` or ``.``: the snapshot's statements therefore filter on
``"$path"`` to the files the pointer names, so what a killed commit left there
is never read. Tables are named per run and dropped by ``drop``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}
SNAPSHOT_COLUMNS = (("id", "string"), ("k1", "bigint"), ("k2", "bigint"), ("digest", "bigint"), ("deleted", "boolean"))
KEY_COLUMNS = (("key", "binary"),)
DIRTY_COLUMNS = (("id", "string"),)


def table_input(name: str, location: str, columns: Sequence[tuple[str, str]]) -> dict:
    """glue:CreateTable's TableInput for an external Parquet table at ``location`` (a folder, ending in /)."""
    return {
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
        "StorageDescriptor": {
            "Columns": [{"Name": n, "Type": t} for n, t in columns],
            "Location": location if location.endswith("/") else location + "/",
            **PARQUET,
        },
    }


class GlueTables:
    """The tables one run registered in ``database``; ``drop`` removes them (best effort, each once)."""

    def __init__(self, glue_client, database: str):
        self.glue = glue_client
        self.database = database
        self.created: list[str] = []

    def register(self, name: str, location: str, columns: Sequence[tuple[str, str]]) -> str:
        """Create (or replace, after a killed run of the same name) the table; returns ``database.name``."""
        with contextlib.suppress(self.glue.exceptions.EntityNotFoundException):
            self.glue.delete_table(DatabaseName=self.database, Name=name)
        self.glue.create_table(DatabaseName=self.database, TableInput=table_input(name, location, columns))
        self.created.append(name)
        return f'"{self.database}"."{name}"'

    def drop_matching(self, pattern: re.Pattern[str], keep: str) -> list[str]:
        """Drop the tables whose whole name matches ``pattern`` but does not start with ``keep`` (what killed
        runs left); their names."""
        dropped = []
        for page in self.glue.get_paginator("get_tables").paginate(DatabaseName=self.database):
            for table in page.get("TableList", []):
                name = table["Name"]
                if pattern.fullmatch(name) and not name.startswith(keep):
                    with contextlib.suppress(self.glue.exceptions.EntityNotFoundException):
                        self.glue.delete_table(DatabaseName=self.database, Name=name)
                    dropped.append(name)
        return dropped

    def drop(self) -> None:
        for name in self.created:
            with contextlib.suppress(Exception):
                self.glue.delete_table(DatabaseName=self.database, Name=name)
        self.created.clear()
