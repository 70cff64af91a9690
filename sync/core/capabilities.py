"""Checking, when a run is put together, that each collaborator declares every capability its Protocol names.

The sync calls its destination's, reader's and imports table's capabilities directly (no probing with
``getattr``); mypy checks the implementations it can see, and ``require`` refuses, with a clear error, an
object that lacks a member -- one typed loosely, or a plugin -- before anything is read or sent.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def missing_members(obj: object, protocol: type) -> list[str]:
    """The members of ``protocol`` (a typing.Protocol) that ``obj`` lacks: what it fails to declare."""
    names: set[str] = set()
    for cls in protocol.__mro__:
        if not getattr(cls, "_is_protocol", False) or cls.__module__ == "typing":
            continue
        names |= {n for n in vars(cls) if not n.startswith("_")} | set(getattr(cls, "__annotations__", {}))
    return sorted(n for n in names if not hasattr(obj, n))


def require(obj: T, protocol: type, role: str) -> T:
    """``obj`` itself if it has every member of ``protocol``; else TypeError naming what it lacks."""
    missing = missing_members(obj, protocol)
    if missing:
        raise TypeError(
            f"the {role} {type(obj).__name__} does not declare {', '.join(missing)} "
            f"(every {role} states each capability of {protocol.__module__}.{protocol.__qualname__}, even as none)"
        )
    return obj
