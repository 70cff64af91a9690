"""An HTTPS ``PUT`` of a file to a pre-signed URL, through urllib3 with TLS verification always on.

Customer Profiles hands out a pre-signed S3 URL per upload job (``GetUploadJobPath``); the
file goes there in one ``PUT``. urllib3 (installed with botocore) sends it: certificates are
always verified, against ``ca_bundle`` (the AWS config's or ``AWS_CA_BUNDLE``) or else the
system trust store; a request is never repeated by urllib3 (the body is a file read once),
and failures read as botocore words them for an endpoint (``PutFailed``), naming the URL
without its query: the query string holds the signature and the credential, which no
message, log or history document may carry.
"""

from __future__ import annotations

import socket
from pathlib import Path

import urllib3
from urllib3 import exceptions as http_errors


class PutFailed(Exception):
    """The PUT did not reach the server or got no answer (the text says which, and where)."""


def pool(ca_bundle: bool | str, timeout: float) -> urllib3.PoolManager:
    """Connections that verify the server's certificate: against ``ca_bundle`` when it names a file."""
    return urllib3.PoolManager(
        cert_reqs="CERT_REQUIRED",
        ca_certs=ca_bundle if isinstance(ca_bundle, str) else None,
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        retries=False,
    )


def put_file(http: urllib3.PoolManager, url: str, path: Path, headers: dict[str, str]) -> tuple[int, bytes]:
    """PUT the file at ``path`` to ``url`` with ``headers`` (and its Content-Length): (HTTP status, body)."""
    size = path.stat().st_size
    with open(path, "rb") as body:
        try:
            response = http.request(
                "PUT", url, body=body, headers={**headers, "Content-Length": str(size)}, preload_content=True
            )
        except (http_errors.HTTPError, socket.gaierror) as exc:
            raise PutFailed(_without_query(_failure(exc, _where(url)), url)) from None
    return response.status, response.data or b""


def _where(url: str) -> str:
    """The URL without its query string (the pre-signed part)."""
    return urllib3.util.parse_url(url)._replace(query=None, fragment=None).url


def _without_query(text: str, url: str) -> str:
    """``text`` with the URL's query string cut out wherever urllib3 quoted it."""
    query = urllib3.util.parse_url(url).query
    return text.replace(f"?{query}", "").replace(query, "<query>") if query else text


def _failure(exc: Exception, url: str) -> str:
    """What went wrong, in botocore's words for an endpoint (the order matters: urllib3's classes nest)."""
    if isinstance(exc, http_errors.SSLError):
        return f"SSL validation failed for {url} {exc}"
    if isinstance(exc, (http_errors.NewConnectionError, socket.gaierror)):
        return f'Could not connect to the endpoint URL: "{url}"'
    if isinstance(exc, http_errors.ConnectTimeoutError):
        return f'Connect timeout on endpoint URL: "{url}"'
    if isinstance(exc, http_errors.ReadTimeoutError):
        return f'Read timeout on endpoint URL: "{url}"'
    if isinstance(exc, http_errors.ProtocolError):
        return f'Connection was closed before we received a valid response from endpoint URL: "{url}".'
    return f"An HTTP Client raised an unhandled exception: {exc}"
