"""Logging for the ``lakeseg`` command: our own loggers only, AWS wire logs on request, secrets masked.

``-v``/``-vv`` raise the ``sync`` logger (lakeseg's own modules) to INFO/DEBUG;
the root logger and third-party loggers (botocore, urllib3, dbt) stay at
WARNING. ``--debug-aws`` turns on botocore's wire logs, whose request dumps
carry credentials: every record that reaches our handler goes through
:class:`RedactSecrets` first.
"""

from __future__ import annotations

import logging
import re

OWN_LOGGER = "sync"
AWS_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
MASK = "***"

_SECRET_KEYS = (
    r"x-amz-security-token|authorization|aws_access_key_id|aws_secret_access_key|aws_session_token"
    r"|x-amz-credential|x-amz-signature|secretaccesskey|sessiontoken|accesskeyid"
)
# 'Authorization': b'AWS4-HMAC-SHA256 Credential=...'   "aws_secret_access_key": "..."
_QUOTED = re.compile(rf"(?i)((?:{_SECRET_KEYS})['\"]?\s*[:=]\s*b?)(['\"])(.*?)(\2)")
# X-Amz-Security-Token=...&   aws_access_key_id = AKIA...   Authorization: AWS4-HMAC-SHA256 ...
_BARE = re.compile(
    rf"(?i)((?:{_SECRET_KEYS})\s*[:=]\s*)(?!['\"]|\*\*\*)([^&\s,;'\"}}\]]+(?: Credential=[^\s,'\"]+)?"
    rf"(?:,? ?SignedHeaders=[^\s,'\"]+)?(?:,? ?Signature=[0-9a-f]+)?)"
)
# Access key ids wherever they appear (e.g. inside Credential=AKIA.../date/region/...).
_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b")


def redact(text: str) -> str:
    text = _QUOTED.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}{m.group(4)}", text)
    text = _BARE.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return _KEY_ID.sub(MASK, text)


class RedactSecrets(logging.Filter):
    """Masks AWS credentials (tokens, signatures, key ids, secrets) in a log record's final text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_HANDLER_NAME = "lakeseg-cli"


def configure(verbose: int = 0, debug_aws: bool = False, stream=None) -> logging.Handler:
    """Route our loggers (and, with ``debug_aws``, AWS's) to stderr through the redacting handler."""
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    own = logging.getLogger(OWN_LOGGER)
    for old in [h for h in own.handlers if h.get_name() == _HANDLER_NAME]:
        own.removeHandler(old)
    own.addHandler(handler)
    own.setLevel(logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG)
    own.propagate = False
    for name in AWS_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
            logger.removeHandler(old)
        if debug_aws:
            logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
        else:
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
    return handler
