"""Import files: RFC-4180 CSV that round-trips exactly, split under the size limit."""

from __future__ import annotations

import csv

import duckdb
import pytest

from sync.import_files import write_import_files

TRICKY = [
    ("a,1", 'say "hi"', "José Nguyễn"),
    ("b", "comma, inside", "田中"),
    ("c", '"', "Smith, Jr."),
    ("d", "", "Zoë 🎉"),
    ("e", None, "plain"),
]


def read_back(files):
    rows = []
    for f in files:
        with f.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, strict=True)
            rows.append(next(reader))
            rows.extend(reader)
    return rows


def test_values_round_trip_exactly(tmp_path):
    # Given values with commas, quotes and non-ASCII text
    con = duckdb.connect()
    con.execute('create table t ("Id" varchar, "Attributes.Note" varchar, "User.UserAttributes.Name" varchar)')
    con.executemany("insert into t values (?, ?, ?)", TRICKY)
    # When they are written as import files
    files = write_import_files(con, "select * from t order by 1", tmp_path / "out", 10_000)
    # Then Python's csv parser reads back the header and the values, NULL as empty
    rows = read_back(files)
    assert rows[0] == ["Id", "Attributes.Note", "User.UserAttributes.Name"]
    assert rows[1:] == [[a, "" if b is None else b, c] for a, b, c in TRICKY]
    raw = files[0].read_bytes()
    assert raw.startswith(b"Id,Attributes.Note,") and b"\r\n" in raw and b'"say ""hi"""' in raw
    raw.decode("utf-8")  # UTF-8, no BOM games
    assert not raw.startswith(b"\xef\xbb\xbf")


@pytest.mark.parametrize("limit", [4_096, 65_536, 1_000_000], ids=["4KiB", "64KiB", "1MB"])
def test_files_stay_under_the_limit_and_each_has_the_header(tmp_path, limit):
    con = duckdb.connect()
    sql = ("select 'endpoint-' || i::varchar as \"Id\", "
           "repeat('x', (i % 90)::integer) || ', \"q\"' as \"Attributes.Filler\" from range(20000) t(i)")
    files = write_import_files(con, sql, tmp_path / "out", limit)
    assert len(files) > 1
    assert all(f.stat().st_size <= limit for f in files)
    total = 0
    for f in files:
        with f.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, strict=True)
            assert next(reader) == ["Id", "Attributes.Filler"]
            total += sum(1 for _ in reader)
    assert total == 20000
    assert [f.name for f in files] == [f"part-{n:05d}.csv" for n in range(len(files))]


def test_oversized_duckdb_output_is_resplit(tmp_path, monkeypatch):
    # Given DuckDB's rotation overshooting (simulated by aiming far above the limit)
    import sync.import_files as mod

    monkeypatch.setattr(mod, "_TARGET_SHARE", 50.0)
    con = duckdb.connect()
    files = write_import_files(con, "select i::varchar as \"Id\" from range(50000) t(i)", tmp_path / "o", 8_192)
    assert len(files) > 10 and all(f.stat().st_size <= 8_192 for f in files)
    assert sum(len(read_back([f])) - 1 for f in files) == 50000
