"""The opencsv 2.3 / Hive OpenCSVSerde model reproduces the source's known outputs.

The parser cases are the outputs opencsv 2.3's own CSVParserTest asserts (the
release's tests, April 2011); the SerDe cases are what Hive's newReader and
deserialize do with them, as the design notes and trinodb/trino #18952 describe.
"""

from __future__ import annotations

import pytest

from tests.readers.opencsv23 import (
    CSVParser,
    CSVReader,
    OpenCSVSerde,
    UnsupportedOperation,
    UnterminatedQuote,
    read_text_file,
)


@pytest.mark.parametrize(
    "line,fields",
    [
        ("This, is, a, test.", ["This", " is", " a", " test."]),
        ("a,b,c", ["a", "b", "c"]),
        ('a,123"4"567,c', ["a", '123"4"567', "c"]),
        ('a,"b,b,b",c', ["a", "b,b,b", "c"]),
        (",,", ["", "", ""]),
        (
            'a,"PO Box 123,\nKippax,ACT. 2615.\nAustralia",d.\n',
            ["a", "PO Box 123,\nKippax,ACT. 2615.\nAustralia", "d.\n"],
        ),
        ('a,"""",c', ["a", '"', "c"]),
        ('"test","this,test,is,good","\\"test\\"","\\"quote\\""', ["test", "this,test,is,good", '"test"', '"quote"']),
        ('"""""","test"\n', ['""', 'test"\n']),
        ('"a\nb",b,"\nd",e\n', ["a\nb", "b", "\nd", "e\n"]),
        (
            '"804503689","London",""London"shop","address","116.453182","39.918884"',
            ["804503689", "London", '"London"shop', "address", "116.453182", "39.918884"],
        ),
        ('"this", "is","a test"', ["this", "is", "a test"]),
    ],
    ids=[
        "spaces-kept",
        "simple",
        "embedded-quote-mid-field",
        "quoted-commas",
        "empty-elements",
        "line-breaks-inside",
        "doubled-quote-alone",
        "backslash-escaped-quotes",
        "tricky-multiple-quotes",
        "tricky-line-breaks",
        "doubled-quote-opening-a-field",
        "white-space-before-quote-dropped",
    ],
)
def test_the_default_parser_reads_the_lines_of_opencsvs_own_tests(line, fields):
    # Given opencsv's default parser (separator , quote " escape \)
    # When a line from the release's own tests is parsed
    # Then the fields are the ones those tests assert
    assert CSVParser().parse_line(line) == fields


@pytest.mark.parametrize(
    "parser,line,fields",
    [
        (CSVParser(":"), 'a:"b:b:b":c', ["a", "b:b:b", "c"]),
        (CSVParser(":", "'"), "a:'b:b:b':c", ["a", "b:b:b", "c"]),
        (
            CSVParser(",", "'"),
            "865,0,'AmeriKKKa\\'s_Most_Wanted','',294,0,0,0.734338696798625,'20081002052147',242429208,18448",
            [
                "865",
                "0",
                "AmeriKKKa's_Most_Wanted",
                "",
                "294",
                "0",
                "0",
                "0.734338696798625",
                "20081002052147",
                "242429208",
                "18448",
            ],
        ),
        (CSVParser(";"), 'field1;\\=field2;"""field3"""', ["field1", "=field2", '"field3"']),
        (
            CSVParser("\t"),
            'zo""har""at\t10-04-1980\t29\tC:\\\\foo.txt',
            ['zo"har"at', "10-04-1980", "29", "C:\\foo.txt"],
        ),
        (CSVParser(",", '"', "\\", True), '"a","b","c"', ["a", "b", "c"]),
        (CSVParser(",", '"', "\\", True), 'abc\',!@#",\\""   xyz,', ["", ',"', ""]),
        (CSVParser(",", '"', "\\", True), '"Line with", "spaces at end"  ', ["Line with", "spaces at end"]),
    ],
    ids=[
        "colon-separator",
        "colon-and-single-quote",
        "single-quote-backslash-escaped",
        "lone-escape-dropped",
        "tab-separator-escapes-outside-quotes",
        "strict-quotes",
        "strict-quotes-garbage",
        "strict-quotes-spaces",
    ],
)
def test_other_settings_read_as_opencsvs_own_tests_say(parser, line, fields):
    assert parser.parse_line(line) == fields


def test_a_line_ending_inside_quotes_fails_parse_line_and_is_pending_for_parse_line_multi():
    # Given the default parser
    parser = CSVParser()
    # When a line ends inside a quoted field
    # Then parseLine refuses it
    with pytest.raises(UnterminatedQuote, match="Un-terminated quoted field at end of CSV line"):
        parser.parse_line('This,is a "bad line to parse.')
    # and parseLineMulti keeps it pending until the next line closes the quote
    assert parser.parse_line_multi('This,"is a "good" line\\\\ to parse') == ["This"]
    assert parser.is_pending()
    assert parser.parse_line_multi('because we are using parseLineMulti."') == [
        'is a "good" line\\ to parse\nbecause we are using parseLineMulti.'
    ]
    assert not parser.is_pending()
    # a null line returns what was pending; parseLine drops it
    parser.parse_line_multi('a,"open')
    assert parser.parse_line_multi(None) == ["open\n"]
    parser.parse_line_multi('a,"open')
    assert parser.parse_line("b") == ["b"] and parser.parse_line(None) is None


@pytest.mark.parametrize(
    "chars",
    [(",", ",", "\\"), (",", '"', '"'), (",", '"', ","), ("\0", '"', "\\")],
    ids=["separator-is-quote", "quote-is-escape", "separator-is-escape", "separator-is-nul"],
)
def test_the_parser_refuses_equal_characters(chars):
    with pytest.raises(UnsupportedOperation):
        CSVParser(*chars)


def test_quote_and_escape_may_both_be_nul():
    assert CSVParser(",", "\0", "\0").parse_line("a,b") == ["a", "b"]


@pytest.mark.parametrize(
    "line,fields",
    [
        ('"a\\b"', ["ab"]),  # in quotes, before an ordinary character: the escape is dropped
        ('"a\\\\b"', ["a\\b"]),  # in quotes, before an escape: one backslash
        ('"a\\"b"', ['a"b']),  # in quotes, before a quote: a literal quote
        ("a\\\\b", ["a\\b"]),  # in a started field (inField), unquoted: escapes work too
        ("\\\\b", ["b"]),  # at the start of a field (not inField): both backslashes dropped
        ("C:\\temp\\new", ["C:tempnew"]),
    ],
    ids=[
        "quoted-lone-escape",
        "quoted-double-escape",
        "quoted-escaped-quote",
        "unquoted-in-field-double-escape",
        "unquoted-field-start",
        "windows-path",
    ],
)
def test_a_backslash_escapes_only_a_quote_or_backslash_and_is_dropped_otherwise(line, fields):
    assert CSVParser().parse_line(line) == fields


def test_in_field_survives_between_calls_on_one_parser():
    # Given a parser that ended its last line in mid-field
    parser = CSVParser()
    parser.parse_line("abc")
    # When the next line starts with a doubled quote
    # Then it reads as an escaped quote (inField was still set), not as an empty quoted field
    assert parser.parse_line('"",x') == ['"', "x"] != CSVParser().parse_line('"",x') == ["", "x"]


@pytest.mark.parametrize(
    "parameters,escape",
    [
        ({"separatorChar": ",", "quoteChar": '"', "escapeChar": '"'}, "\\"),
        ({}, "\\"),
        ({"separatorChar": ",", "quoteChar": '"', "escapeChar": "\\"}, "\\"),
        ({"separatorChar": ",", "quoteChar": '"', "escapeChar": "\u0001"}, "\u0001"),
        ({"separatorChar": ",", "quoteChar": '"', "escapeChar": "\u0001ignored"}, "\u0001"),
    ],
    ids=[
        "escape-quote-becomes-backslash",
        "no-properties-backslash",
        "escape-backslash",
        "escape-soh",
        "first-character-only",
    ],
)
def test_hive_builds_the_reader_with_backslash_when_the_escape_is_the_writers_default_quote(parameters, escape):
    # Given a table's SerDe parameters
    # When Hive builds a reader for a row
    reader = OpenCSVSerde.from_parameters(parameters).new_reader("x")
    # Then the parser escapes with backslash if the table said " (or nothing), else with the table's character
    assert reader.parser.escape == escape and reader.parser.quotechar == '"' and reader.parser.separator == ","


@pytest.mark.parametrize(
    "line,row",
    [
        ('a,"",', ["a", "", ""]),
        ("a", ["a", None, None]),
        ("", [None, None, None]),
        ('a,"open,b', ["a", None, None]),
        ('a,"He said ""x\\""",c', ["a", None, None]),
        ("a,b,c,d", ["a", "b", "c"]),
    ],
    ids=[
        "empty-and-quoted-empty-both-empty-strings",
        "missing-columns-null",
        "empty-line-all-null",
        "unterminated-quote-keeps-earlier-fields",
        "escaped-quote-then-doubled-quote-never-closes",
        "extra-fields-dropped",
    ],
)
def test_hive_deserializes_a_row_as_strings_and_nulls(line, row):
    serde = OpenCSVSerde.from_parameters({"separatorChar": ",", "quoteChar": '"', "escapeChar": '"'})
    assert serde.deserialize(line, 3) == row


def test_a_text_file_is_read_line_by_line_after_its_header_lines():
    # Given a file with a header, CRLF line ends and a row with a quoted line break
    data = b'Id,Name\r\nep-1,"Smith, Jr."\r\nep-2,"two\r\nlines"\r\n'
    # When it is read as a table with skip.header.line.count = 1
    rows = read_text_file(data, {"escapeChar": '"'}, 2, skip_header_lines=1)
    # Then each physical line is a row: the line break splits the record (not supported), and its
    # second half opens a quote that never closes
    assert rows == [["ep-1", "Smith, Jr."], ["ep-2", None], [None, None]]


def test_the_reader_joins_lines_of_one_text_while_a_quote_is_open():
    reader = CSVReader('a,"b\nc",d\ne')
    assert reader.read_next() == ["a", "b\nc", "d"]
    assert reader.read_next() == ["e"]
    assert reader.read_next() is None
