"""Import files: RFC-4180 CSV that round-trips exactly, split under the size limit."""

from __future__ import annotations

import csv

import duckdb
import pytest

from sync.core.import_files import write_import_files

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
    sql = (
        "select 'endpoint-' || i::varchar as \"Id\", "
        "repeat('x', (i % 90)::integer) || ', \"q\"' as \"Attributes.Filler\" from range(20000) t(i)"
    )
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
    import sync.core.import_files as mod

    monkeypatch.setattr(mod, "_TARGET_SHARE", 50.0)
    con = duckdb.connect()
    files = write_import_files(con, 'select i::varchar as "Id" from range(50000) t(i)', tmp_path / "o", 8_192)
    assert len(files) > 10 and all(f.stat().st_size <= 8_192 for f in files)
    assert sum(len(read_back([f])) - 1 for f in files) == 50000


def test_rows_split_again_keep_commas_quotes_and_text_exactly(tmp_path, monkeypatch):
    """Guards issue 15 behaviour 5: rows re-split into smaller files are written as quoted CSV, not joined text;
    verified to fail on a broken copy (sync/core/import_files.py:_split writing ",".join(row) per record)."""
    # Given DuckDB's output overshooting the limit (simulated by aiming far above it), and values with
    # commas, quotes and non-ASCII text
    import sync.core.import_files as mod

    monkeypatch.setattr(mod, "_TARGET_SHARE", 50.0)
    con = duckdb.connect()
    con.execute('create table t ("Id" varchar, "Attributes.Note" varchar, "User.UserAttributes.Name" varchar)')
    rows = [(f"{n:04d}-{a}", b, c) for n in range(200) for a, b, c in TRICKY]
    con.executemany("insert into t values (?, ?, ?)", rows)
    # When they are written as import files of at most 4 KiB
    files = write_import_files(con, "select * from t order by 1", tmp_path / "out", 4_096)
    # Then the files were split again, and every value reads back exactly through a strict CSV parser
    assert len(files) > 5 and all(f.stat().st_size <= 4_096 for f in files)
    back = read_back(files)
    header = back[0]
    assert header == ["Id", "Attributes.Note", "User.UserAttributes.Name"]
    assert [r for r in back if r != header] == [[a, "" if b is None else b, c] for a, b, c in sorted(rows)]


def test_a_file_just_over_the_limit_is_split_again(tmp_path, monkeypatch):
    """Guards issue 15 behaviour 16: any file over the limit is re-split, however small the overshoot (DuckDB
    overshoots its target by 0.5-6%); verified to fail on a broken copy (sync/core/import_files.py:write_import_files
    re-splitting only files above 1.1 x the limit)."""
    import sync.core.import_files as mod

    con = duckdb.connect()
    sql = (
        "select 'endpoint-' || lpad(i::varchar, 5, '0') as \"Id\", 'a, \"b\"' as \"Attributes.Note\" "
        "from range(3000) t(i) order by 1"
    )
    # Given the size of DuckDB's output as one file
    whole = write_import_files(con, sql, tmp_path / "whole", 10_000_000)
    assert len(whole) == 1
    size = whole[0].stat().st_size
    # When the limit is 5 % below it, and DuckDB's rotation target lets it write that one file
    limit = int(size / 1.05)
    monkeypatch.setattr(mod, "_TARGET_SHARE", 1.06)
    files = write_import_files(con, sql, tmp_path / "out", limit)
    # Then the file was split again: every file is within the limit, and no row is lost
    assert len(files) == 2
    assert all(f.stat().st_size <= limit for f in files)
    assert sum(len(read_back([f])) - 1 for f in files) == 3000


def _csv_file(path, rows) -> bytes:
    from sync.core.import_files import encode_row

    data = encode_row(["Id", "Attributes.Note"]) + b"".join(encode_row(r) for r in rows)
    path.write_bytes(data)
    return data


def test_a_split_keeps_every_byte_of_every_record_even_line_breaks_inside_values(tmp_path):
    from sync.core.import_files import _split, encode_row

    # Given records whose values hold CRLF, LF, quotes and commas
    rows = [[f"ep-{i}", f'line one\r\nline "two", {i}\nthree'] for i in range(30)]
    original = _csv_file(tmp_path / "part-0.csv", rows)
    # When split into pieces of at most 300 bytes
    pieces = _split(tmp_path / "part-0.csv", 300)
    # Then each piece starts with the header, and without it they add up to the original, byte for byte
    header = encode_row(["Id", "Attributes.Note"])
    assert len(pieces) > 2 and all(p.read_bytes().startswith(header) for p in pieces)
    assert header + b"".join(p.read_bytes()[len(header) :] for p in pieces) == original
    assert not (tmp_path / "part-0.csv").exists()


def test_a_piece_may_fill_the_limit_exactly(tmp_path):
    from sync.core.import_files import _split, encode_row

    # Given a header and records sized so that two records fill a piece to exactly the limit
    header = encode_row(["Id", "Attributes.Note"])
    row = ["ep-1", "x" * 20]
    limit = len(header) + 2 * len(encode_row(row))
    _csv_file(tmp_path / "part-0.csv", [row] * 4)
    # When split at that limit, then each piece holds two records and is exactly the limit
    pieces = _split(tmp_path / "part-0.csv", limit)
    assert [p.stat().st_size for p in pieces] == [limit, limit]


def test_a_record_that_fits_the_limit_only_alone_is_accepted_and_a_larger_one_is_refused(tmp_path):
    from sync.core.import_files import _split, encode_row

    header = encode_row(["Id", "Attributes.Note"])
    row = ["ep-1", "y" * 50]
    exact = len(header) + len(encode_row(row))
    _csv_file(tmp_path / "part-0.csv", [row, row])
    assert [p.stat().st_size for p in _split(tmp_path / "part-0.csv", exact)] == [exact, exact]
    _csv_file(tmp_path / "part-1.csv", [row])
    with pytest.raises(
        ValueError, match=rf"one record of part-1.csv is larger than the file size limit \({exact - 1} bytes\)"
    ):
        _split(tmp_path / "part-1.csv", exact - 1)


def test_the_output_folder_may_be_nested_and_new_or_already_there(tmp_path):
    con = duckdb.connect()
    sql = "select * from (values ('ep-1', 'a')) t(\"Id\", \"Attributes.X\")"
    nested = tmp_path / "run" / "seg" / "import"
    first = write_import_files(con, sql, nested, 1_000_000)
    assert [f.name for f in first] == ["part-00000.csv"]
    (nested / "part-00000.csv").unlink()
    assert [f.name for f in write_import_files(con, sql, nested, 1_000_000)] == ["part-00000.csv"]


def test_files_split_again_on_a_machine_whose_locale_is_not_utf8_keep_their_text(tmp_path, monkeypatch, ascii_locale):
    """Import files are UTF-8 whatever the host's locale: re-splitting reads them as UTF-8, not in the locale's
    encoding (under an ASCII locale the split would otherwise fail on the first non-ASCII name)."""
    # Given DuckDB's output overshooting the limit (simulated by aiming far above it), with non-ASCII names,
    # on a host whose locale is ASCII
    import sync.core.import_files as mod

    monkeypatch.setattr(mod, "_TARGET_SHARE", 50.0)
    con = duckdb.connect()
    con.execute('create table t ("Id" varchar, "User.UserAttributes.Name" varchar)')
    rows = [(f"{n:04d}", name) for n in range(100) for name in ("José Nguyễn", "田中", "Zoë 🎉")]
    con.executemany("insert into t values (?, ?)", rows)
    # When they are written as import files of at most 2 KiB
    files = write_import_files(con, "select * from t order by 1, 2", tmp_path / "out", 2_048)
    # Then they were split again, and every name reads back exactly as UTF-8
    assert len(files) > 2 and all(f.stat().st_size <= 2_048 for f in files)
    back = read_back(files)
    assert [r for r in back if r != ["Id", "User.UserAttributes.Name"]] == [list(r) for r in sorted(rows)]


@pytest.mark.parametrize("limit", [700_000, 1_050_000, 1_800_000], ids=["700kB", "1050kB", "1800kB"])
def test_duckdbs_own_rotation_over_rows_of_varied_width_gives_files_within_the_limit(tmp_path, monkeypatch, limit):
    """Issue 22 item 4: no constant patched. DuckDB checks a file's size only after each chunk of rows it writes,
    so its own rotation (aimed at 90 % of the limit) overshoots: at these limits some of its files land just over
    the limit (by less than 11 %). Fails with a copy of write_import_files that re-splits only files above
    limit / 0.9 (about 111 %) or above 1.1 x the limit."""
    import sync.core.import_files as mod

    # Given rows whose width varies from about 30 to 330 bytes, with commas and quotes to escape
    rows = 60_000
    sql = (
        "select 'endpoint-' || lpad(i::varchar, 6, '0') as \"Id\", "
        "repeat('x', ((i * 7919) % 300)::integer) || ', \"q\" ' || i::varchar as \"Attributes.Note\" "
        "from range(60000) t(i)"
    )
    duckdb_wrote = []  # the size of every file DuckDB's rotation produced (spied on, not changed)
    real_split = mod._split
    monkeypatch.setattr(
        mod, "_split", lambda path, limit_: duckdb_wrote.append(path.stat().st_size) or real_split(path, limit_)
    )
    # When they are written as import files with the real writer and the limit
    files = write_import_files(duckdb.connect(), sql, tmp_path / "out", limit)
    # Then DuckDB's own rotation wrote files just over the limit (what the test is about) ...
    assert any(limit < size <= limit / 0.9 for size in duckdb_wrote), (limit, duckdb_wrote)
    # ... and every file delivered is at or under the limit
    assert [f.name for f in files if f.stat().st_size > limit] == []
    # and the files together hold every row once, each file with the header
    seen = []
    for f in files:
        with f.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, strict=True)
            assert next(reader) == ["Id", "Attributes.Note"]
            seen.extend(reader)
    assert sorted(r[0] for r in seen) == [f"endpoint-{i:06d}" for i in range(rows)]
    assert all(
        note.endswith(f', "q" {int(eid[9:])}')
        and len(note) == (int(eid[9:]) * 7919) % 300 + len(f', "q" {int(eid[9:])}')
        for eid, note in seen
    )


def test_a_file_exactly_at_the_limit_is_delivered_as_duckdb_wrote_it(tmp_path):
    # Given DuckDB's output as one file, with an empty value (which DuckDB writes as "", unlike a NULL)
    con = duckdb.connect()
    sql = "select 'ep-' || i as \"Id\", '' as \"Attributes.Note\", 'x' as \"Attributes.Tier\" from range(200) t(i)"
    [whole] = write_import_files(con, sql, tmp_path / "whole", 10_000_000)
    # When the limit is exactly that file's size
    files = write_import_files(con, sql, tmp_path / "out", whole.stat().st_size)
    # Then the file is within the limit and delivered as it is, byte for byte (never split again)
    assert len(files) == 1 and files[0].read_bytes() == whole.read_bytes()


def test_duckdbs_files_under_the_limit_are_delivered_as_it_wrote_them(tmp_path):
    # Given rows with an empty value, and a limit DuckDB's own rotation (aiming below it) keeps every file under
    con = duckdb.connect()
    sql = "select 'id-' || i as \"Id\", '' as \"Attributes.Note\", 'x' as \"Attributes.Tier\" from range(400000) t(i)"
    # When written
    files = write_import_files(con, sql, tmp_path / "out", 2_000_000)
    # Then there are several files, none split again: every record is as DuckDB wrote it, its empty value quoted
    assert len(files) > 1 and all(f.stat().st_size <= 2_000_000 for f in files)
    assert sum(f.read_bytes().count(b',"",x\r\n') for f in files) == 400000


def test_rows_keep_the_querys_order_across_more_than_ten_files(tmp_path):
    # Given an ordered query whose rows DuckDB writes as more than ten files (a file per row group of 122,880
    # rows here), where raw-10 sorts before raw-2 as text
    con = duckdb.connect()
    sql = "select lpad(i::varchar, 7, '0') as \"Id\", 'x' as \"Attributes.W\" from range(1500000) t(i) order by 1"
    # When written
    files = write_import_files(con, sql, tmp_path / "out", 1_300_000)
    # Then the files, in their names' order, hold the rows in the query's order
    assert len(files) > 10
    firsts = [f.read_bytes().split(b"\r\n", 2)[1] for f in files]
    assert firsts == sorted(firsts) and firsts[0].startswith(b"0000000,")


def test_a_split_closes_each_piece_it_finishes(tmp_path):
    import gc
    import warnings

    from sync.core.import_files import _split

    # Given a file that splits into several pieces
    _csv_file(tmp_path / "part-0.csv", [[f"ep-{i}", "x" * 40] for i in range(30)])
    # When it is split, with every warning recorded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pieces = _split(tmp_path / "part-0.csv", 300)
        gc.collect()
    # Then no piece was left for the garbage collector to close (each was closed, and so flushed, in turn)
    assert len(pieces) > 2 and not [w for w in caught if issubclass(w.category, ResourceWarning)]
