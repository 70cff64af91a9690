"""A model of how Athena reads a CSV-backed table: Hive's OpenCSVSerde over opencsv 2.3.

Written from the published sources, to read import files the way production
does instead of the way Python's csv module (the writer's own assumption) does:

* opencsv 2.3, ``au.com.bytecode.opencsv.CSVParser`` (the release of April 2011,
  the version Hive's pom pins) and the bit of ``CSVReader`` Hive uses
  (``readNext``: ``parseLineMulti`` until nothing is pending);
* Hive's ``org.apache.hadoop.hive.serde2.OpenCSVSerde`` (``initialize``,
  ``newReader``, ``deserialize``);
* Hadoop's ``TextInputFormat`` line splitting and Hive's
  ``skip.header.line.count`` (per file).

What the model keeps from the source, on purpose, bug for bug:

* an escape character is only an escape inside a quoted field **or inside a
  field already started** (``inQuotes || inField``), and only before a quote or
  another escape: there it stands for the next character; anywhere else the
  escape character is **dropped** and the next character read as usual;
* a quote followed by a quote, in the same places, is one literal quote
  (``isNextCharacterEscapedQuote``): RFC-4180's doubled quotes work;
* ``inField`` flips on every quote, escaped or not, and is an instance field of
  the parser (never reset between calls; Hive makes a new parser per row);
* strictQuotes false (characters outside quotes are kept), ignoreLeadingWhiteSpace
  true (white space before a quote that opens in mid-field is dropped), the
  "embedded quote" rule (a quote after position 2, not next to a separator,
  is kept as a character);
* the parser refuses equal separator/quote/escape characters (NUL excepted) and
  a NUL separator -- but Hive never reaches that check for escape ``"``:
  ``newReader`` builds the reader without an escape when the table's escape is
  CSVWriter's default ``"``, so the parser's own default, backslash, applies;
* a line that ends inside quotes is pending (``parseLineMulti``); the reader
  asks for the next line, and Hive's reader holds only one line: the row
  keeps the fields read before the open quote, the rest are NULL;
* every value is a string; an empty field is ``''`` whether it was written
  empty or as ``""``; a column past the last field is NULL (``None``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# opencsv 2.3 CSVParser defaults
DEFAULT_SEPARATOR = ","
DEFAULT_QUOTE_CHARACTER = '"'
DEFAULT_ESCAPE_CHARACTER = "\\"
DEFAULT_STRICT_QUOTES = False
DEFAULT_IGNORE_LEADING_WHITESPACE = True
NULL_CHARACTER = "\0"
# opencsv 2.3 CSVWriter's default escape: what Hive compares a table's escapeChar with
WRITER_DEFAULT_ESCAPE_CHARACTER = '"'


class UnsupportedOperation(Exception):
    """java.lang.UnsupportedOperationException from the CSVParser constructor."""


class UnterminatedQuote(IOError):
    """java.io.IOException("Un-terminated quoted field at end of CSV line") from parseLine."""


def _is_java_whitespace(ch: str) -> bool:
    # Character.isWhitespace: Unicode space separators except the no-break ones, and \t \n \x0b \f \r \x1c-\x1f.
    if ch in "\u00a0\u2007\u202f":
        return False
    return ch in "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f" or (ch.isspace() and ch not in "\x85")


@dataclass
class CSVParser:
    separator: str = DEFAULT_SEPARATOR
    quotechar: str = DEFAULT_QUOTE_CHARACTER
    escape: str = DEFAULT_ESCAPE_CHARACTER
    strict_quotes: bool = DEFAULT_STRICT_QUOTES
    ignore_leading_white_space: bool = DEFAULT_IGNORE_LEADING_WHITESPACE

    def __post_init__(self):
        def same(a, b):
            return a != NULL_CHARACTER and a == b

        if (
            same(self.separator, self.quotechar)
            or same(self.separator, self.escape)
            or same(self.quotechar, self.escape)
        ):
            raise UnsupportedOperation("The separator, quote, and escape characters must be different!")
        if self.separator == NULL_CHARACTER:
            raise UnsupportedOperation("The separator character must be defined!")
        self.pending: str | None = None
        self.in_field = False  # an instance field in 2.3: it survives from one call to the next

    def is_pending(self) -> bool:
        return self.pending is not None

    def parse_line(self, line: str | None) -> list[str] | None:
        return self._parse(line, multi=False)

    def parse_line_multi(self, line: str | None) -> list[str] | None:
        return self._parse(line, multi=True)

    def _next_is_escaped_quote(self, line: str, in_quotes: bool, i: int) -> bool:
        return in_quotes and len(line) > i + 1 and line[i + 1] == self.quotechar

    def _next_is_escapable(self, line: str, in_quotes: bool, i: int) -> bool:
        return in_quotes and len(line) > i + 1 and line[i + 1] in (self.quotechar, self.escape)

    def _parse(self, line: str | None, *, multi: bool) -> list[str] | None:
        if not multi and self.pending is not None:
            self.pending = None
        if line is None:
            if self.pending is not None:
                rest, self.pending = self.pending, None
                return [rest]
            return None
        tokens: list[str] = []
        sb: list[str] | None = []
        in_quotes = False
        if self.pending is not None:
            sb.append(self.pending)
            self.pending = None
            in_quotes = True
        i = 0
        while i < len(line):
            c = line[i]
            if c == self.escape:
                if self._next_is_escapable(line, in_quotes or self.in_field, i):
                    sb.append(line[i + 1])
                    i += 1
                # otherwise the escape character is dropped
            elif c == self.quotechar:
                if self._next_is_escaped_quote(line, in_quotes or self.in_field, i):
                    sb.append(line[i + 1])
                    i += 1
                else:
                    if not self.strict_quotes:
                        # a quote in mid-field (a,bc"d"ef,g): kept, unless only white space precedes it
                        if (
                            i > 2
                            and line[i - 1] != self.separator
                            and len(line) > i + 1
                            and line[i + 1] != self.separator
                        ):
                            text = "".join(sb)
                            if self.ignore_leading_white_space and text and all(map(_is_java_whitespace, text)):
                                sb = []
                            else:
                                sb.append(c)
                    in_quotes = not in_quotes
                self.in_field = not self.in_field
            elif c == self.separator and not in_quotes:
                tokens.append("".join(sb))
                sb = []
                self.in_field = False
            else:
                if not self.strict_quotes or in_quotes:
                    sb.append(c)
                    self.in_field = True
            i += 1
        if in_quotes:
            if not multi:
                raise UnterminatedQuote("Un-terminated quoted field at end of CSV line")
            sb.append("\n")
            self.pending = "".join(sb)
            sb = None
        if sb is not None:
            tokens.append("".join(sb))
        return tokens


def _java_read_lines(text: str) -> list[str]:
    """BufferedReader.readLine over ``text``: lines end at \\n, \\r or \\r\\n; no empty last line."""
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


class CSVReader:
    """opencsv 2.3 CSVReader over a text: readNext joins lines while a quoted field is pending."""

    def __init__(
        self,
        text: str,
        separator=DEFAULT_SEPARATOR,
        quotechar=DEFAULT_QUOTE_CHARACTER,
        escape=DEFAULT_ESCAPE_CHARACTER,
        skip_lines: int = 0,
    ):
        self.parser = CSVParser(separator, quotechar, escape)
        self._lines = _java_read_lines(text)[skip_lines:]
        self._at = 0
        self.has_next = True

    def _next_line(self) -> str | None:
        if self._at >= len(self._lines):
            self.has_next = False
            return None
        self._at += 1
        return self._lines[self._at - 1]

    def read_next(self) -> list[str] | None:
        result: list[str] | None = None
        while True:
            line = self._next_line()
            if not self.has_next:
                return result  # opencsv: "should throw if still pending?" -- it does not
            r = self.parser.parse_line_multi(line)
            if r:
                result = r if result is None else result + r
            if not self.parser.is_pending():
                return result


# --------------------------------------------------------------------------- Hive's OpenCSVSerde


@dataclass(frozen=True)
class OpenCSVSerde:
    """Hive's OpenCSVSerde as initialised from a table's SerDe parameters (read side only)."""

    separator: str
    quote: str
    escape: str

    @classmethod
    def from_parameters(cls, parameters: dict[str, str]) -> OpenCSVSerde:
        # getProperty: the first character of the property, else CSVWriter's defaults (, " ")
        def prop(name, default):
            value = parameters.get(name)
            return value[0] if value is not None else default

        return cls(
            prop("separatorChar", ","), prop("quoteChar", '"'), prop("escapeChar", WRITER_DEFAULT_ESCAPE_CHARACTER)
        )

    def new_reader(self, line: str) -> CSVReader:
        # newReader: an escape equal to CSVWriter's default (") is not passed on, so the
        # parser's default escape, backslash, is the one that applies.
        if self.escape == WRITER_DEFAULT_ESCAPE_CHARACTER:
            return CSVReader(line, self.separator, self.quote)
        return CSVReader(line, self.separator, self.quote, self.escape)

    def deserialize(self, line: str, columns: int) -> list[str | None]:
        """One row (a line of the file, without its line end): a string per column, NULL past the last field."""
        read = self.new_reader(line).read_next()
        return [read[i] if read is not None and i < len(read) else None for i in range(columns)]


def read_text_file(
    data: bytes, parameters: dict[str, str], columns: int, skip_header_lines: int = 0
) -> list[list[str | None]]:
    """A file as a Hive table over TextInputFormat reads it: UTF-8 lines, header lines skipped, a row per line."""
    serde = OpenCSVSerde.from_parameters(parameters)
    lines = _java_read_lines(data.decode("utf-8"))[skip_header_lines:]
    return [serde.deserialize(line, columns) for line in lines]
