"""The building blocks of lakeseg's settings schema (pydantic), shared by ``sync.settings`` and each
destination's own settings model, and the one translation of a schema error into a user's words.

Every destination owns the model of its ``destination:`` block (``FilesSettings`` in
``destinations/files.py`` ...); ``sync.settings`` puts them together. A block is validated once, by its
model; nothing downstream checks it again.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StrictStr, ValidationError

from sync.core.errors import ConfigError

Strict = ConfigDict(extra="forbid")


def _no_bool(value: Any) -> Any:
    """YAML ``yes``/``true`` is not a number: refuse it before pydantic's lax coercion."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got the YAML boolean {value!r}")
    return value


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


_PATH_PART = re.compile(r"^[A-Za-z0-9_.-]+$")


def _path_part(value: str) -> str:
    """A value that becomes one folder name in the state store (``destination.name``): never a path of its own."""
    if not _PATH_PART.match(value) or value in (".", ".."):
        raise ValueError(
            "must be one folder name (letters, digits, _ . - only; not '.' or '..'): "
            "it names this destination's folders in the state store"
        )
    return value


Text = Annotated[StrictStr, AfterValidator(_text)]
PathPart = Annotated[StrictStr, AfterValidator(_text), AfterValidator(_path_part)]
Number = Annotated[float, BeforeValidator(_no_bool)]
Whole = Annotated[int, BeforeValidator(_no_bool)]

DESTINATION_TYPES = ("customer_profiles", "files", "pinpoint")

# Range errors in a user's words, by key.
HINTS = {
    "max_exit_share": "must be above 0 and at most 1 (a share: between 0 and 1)",
    "max_size_change_share": "must be above 0 (a share of the last committed size: 0.5 is 50%)",
    "max_entered_share": "must be above 0 (a share of the last committed size: 0.5 is 50%)",
    "max_file_mb": "must be between 1 and 1024 (MiB; Pinpoint takes 1 GB per import job)",
    "max_concurrent_jobs": "must be a whole number between 1 and 10 (Pinpoint runs at most 10 import jobs)",
    "max_job_mb": "must be above 0 and at most 1024 for pinpoint (1 GB per import job) or 1000 for "
    "customer_profiles (an upload stays under 1 GB)",
    "data_expiry_days": "must be between 1 and 1098 (CreateUploadJob's DataExpiry)",
    "refresh_before_expiry_days": "must be at least 0 (and less than destination.data_expiry_days)",
    "max_rejected_rows": "must be a whole number of 0 or more",
    "max_isolation_jobs": "must be a whole number of 0 or more",
    "poll_seconds": "must be between 0 and 3600 seconds",
    "timeout": "must be above 0 seconds",
}


def _nearest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    return "valid keys: " + ", ".join(choices)


def describe(err: Any, known: Mapping[tuple, list[str]]) -> tuple[str, str]:
    """(dotted key, message) for one pydantic error, in a user's words; ``known``: valid keys per level."""
    loc = tuple(err["loc"])
    shown = tuple(
        str(p) for p in loc if not (len(loc) > 1 and loc[0] == "destination" and p in DESTINATION_TYPES and p == loc[1])
    )
    key = ".".join(shown) or "(top level)"
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        parent = tuple(str(p) for p in loc[:-1])
        return key, f"unknown key; {_nearest(loc[-1], known.get(parent, []))}"
    if kind == "missing":
        return key, "is required"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        got = f", got {value.get('type')!r}" if isinstance(value, dict) and "type" in value else ""
        return f"{key}.type", f"must be one of: {', '.join(DESTINATION_TYPES)}{got}"
    if value is None:
        return key, "is empty (null); give a value, or remove the key to use the default"
    message = err["msg"].removeprefix("Value error, ")
    if shown and shown[-1] in HINTS and kind.startswith(("greater_than", "less_than")):
        message = HINTS[shown[-1]]
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        message = "must be a mapping (key: value lines)"
    return key, f"{message}, got {value!r}" if "got" not in message else message


def config_error(where: str, errors: list[Any], known: Mapping[tuple, list[str]]) -> ConfigError:
    """One ConfigError for every problem pydantic found (``ValidationError.errors()``), each naming its key."""
    lines = [f"{key}: {msg}" for key, msg in (describe(e, known) for e in errors)]
    if len(lines) == 1:
        return ConfigError(f"{where}: {lines[0]}")
    return ConfigError(f"{where}: {len(lines)} problems:\n  " + "\n  ".join(lines))


Block = TypeVar("Block", bound=BaseModel)


def destination_block(model: type[Block], settings: Block | Mapping[str, Any]) -> Block:
    """A destination's settings as its model: given as the model (from lakeseg.yml), or as a mapping (a
    library caller), which the same model validates -- the one check a block gets."""
    if isinstance(settings, model):
        return settings
    try:
        return model.model_validate(dict(settings))
    except ValidationError as exc:
        errors = [{**e, "loc": ("destination", *e["loc"])} for e in exc.errors()]
        raise config_error("destination settings", errors, {("destination",): list(model.model_fields)}) from None
