"""Owner tags: the process and host that made a file or folder, written into its name.

A run's work folder (``<run_id>.<pid>@<host>``) and the local state store's
temporary files (``.<name>.<pid>@<host>.<random>.tmp``) carry their owner in
their names. Whatever state a killed run's clean-up reached -- even with the
owner file inside its work folder gone -- the next run can tell what a dead
process on this host left behind (removed at once) from what a live run is
still using (left alone). A name without a tag, or with another host's, is
judged by its age alone.
"""

from __future__ import annotations

import os
import re
import socket

_TAGGED = re.compile(r"\.(\d+)@([A-Za-z0-9.-]+)$")


def host_label(host: str | None = None) -> str:
    """The host as it is spelt in names: letters, digits, '.' and '-' only."""
    return re.sub(r"[^A-Za-z0-9.-]", "-", host if host is not None else socket.gethostname())[:64] or "-"


def tag() -> str:
    """This process's tag: ``<pid>@<host>``."""
    return f"{os.getpid()}@{host_label()}"


def owner_of(name: str) -> dict | None:
    """The owner ``{"host", "pid"}`` a name ending in ``.<pid>@<host>`` carries, or None.

    This host is given as ``socket.gethostname()`` spells it, so that the liveness check that judges lock
    owners judges tagged names the same way.
    """
    m = _TAGGED.search(name)
    if m is None:
        return None
    here = socket.gethostname()
    host = here if m.group(2) == host_label(here) else m.group(2)
    return {"host": host, "pid": int(m.group(1))}


def temp_owner(name: str) -> dict | None:
    """The owner of a temporary file named ``.<name>.<pid>@<host>.<random>.tmp``, or None."""
    if not name.startswith(".") or not name.endswith(".tmp"):
        return None
    return owner_of(name[: -len(".tmp")].rpartition(".")[0])
