"""The statements the diff in Athena runs, held to the scheme a stored lake snapshot was written with.

A lake snapshot keeps each member's keys (k1, k2) and digest; the next run's
statements must compute them exactly as the run that wrote it did, or every
member reads as leaving and entering (other keys) or as changed (another
digest). The keys are XXH64 (Trino's
``xxhash64``) of the Id, and of the Id, a NUL and the salt ``lakeseg`` (the
scheme ``ak1`` that the snapshot's mapping hash names); the digest is
HMAC-SHA256 of the serialised member under a subkey of the secret (``ad1``).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from sync.core.sql import ql
from sync.run import classify
from sync.run.pushdown import sql
from tests.pushdown.athena_double import evaluate, xxhash64

FIELDS = ["Id", "User.UserAttributes.Tier"]


def _signed(h: int) -> int:
    """A 64-bit hash as Trino's ``from_big_endian_64`` reads its bytes: a signed bigint."""
    return struct.unpack(">q", struct.pack(">Q", h))[0]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"", 0xEF46DB3751D8E999, id="empty"),
        pytest.param(b"a", 0xD24EC4F1A98C6E5B, id="one-byte"),
        pytest.param(b"abc", 0x44BC2CF5AD770999, id="three-bytes"),
    ],
)
def test_the_doubles_xxhash64_gives_the_reference_xxh64_values(data, expected):
    # given XXH64's published test values (seed 0), when the double hashes the bytes, then it gives them
    assert xxhash64(data) == expected


@pytest.mark.parametrize("member", ["member-1", "Ünïcode-Id", ""], ids=["ascii", "non-ascii", "empty"])
def test_a_members_lake_keys_are_xxh64_of_its_id_and_of_its_id_a_nul_and_the_salt(member):
    # given an Id
    # when Athena computes the lake's key expression for it
    got = evaluate(classify.to_engine(f"select {sql.key_sql(ql(member))}", "athena"))
    # then k1 and k2 are the scheme's: a snapshot written by an earlier run keeps matching
    raw = member.encode("utf-8")
    assert got == [(_signed(xxhash64(raw)), _signed(xxhash64(raw + b"\0lakeseg")))]


@pytest.mark.parametrize(
    "columns",
    [["id", "tier", "score"], ["id"]],
    ids=["a-column-without-a-field", "a-field-without-a-column"],
)
def test_columns_and_fields_that_do_not_pair_up_are_refused(columns):
    # given columns and fields of different lengths, when the current members' SQL is written, then it is refused
    # (a column dropped from the pairing would leave the digest blind to it)
    with pytest.raises(ValueError, match="zip"):
        sql.current_sql("seg", columns, FIELDS, "key_t")


def test_a_members_lake_digest_is_the_hmac_of_its_serialised_id_and_values_under_a_subkey_of_the_secret():
    # given the digest key's secret, and a member with a value, a NULL and an empty value
    secret = "s" * 32
    subkey = hashlib.sha256(b"lakeseg athena digest subkey\0" + secret.encode("utf-8")).digest()
    values = [ql("Gold"), "cast(null as varchar)", ql(""), ql("Zoë")]
    # when Athena computes the member's digest under the subkey the runner derives
    assert sql.athena_subkey(secret) == subkey
    digest = sql.digest_sql(ql("m-1"), values, f"from_hex('{subkey.hex()}')")
    got = evaluate(classify.to_engine(f"select {digest}", "athena"))
    # then it is the first 64 bits of HMAC-SHA256 over each field as s<length>:<text> (n for NULL): the digest
    # a stored lake snapshot holds, so a changed derivation or serialisation would resend every member
    serial = "s3:m-1" + "s4:Gold" + "n" + "s0:" + "s3:Zoë"
    mac = hmac.new(subkey, serial.encode("utf-8"), hashlib.sha256).digest()
    assert got == [(struct.unpack(">q", mac[:8])[0],)]
