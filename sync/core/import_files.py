"""Import files: UTF-8, RFC-4180 CSV with a header of Pinpoint field names.

DuckDB writes them (quoting values that hold commas, quotes or line breaks,
doubling embedded quotes, CRLF line endings) and rotates to a new file near the
size limit. DuckDB's limit is approximate, so every file is measured
afterwards and any file over the limit is split again on record boundaries.
Files are uncompressed, as Pinpoint requires.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import BinaryIO

import duckdb

from sync.core.sql import ql

# DuckDB checks the size after each written chunk; aim below the limit so a
# final chunk rarely crosses it. Anything that still does is re-split.
_TARGET_SHARE = 0.9


def write_import_files(con: duckdb.DuckDBPyConnection, sql: str, out_dir: Path, max_file_bytes: int) -> list[Path]:
    """Write the rows of ``sql`` as CSV files under ``out_dir``; return them in order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = max(1024, int(max_file_bytes * _TARGET_SHARE))
    con.execute(
        f"copy ({sql}) to {ql(str(out_dir))} (format csv, header true, delimiter ',', quote '\"', "
        f"escape '\"', new_line '\r\n', null '', file_size_bytes {target}, "
        f"filename_pattern 'raw-{{i}}', overwrite_or_ignore true)"
    )
    # DuckDB's own names (raw-<i>) never collide with the final ones (part-<nnnnn>) they are renamed to.
    raw = sorted(out_dir.glob("raw-*.csv"), key=lambda p: int(p.stem.split("-")[1]))
    files: list[Path] = []
    for path in raw:
        if path.stat().st_size > max_file_bytes:
            files.extend(_split(path, max_file_bytes))
        else:
            files.append(path)
    # Stable, zero-padded names in delivery order.
    final = []
    for n, path in enumerate(files):
        dest = out_dir / f"part-{n:05d}.csv"
        if path != dest:
            os.replace(path, dest)
        final.append(dest)
    return final


def _split(path: Path, max_bytes: int) -> list[Path]:
    """Split one CSV file into pieces of at most ``max_bytes``, each with the header."""
    pieces: list[Path] = []
    with path.open("r", encoding="utf-8", newline="") as src:
        reader = csv.reader(src)
        header = next(reader)
        head_bytes = encode_row(header)
        size = 0

        def start_piece(previous: BinaryIO | None) -> BinaryIO:
            nonlocal size
            if previous:
                previous.close()
            piece = path.with_name(f"{path.stem}.{len(pieces):04d}.csv.split")
            pieces.append(piece)
            out = piece.open("wb")
            out.write(head_bytes)
            size = len(head_bytes)
            return out

        out = start_piece(None)
        for row in reader:
            data = encode_row(row)
            if len(head_bytes) + len(data) > max_bytes:
                raise ValueError(f"one record of {path.name} is larger than the file size limit ({max_bytes} bytes)")
            if size + len(data) > max_bytes:
                out = start_piece(out)
            out.write(data)
            size += len(data)
        out.close()
    path.unlink()
    renamed = []
    for piece in pieces:
        dest = piece.with_name(piece.name[: -len(".split")])
        os.replace(piece, dest)
        renamed.append(dest)
    return renamed


def encode_row(row: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerow(row)
    return buf.getvalue().encode("utf-8")
