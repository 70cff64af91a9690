"""The S3 state store's own plumbing, request by request (botocore's Stubber checks every request against
the S3 service model): URL and prefix, encryption on every write, and which S3 errors mean what."""

from __future__ import annotations

import io

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from sync.core.errors import ConfigError
from sync.state.s3 import S3StateStore


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("s3", region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


@pytest.mark.parametrize(
    "url,bucket,prefix,key,location",
    [
        ("s3://b/pre/fix/", "b", "pre/fix", "pre/fix/k.json", "s3://b/pre/fix/k.json"),
        ("s3://b/", "b", "", "k.json", "s3://b/k.json"),
        ("s3://b", "b", "", "k.json", "s3://b/k.json"),
        ("s3://b/XpreX/", "b", "XpreX", "XpreX/k.json", "s3://b/XpreX/k.json"),
    ],
    ids=["prefix-with-slashes", "bucket-slash", "bucket", "only-slashes-trimmed"],
)
def test_the_url_names_bucket_and_prefix(url, bucket, prefix, key, location):
    store = S3StateStore(url, s3_client=None)
    assert (store.bucket, store.prefix, store._key("k.json"), store._location("k.json")) == (
        bucket,
        prefix,
        key,
        location,
    )
    assert store.url == url.rstrip("/")


@pytest.mark.parametrize(
    "url,message", [("gs://b/p", "is not an s3:// URL"), ("s3:///p", "names no bucket")], ids=["not-s3", "no-bucket"]
)
def test_a_bad_url_is_a_configuration_error_naming_it(url, message):
    with pytest.raises(ConfigError, match=message) as err:
        S3StateStore(url, s3_client=None)
    assert repr(url) in str(err.value)


@pytest.mark.parametrize(
    "kms,sse",
    [
        (None, {"ServerSideEncryption": "AES256"}),
        ("alias/state", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/state"}),
    ],
    ids=["sse-s3", "sse-kms"],
)
def test_every_write_is_encrypted_at_rest(s3, kms, sse):
    client, stub = s3
    store = S3StateStore("s3://b/p", client, kms_key_id=kms)
    stub.add_response("put_object", {}, {"Bucket": "b", "Key": "p/a.json", "Body": b"{}", **sse})
    stub.add_response("put_object", {}, {"Bucket": "b", "Key": "p/l.json", "Body": b"{}", "IfNoneMatch": "*", **sse})
    store._write("a.json", b"{}")
    assert store._create("l.json", b"{}") is True


def error(stub, method, code, status=400):
    stub.add_client_error(method, service_error_code=code, http_status_code=status)


@pytest.mark.parametrize(
    "code,status,result",
    [
        ("NoSuchKey", 404, None),
        ("404", 404, None),
        ("NotFound", 404, None),
        ("AccessDenied", 403, "raises"),
        ("InternalError", 500, "raises"),
    ],
)
def test_a_read_is_missing_only_when_s3_says_so(s3, code, status, result):
    client, stub = s3
    error(stub, "get_object", code, status)
    store = S3StateStore("s3://b/p", client)
    if result == "raises":
        with pytest.raises(ClientError):
            store._read("x.json")
    else:
        assert store._read("x.json") is None


@pytest.mark.parametrize(
    "code,result", [("PreconditionFailed", False), ("ConditionalRequestConflict", False), ("AccessDenied", "raises")]
)
def test_creating_an_existing_object_is_false_and_other_errors_raise(s3, code, result):
    client, stub = s3
    error(stub, "put_object", code, 412 if code == "PreconditionFailed" else 409 if "Conflict" in code else 403)
    store = S3StateStore("s3://b", client)
    if result == "raises":
        with pytest.raises(ClientError):
            store._create("lock.json", b"{}")
    else:
        assert store._create("lock.json", b"{}") is False


def test_compare_and_delete_deletes_only_the_object_it_compared(s3):
    client, stub = s3
    store = S3StateStore("s3://b/p", client)
    # Given the lock holds what we expect: it is deleted with IfMatch on the ETag read
    stub.add_response("get_object", {"Body": body(b"mine"), "ETag": '"e1"'}, {"Bucket": "b", "Key": "p/l.json"})
    stub.add_response("delete_object", {}, {"Bucket": "b", "Key": "p/l.json", "IfMatch": '"e1"'})
    assert store._delete_if_unchanged("l.json", b"mine") is True
    # Given another run's lock: nothing is deleted
    stub.add_response("get_object", {"Body": body(b"theirs"), "ETag": '"e2"'}, {"Bucket": "b", "Key": "p/l.json"})
    assert store._delete_if_unchanged("l.json", b"mine") is False


@pytest.mark.parametrize(
    "step,code,result",
    [
        ("get_object", "NoSuchKey", False),
        ("get_object", "AccessDenied", "raises"),
        ("delete_object", "PreconditionFailed", False),
        ("delete_object", "NoSuchKey", False),
        ("delete_object", "AccessDenied", "raises"),
    ],
    ids=["gone-before-read", "read-denied", "changed-before-delete", "gone-before-delete", "delete-denied"],
)
def test_compare_and_delete_under_errors(s3, step, code, result):
    client, stub = s3
    store = S3StateStore("s3://b", client)
    if step == "delete_object":
        stub.add_response("get_object", {"Body": body(b"mine"), "ETag": '"e1"'}, {"Bucket": "b", "Key": "l.json"})
    error(stub, step, code, {"NoSuchKey": 404, "PreconditionFailed": 412}.get(code, 403))
    if result == "raises":
        with pytest.raises(ClientError):
            store._delete_if_unchanged("l.json", b"mine")
    else:
        assert store._delete_if_unchanged("l.json", b"mine") is result


@pytest.mark.parametrize(
    "url,listed",
    [("s3://b/pre", ["snapshots/a.json", "snapshots/b.json"]), ("s3://b", ["snapshots/a.json", "snapshots/b.json"])],
    ids=["with-prefix", "no-prefix"],
)
def test_listing_returns_keys_relative_to_the_prefix(s3, url, listed):
    client, stub = s3
    store = S3StateStore(url, client)
    full = [store._key(k) for k in listed]
    stub.add_response(
        "list_objects_v2",
        {"Contents": [{"Key": k} for k in full], "IsTruncated": False},
        {"Bucket": "b", "Prefix": store._key("snapshots/")},
    )
    assert store._list("snapshots/") == listed


@pytest.mark.parametrize("code,status,result", [("404", 404, False), ("403", 403, "raises")])
def test_a_download_is_missing_only_on_404(s3, tmp_path, code, status, result):
    client, stub = s3
    error(stub, "head_object", code, status)
    store = S3StateStore("s3://b", client)
    if result == "raises":
        with pytest.raises(ClientError):
            store._download("x.parquet", tmp_path / "x")
    else:
        assert store._download("x.parquet", tmp_path / "x") is False


def test_opening_s3_state_without_a_client_makes_an_s3_client_and_keeps_the_kms_key(monkeypatch):
    from sync.state import open_state_store

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = open_state_store("s3://b/p", kms_key_id="alias/state")
    assert isinstance(store, S3StateStore)
    assert store.s3.meta.service_model.service_name == "s3" and store.kms_key_id == "alias/state"
    assert (store.bucket, store.prefix) == ("b", "p")


def test_compare_and_swap_writes_encrypted_over_only_the_object_it_compared(s3):
    client, stub = s3
    store = S3StateStore("s3://b/p", client, kms_key_id="alias/state")
    sse = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/state"}
    # Given the lease holds what we expect: it is replaced with IfMatch on the ETag read, encrypted
    stub.add_response("get_object", {"Body": body(b"mine"), "ETag": '"e1"'}, {"Bucket": "b", "Key": "p/l.json"})
    stub.add_response("put_object", {}, {"Bucket": "b", "Key": "p/l.json", "Body": b"new", "IfMatch": '"e1"', **sse})
    assert store._replace_if_unchanged("l.json", b"mine", b"new") is True
    # Given another run's lease, or one replaced between read and write: nothing is written
    stub.add_response("get_object", {"Body": body(b"theirs"), "ETag": '"e2"'}, {"Bucket": "b", "Key": "p/l.json"})
    assert store._replace_if_unchanged("l.json", b"mine", b"new") is False
    stub.add_response("get_object", {"Body": body(b"mine"), "ETag": '"e3"'}, {"Bucket": "b", "Key": "p/l.json"})
    error(stub, "put_object", "PreconditionFailed", 412)
    assert store._replace_if_unchanged("l.json", b"mine", b"new") is False


def test_an_exact_download_asks_for_the_committed_etag_and_writes_every_byte(s3, tmp_path):
    client, stub = s3
    store = S3StateStore("s3://b/p", client)
    data = bytes(range(256)) * 9000  # more than one 1 MiB chunk
    stub.add_response(
        "get_object", {"Body": body(data), "ETag": '"e1"'}, {"Bucket": "b", "Key": "p/f.parquet", "IfMatch": '"e1"'}
    )
    assert store._download_exact("f.parquet", tmp_path / "f", '"e1"') is True
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.parametrize(
    "code,status,result",
    [
        ("PreconditionFailed", 412, False),
        ("NoSuchKey", 404, False),
        ("404", 404, False),
        ("AccessDenied", 403, "raises"),
        ("InternalError", 500, "raises"),
    ],
    ids=["changed", "gone", "gone-404", "denied", "server-error"],
)
def test_an_exact_download_is_false_only_when_the_file_changed_or_went(s3, tmp_path, code, status, result):
    client, stub = s3
    error(stub, "get_object", code, status)
    store = S3StateStore("s3://b", client)
    if result == "raises":
        with pytest.raises(ClientError):
            store._download_exact("f.parquet", tmp_path / "f", '"e1"')
    else:
        assert store._download_exact("f.parquet", tmp_path / "f", '"e1"') is False


@pytest.mark.parametrize("url", ["s3://b/pre", "s3://b"], ids=["with-prefix", "bucket-root"])
def test_a_sized_listing_gives_keys_relative_to_the_prefix_with_etag_and_size(s3, url):
    client, stub = s3
    store = S3StateStore(url, client)
    stub.add_response(
        "list_objects_v2",
        {"Contents": [{"Key": store._key("snapshots/a/lake-x/p0"), "ETag": '"e1"', "Size": 7}], "IsTruncated": False},
        {"Bucket": "b", "Prefix": store._key("snapshots/a/lake-x/")},
    )
    assert store._list_sized("snapshots/a/lake-x/") == [("snapshots/a/lake-x/p0", '"e1"', 7)]
