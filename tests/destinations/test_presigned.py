"""The pre-signed PUT (``sync.destinations.presigned``) against a real local server: HTTP for what is sent and
answered, HTTPS with a certificate of its own for verification; failures never quote the signed query."""

from __future__ import annotations

import http.client
import http.server
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from sync.destinations import presigned

SIGNED = "X-Amz-Signature=deadbeef&X-Amz-Credential=AKIAEXAMPLE"


class _Handler(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict, bytes]] = []
    reply = b""
    status = 200

    def do_PUT(self):  # noqa: N802 (http.server's name)
        length = int(self.headers["Content-Length"])
        self.received.append((self.command, dict(self.headers), self.rfile.read(length)))
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.reply)))
        self.end_headers()
        self.wfile.write(self.reply)

    def log_message(self, *_args):
        pass


@pytest.fixture
def server():
    _Handler.received, _Handler.reply, _Handler.status = [], b"", 200
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _file(tmp_path: Path, data: bytes = b"Id,Name\r\ne1,x\r\n") -> Path:
    path = tmp_path / "part-00000.csv"
    path.write_bytes(data)
    return path


def test_the_file_is_put_once_with_its_length_and_the_answer_comes_back(server, tmp_path):
    # Given a server that answers 200 with a body
    _Handler.reply = b"<ok/>"
    url = f"http://127.0.0.1:{server.server_port}/upload/part?{SIGNED}"
    # When a file is PUT
    status, body = presigned.put_file(presigned.pool(False, 5), url, _file(tmp_path), {"x-amz-acl": "private"})
    # Then one PUT arrived with the file, its Content-Length and the given headers; the status and body come back
    ((method, headers, data),) = _Handler.received
    assert (method, data) == ("PUT", b"Id,Name\r\ne1,x\r\n")
    assert headers["Content-Length"] == "15" and headers["x-amz-acl"] == "private"
    assert (status, body) == (200, b"<ok/>")


def test_an_empty_answer_is_empty_bytes(server, tmp_path):
    _Handler.status = 204
    status, body = presigned.put_file(
        presigned.pool(False, 5), f"http://127.0.0.1:{server.server_port}/p", _file(tmp_path), {}
    )
    assert (status, body) == (204, b"")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_put_names_the_url_without_its_signed_query(tmp_path):
    # Given a URL whose port nobody listens on, with a signed query and a fragment
    url = f"http://127.0.0.1:{_closed_port()}/upload/part?{SIGNED}#frag"
    # When the PUT fails, then PutFailed says where in botocore's words, and nothing of the query or fragment
    with pytest.raises(presigned.PutFailed) as failed:
        presigned.put_file(presigned.pool(False, 2), url, _file(tmp_path), {})
    message = str(failed.value)
    assert message.startswith('Could not connect to the endpoint URL: "http://127.0.0.1:') and "/upload/part" in message
    assert "deadbeef" not in message and "AKIA" not in message and "?" not in message and "frag" not in message


def test_a_server_that_never_answers_is_a_read_timeout(tmp_path):
    # Given a server that accepts the connection and never answers
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/p?{SIGNED}"
        # When the PUT waits longer than the timeout, then it fails as a read timeout
        with pytest.raises(presigned.PutFailed, match="^Read timeout on endpoint URL"):
            presigned.put_file(presigned.pool(False, 0.5), url, _file(tmp_path), {})


def test_the_pool_verifies_certificates_times_out_both_ways_and_never_retries():
    # Given a pool for a 7-second timeout, then every connection verifies and times out as configured
    kw = presigned.pool(False, 7).connection_pool_kw
    assert kw["cert_reqs"] == "CERT_REQUIRED" and kw["ca_certs"] is None and kw["retries"].total is False
    assert (kw["timeout"].connect_timeout, kw["timeout"].read_timeout) == (7, 7)
    assert presigned.pool("/etc/ca.pem", 7).connection_pool_kw["ca_certs"] == "/etc/ca.pem"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f"url: /p?{SIGNED} failed", "url: /p failed", id="the-query-after-its-question-mark"),
        pytest.param(f"quoted {SIGNED} alone", "quoted <query> alone", id="the-query-alone"),
        pytest.param("nothing to hide", "nothing to hide", id="no-query-in-the-text"),
    ],
)
def test_the_signed_query_is_cut_out_of_any_message(text, expected):
    assert presigned._without_query(text, f"https://bucket.s3.amazonaws.com/p?{SIGNED}") == expected


def test_a_url_without_a_query_leaves_the_message_alone():
    assert presigned._without_query("a ? b", "https://bucket.s3.amazonaws.com/p") == "a ? b"


@pytest.fixture
def tls_server(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    _Handler.received, _Handler.reply, _Handler.status = [], b"", 200
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, cert
    httpd.shutdown()
    httpd.server_close()


def test_a_certificate_nobody_vouches_for_is_refused_and_the_named_bundle_is_trusted(tls_server, tmp_path):
    httpd, cert = tls_server
    url = f"https://127.0.0.1:{httpd.server_port}/p?{SIGNED}"
    # Given a server whose certificate is its own: without a bundle that names it, the PUT fails validation
    with pytest.raises(presigned.PutFailed, match="^SSL validation failed for https://127.0.0.1") as failed:
        presigned.put_file(presigned.pool(False, 5), url, _file(tmp_path), {})
    assert "deadbeef" not in str(failed.value)
    assert _Handler.received == []
    # When the bundle names it (ca_bundle), then the PUT goes through
    assert presigned.put_file(presigned.pool(str(cert), 5), url, _file(tmp_path), {})[0] == 200


class _Raising:
    """A pool whose request fails with an error urllib3 has no special words for, quoting the whole URL."""

    def request(self, method, url, **_kw):
        raise presigned.http_errors.HTTPError(f"unexpected failure for {url}")


def test_an_unexpected_failure_quoting_the_url_loses_the_signed_query(tmp_path):
    url = f"https://bucket.s3.amazonaws.com/p?{SIGNED}"
    with pytest.raises(presigned.PutFailed) as failed:
        presigned.put_file(_Raising(), url, _file(tmp_path), {})
    assert str(failed.value) == (
        "An HTTP Client raised an unhandled exception: unexpected failure for https://bucket.s3.amazonaws.com/p"
    )


def _answer_then_cut(listener: socket.socket, answer: bytes) -> None:
    """Read one request in full, send ``answer``, then close the connection."""
    try:
        conn, _ = listener.accept()
    except OSError:  # nobody came (the listener timed out)
        return
    with conn, conn.makefile("rb") as request:
        conn.settimeout(5)
        request.readline()  # PUT /upload/part?... HTTP/1.1
        headers = http.client.parse_headers(request)
        request.read(int(headers["Content-Length"]))
        conn.sendall(answer)


@pytest.fixture
def cut_off_server():
    """A server that answers 200 with a Content-Length of 100, sends 5 bytes of the body and hangs up."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(10)
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"12345"
        thread = threading.Thread(target=_answer_then_cut, args=(listener, answer), daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_connection_cut_in_the_middle_of_the_answer_body_is_a_failed_put(cut_off_server, tmp_path):
    # Given a server that answers 200 and hangs up 5 bytes into a body of 100
    url = f"http://127.0.0.1:{cut_off_server}/upload/part?{SIGNED}"
    # When a file is PUT
    with pytest.raises(presigned.PutFailed) as failed:
        presigned.put_file(presigned.pool(False, 5), url, _file(tmp_path), {})
    # Then it fails as a connection closed before a valid response, naming the URL without its signed query
    message = str(failed.value)
    assert message == (
        "Connection was closed before we received a valid response from endpoint URL: "
        f'"http://127.0.0.1:{cut_off_server}/upload/part".'
    )
    assert "deadbeef" not in message and "AKIA" not in message
