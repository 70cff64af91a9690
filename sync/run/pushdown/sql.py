"""The Athena side of the diff: keys, the keyed digest and the statements, with no secret in their text.

Athena cannot compute DuckDB's ``hash``, so a snapshot the lake diffs has its
own key and digest scheme, built from Trino functions:

- keys: ``k1 = from_big_endian_64(xxhash64(to_utf8(Id)))`` and ``k2`` the same
  over the Id's bytes with a NUL and a salt (not a function of k1, as on DuckDB);
- digest: the first 64 bits of ``hmac_sha256(to_utf8(Id and values), key)``.
  Each value is written as ``s<length>:<text>`` or ``n`` for NULL, so no two
  rows serialise alike and NULL stays apart from ''.

The key is *joined*, never written: ``cross join <key table>``, a one-row
table over one Parquet object under the state prefix (``athena_subkey``: a
subkey derived from ``digest_key``, never the secret itself). Query text --
which Athena keeps in its query history -- holds table names, column names
and ``$path`` values only. Who can read the key is who can read the state
prefix (and decrypt it with the state's KMS key): the runner's role.

The mapping hash of a lake snapshot names this scheme (``SIGNATURE``), so a
segment that moves between DuckDB and Athena gets one full send, as any other
change of digest scheme does (``sync.run.diff._full_send_reason``).

Everything here is written in DuckDB's dialect with Trino's function names
and turned into Athena's with ``classify.to_engine``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sync.core.fields import ID_FIELD
from sync.core.sql import qi, ql
from sync.run import classify
from sync.run.diff import LAKE_SIGNATURE
from sync.state import deltas

SIGNATURE = LAKE_SIGNATURE  # in place of DuckDB's hash signature in the mapping hash
DIGEST_SCHEME = "ad1"
KEY_SCHEME = "ak1"
KEY_SALT = "lakeseg"
KEY_COLUMN = "key"
SEND_KINDS = classify.SENT_KINDS
EXIT_KINDS = classify.EXIT_KINDS
DUPLICATE = "d"  # a current member whose key repeats: the segment is refused
UNCHANGED = "u"  # sent on a full send only
COUNTS = "n"  # one row: the segment's members (k1) and those with a NULL Id (k2)


def athena_subkey(secret: str) -> bytes:
    """The 32-byte HMAC key the lake's digest uses, derived from ``digest_key`` (the secret never leaves the runner)."""
    return hashlib.sha256(b"lakeseg athena digest subkey\0" + secret.encode("utf-8")).digest()


def diffed_in_lake(mapping_hash: str) -> bool:
    """Whether a snapshot with this mapping hash was written by the diff in Athena."""
    parts = mapping_hash.split("-")
    return len(parts) >= 2 and parts[1] == SIGNATURE


def mapping_hash(segment_mapping_hash: str, key_fingerprint: str) -> str:
    return f"{segment_mapping_hash}-{SIGNATURE}-{key_fingerprint or 'unkeyed'}-{DIGEST_SCHEME}-{KEY_SCHEME}"


def key_sql(id_expr: str) -> str:
    """k1 and k2 of an Id, in Trino's functions."""
    k1 = f"from_big_endian_64(xxhash64(to_utf8({id_expr})))"
    k2 = f"from_big_endian_64(xxhash64(to_utf8({id_expr} || chr(0) || {ql(KEY_SALT)})))"
    return f"{k1} as k1, {k2} as k2"


def _field(expr: str) -> str:
    text = f"cast({expr} as varchar)"
    return f"coalesce('s' || cast(length({text}) as varchar) || ':' || {text}, 'n')"


def digest_sql(id_expr: str, value_exprs: Sequence[str], key_expr: str) -> str:
    """The 64-bit keyed digest of a member's Id and values (``key_expr``: the key table's column)."""
    serial = " || ".join([_field(id_expr), *(_field(v) for v in value_exprs)])
    return f"from_big_endian_64(substr(hmac_sha256(to_utf8({serial}), {key_expr}), 1, 8))"


def current_sql(table: str, columns: Sequence[str], fields: Sequence[str], key_table: str) -> str:
    """The segment's members as the diff sees them: c0..cn (its columns in field order, as typed), Id (text),
    keys, digest."""
    id_col = qi(columns[fields.index(ID_FIELD)].lower())
    cols = [qi(c.lower()) for c in columns]
    values = [c for c, f in zip(cols, fields, strict=True) if f != ID_FIELD]
    numbered = ", ".join(f"s.{c} as c{n}" for n, c in enumerate(cols))
    id_text = f"cast(s.{id_col} as varchar)"
    return (
        f"(select {numbered}, {id_text} as Id, {key_sql(id_text)}, "
        f"{digest_sql(id_text, ['s.' + v for v in values], 'k.' + KEY_COLUMN)} as digest "
        f"from {table} s cross join {key_table} k)"
    )


def _files(paths: Sequence[str]) -> str:
    return "(" + ", ".join(ql(p) for p in paths) + ")"


def previous_sql(
    snapshot_table: str,
    base: Sequence[str],
    delta_files: Sequence[Sequence[str]],
    native: bool,
    base_table: str | None = None,
) -> str:
    """The committed membership (Id, k1, k2, digest) over exactly the files the pointer names.

    ``native``: the snapshot was written with this scheme; otherwise (a DuckDB
    snapshot, another key) keys are derived afresh and digests are NULL, so
    every current member reads as changed: the full send a scheme change needs.
    ``base_table``: the table over the folder of a base Athena wrote: every file in it is the base's (the
    folder is fresh for each compaction and never written again), so it is read whole, without a list of
    files that for a big base would outgrow Athena's limit on query length; and an empty base (a segment
    whose members all left) is an empty folder.
    """
    cols = list(deltas.SNAPSHOT_ROW)
    empty = (
        "(select cast(null as varchar) as Id, cast(0 as bigint) as k1, cast(0 as bigint) as k2, "
        "cast(0 as bigint) as digest where false)"
    )
    if base_table is not None:
        rel = f"(select * from {base_table})"
    elif base:
        rel = f'(select * from {snapshot_table} where "$path" in {_files(base)})'
    elif not delta_files:  # a first sync: nothing committed
        return empty
    else:
        rel = empty
    parts = [f'(select * from {snapshot_table} where "$path" in {_files(d)})' for d in delta_files]
    if not native:
        return f"(select Id, {key_sql('Id')}, cast(null as bigint) as digest from ({members_sql(rel, parts)}) b)"
    return f"({deltas.current_sql(rel, parts, cols)})"


def members_sql(base: str, delta_rels: Sequence[str]) -> str:
    """The Ids of a membership written under another scheme (a DuckDB snapshot, another key): the latest row
    per Id over the base and deltas, read by Id alone -- its keys and digests are another engine's (DuckDB's
    are unsigned) and never read."""
    return deltas.current_sql(base, delta_rels, ["Id"], by=["Id"])


def rows_to_send_sql(current: str, previous: str, dirty: str | None, width: int, full: bool) -> str:
    """ONE statement: every member classified, and only the rows to send (plus repeated Ids).

    Columns: c0..c{width-1} (the segment's values, as typed; NULL for exit rows), Id, k1, k2, digest, kind.
    ``full``: every current member is sent (unchanged ones as 'u'). One more row (kind 'n') counts the
    segment's members (k1) and those whose Id is NULL (k2).
    """
    nulls = ", ".join(f"null as c{n}" for n in range(width))
    vals = ", ".join(f"c.c{n}" for n in range(width))
    classified = classify.classification_sql("cur", "prev", "dirty" if dirty else None)
    sends = (
        f"select {vals}, c.Id, c.k1, c.k2, c.digest, coalesce(k.kind, '{UNCHANGED}') as kind from cur c "
        f"left join classified k on k.k1 = c.k1 and k.k2 = c.k2"
        + ("" if full else f" where k.kind in ({', '.join(ql(k) for k in SEND_KINDS)})")
    )
    exits = (
        f"select {nulls}, p.Id, p.k1, p.k2, cast(null as bigint) as digest, k.kind from classified k "
        f"join prev p on p.k1 = k.k1 and p.k2 = k.k2 where k.kind = 'x'"
    )
    parts = [sends, exits]
    if dirty:
        parts.append(
            f"select {nulls}, d.Id, d.k1, d.k2, cast(null as bigint) as digest, k.kind from classified k "
            f"join dirty d on d.k1 = k.k1 and d.k2 = k.k2 where k.kind = 'q'"
        )
    parts.append(
        f"select {nulls}, c.Id, c.k1, c.k2, c.digest, '{DUPLICATE}' as kind from cur c "
        f"join (select k1, k2 from cur group by k1, k2 having count(*) > 1) r on r.k1 = c.k1 and r.k2 = c.k2"
    )
    parts.append(
        f"select {nulls}, cast(null as varchar) as Id, count(*) as k1, count(*) - count(Id) as k2, "
        f"cast(null as bigint) as digest, '{COUNTS}' as kind from cur"
    )
    ctes = [f"cur as (select * from {current})", f"prev as (select * from {previous})"]
    if dirty:
        ctes.append(f"dirty as (select Id, {key_sql('Id')} from {dirty})")
    ctes.append(f"classified as ({classified})")
    return "with " + ", ".join(ctes) + "\n" + "\nunion all\n".join(parts)
