"""Sizes in settings: the one definition of what ``memory_limit`` may say.

DuckDB reads units case-insensitively (``1gb`` is ``1GB``); decimal units are powers of 1000, binary
ones (``KiB`` ...) of 1024. A limit too small for DuckDB to run the diff at all is refused here, with
the rest of the settings, not when a run has started.
"""

from __future__ import annotations

import re

MEMORY_LIMIT = re.compile(r"^(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)
_UNITS = {
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
MIN_MEMORY_BYTES = 64 * 1024**2  # below this DuckDB cannot classify even a small segment


def memory_limit_bytes(value: str) -> int:
    """The size a ``memory_limit`` names, in bytes; ValueError naming the rule when it is not one."""
    found = MEMORY_LIMIT.match(str(value).strip())
    if not found:
        raise ValueError(f"must be a size such as 1GB, 512MB or 2.5GiB, got {value!r}")
    size = int(float(found.group(1)) * _UNITS[found.group(2).lower()])
    if size < MIN_MEMORY_BYTES:
        raise ValueError(f"must be at least 64MiB (DuckDB needs room to classify a segment), got {value!r}")
    return size
