"""lakeseg's own settings: one declarative file, ``lakeseg.yml``, per dbt target.

```yaml
targets:
  local:
    destination: {type: files, path: build/exports}
    state: build/state
  athena:
    destination:
      type: pinpoint
      application_id: ${LAKESEG_PINPOINT_APP_ID}
      import_s3_url: s3://${LAKESEG_BUCKET}/lakeseg/imports
    state: s3://${LAKESEG_BUCKET}/lakeseg/state
    guard: {max_exit_share: 0.2, max_size_change_share: 0.5, max_entered_share: 0.5}
```

``${NAME}`` and ``${NAME:-default}`` are replaced from the environment (the
default, possibly empty, applies when the variable is unset or empty, as in a
shell); a missing variable without a default is an error naming it.
Command-line flags (and their ``LAKESEG_*`` environment variables) override
the file.

The file is a schema (pydantic): an unknown key is refused with the nearest
valid name, every value is type- and range-checked, and every error names the
file, the target and the key. No value is ever pasted into SQL unchecked:
``memory_limit`` must be a plain size such as ``1GB``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    model_validator,
)

from sync.core.errors import ConfigError
from sync.core.sizes import memory_limit_bytes

SETTINGS_FILE = "lakeseg.yml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
MIN_FILE_MB = 1
MAX_FILE_MB = 1024  # Pinpoint: 1 GB per import job

DEFAULTS: dict[str, Any] = {
    "destination": {"type": "files", "path": "build/exports"},
    "state": "build/state",
    # max_size_change_share / max_entered_share: the size-change guard (sync/guard.py); the sample
    # project's runs move a segment's size by at most 5% and its entries by at most 42% of it.
    "guard": {"max_exit_share": 0.30, "max_size_change_share": 0.50, "max_entered_share": 0.50},
    "files": {"max_file_mb": 100},
    "memory_limit": "1GB",
    "work_dir": "build/work",
    # The value digest's secret (sync/run/digest_key.py): by default a random key in a 0600 file
    # beside the build, outside the state store.
    "digest_key": "file:build/digest.key",
}


# --------------------------------------------------------------------------- interpolation

def interpolate(value: Any, *, where: str = SETTINGS_FILE, key: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string, naming the key on error."""
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            current = os.environ.get(name)
            if default is not None:  # ${NAME:-default}: unset or empty takes the default (maybe "")
                return current if current else default
            if current is not None:
                return current
            at = f" at {key}" if key else ""
            raise ConfigError(f"{where}{at} uses ${{{name}}}, which is not set "
                              f"(export it or write ${{{name}:-default}})")
        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, where=where, key=f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, where=where, key=f"{key}[{i}]") for i, v in enumerate(value)]
    return value


# --------------------------------------------------------------------------- the schema

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
        raise ValueError("must be one folder name (letters, digits, _ . - only; not '.' or '..'): "
                         "it names this destination's folders in the state store")
    return value


def _memory_limit(value: str) -> str:
    memory_limit_bytes(value)
    return value


Text = Annotated[StrictStr, AfterValidator(_text)]
PathPart = Annotated[StrictStr, AfterValidator(_text), AfterValidator(_path_part)]
Number = Annotated[float, BeforeValidator(_no_bool)]
Whole = Annotated[int, BeforeValidator(_no_bool)]
Strict = ConfigDict(extra="forbid")


class FilesDestinationSettings(BaseModel):
    model_config = Strict
    type: Literal["files"]
    path: Text
    name: PathPart | None = None


class PinpointDestinationSettings(BaseModel):
    """Types only; the destination's preflight says which missing value it needs."""

    model_config = Strict
    type: Literal["pinpoint"]
    name: PathPart | None = None
    application_id: StrictStr | None = None
    import_s3_url: Annotated[StrictStr, Field(pattern=r"^(s3://.+)?$")] | None = None
    mode: Literal["stack", "direct"] | None = None
    state_machine_arn: StrictStr | None = None
    import_role_arn: StrictStr | None = None
    segment_name_prefix: StrictStr | None = None
    poll_seconds: Annotated[Number, Field(ge=0)] | None = None
    max_concurrent_jobs: Annotated[Whole, Field(ge=1, le=10)] | None = None
    kms_key_id: StrictStr | None = None
    timeout: Annotated[Number, Field(gt=0)] | None = None
    max_job_mb: Annotated[Number, Field(gt=0, le=1024)] | None = None
    region: StrictStr | None = None
    max_rejected_rows: Annotated[Whole, Field(ge=0)] | None = None
    max_isolation_jobs: Annotated[Whole, Field(ge=0)] | None = None


class CustomerProfilesDestinationSettings(BaseModel):
    """Types only; the destination's preflight says which missing value it needs."""

    model_config = Strict
    type: Literal["customer_profiles"]
    name: PathPart | None = None
    domain_name: Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")] | None = None
    region: StrictStr | None = None
    data_expiry_days: Annotated[Whole, Field(ge=1, le=1098)] | None = None
    refresh_before_expiry_days: Annotated[Whole, Field(ge=0)] | None = None
    unique_key_target: Annotated[StrictStr, Field(pattern=r"^_profile\.[A-Za-z0-9_.]+$")] | None = None
    segment_name_prefix: Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9_-]*$")] | None = None
    poll_seconds: Annotated[Number, Field(ge=0, le=3600)] | None = None
    timeout: Annotated[Number, Field(gt=0)] | None = None
    max_concurrent_jobs: Annotated[Whole, Field(ge=1, le=10)] | None = None
    max_job_mb: Annotated[Number, Field(gt=0, le=1000)] | None = None
    max_rejected_rows: Annotated[Whole, Field(ge=0)] | None = None
    max_isolation_jobs: Annotated[Whole, Field(ge=0)] | None = None


class GuardSettings(BaseModel):
    model_config = Strict
    max_exit_share: Annotated[Number, Field(gt=0, le=1)]
    # Shares of the last committed size; growth can exceed 1 (3.0: up to four times the size).
    max_size_change_share: Annotated[Number, Field(gt=0)]
    max_entered_share: Annotated[Number, Field(gt=0)]


class FilesSettings(BaseModel):
    model_config = Strict
    max_file_mb: Annotated[Number, Field(ge=MIN_FILE_MB, le=MAX_FILE_MB)]


Destination = Annotated[FilesDestinationSettings | PinpointDestinationSettings | CustomerProfilesDestinationSettings, Field(discriminator="type")]


class OwnerSettings(BaseModel):
    """Who answers for the synced segments (the owner of their dbt exposures)."""

    model_config = Strict
    name: Text | None = None
    email: Text | None = None


def _url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("must be an https:// (or http://) URL (got something else; not shown, it may hold a secret)")
    return value


def _unset_if_empty(value: Any) -> Any:
    """``${LAKESEG_SLACK_WEBHOOK_URL:-}`` left empty means: not set."""
    return None if value == "" else value


Url = Annotated[StrictStr, AfterValidator(_url)]
NotifyEvent = Literal["failure", "refusal", "quarantine", "expiry"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = ("failure", "refusal", "quarantine", "expiry")


class NotifySettings(BaseModel):
    """Alerts after a run, to Slack and a signed webhook (sync/output/notify.py)."""

    model_config = Strict
    slack_webhook_url: Annotated[Url | None, BeforeValidator(_unset_if_empty)] = None
    webhook_url: Annotated[Url | None, BeforeValidator(_unset_if_empty)] = None
    webhook_secret: Annotated[Text | None, BeforeValidator(_unset_if_empty)] = None
    events: list[NotifyEvent] = Field(default_factory=lambda: list(NOTIFY_EVENTS))
    timeout_s: Annotated[Number, Field(gt=0, le=60)] = 3.0
    retries: Annotated[Whole, Field(ge=0, le=5)] = 2
    deadline_s: Annotated[Number, Field(gt=0, le=120)] = 10.0

    @model_validator(mode="after")
    def _signed(self):
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("webhook_url needs webhook_secret to sign its messages (got none)")
        return self


class TargetSettings(BaseModel):
    """One block under ``targets:``, merged over the defaults."""

    model_config = Strict
    destination: Destination
    state: Text
    guard: GuardSettings
    files: FilesSettings
    memory_limit: Annotated[StrictStr, AfterValidator(_memory_limit)]
    work_dir: Text
    state_kms_key_id: Text | None = None
    digest_key: Text
    owner: OwnerSettings | None = None
    notify: NotifySettings | None = None


class SettingsFile(BaseModel):
    model_config = Strict
    targets: dict[StrictStr, dict | None] | None = None


# Valid keys at each level, for "did you mean" (the destination level per type).
_KNOWN: dict[tuple, list[str]] = {
    (): list(TargetSettings.model_fields),
    ("guard",): list(GuardSettings.model_fields),
    ("files",): list(FilesSettings.model_fields),
    ("owner",): list(OwnerSettings.model_fields),
    ("notify",): list(NotifySettings.model_fields),
    ("destination", "files"): list(FilesDestinationSettings.model_fields),
    ("destination", "pinpoint"): list(PinpointDestinationSettings.model_fields),
    ("destination", "customer_profiles"): list(CustomerProfilesDestinationSettings.model_fields),
}
_TAGS = {"files", "pinpoint", "customer_profiles"}

_HINTS = {
    "max_exit_share": "must be above 0 and at most 1 (a share: between 0 and 1)",
    "max_size_change_share": "must be above 0 (a share of the last committed size: 0.5 is 50%)",
    "max_entered_share": "must be above 0 (a share of the last committed size: 0.5 is 50%)",
    "max_file_mb": f"must be between {MIN_FILE_MB} and {MAX_FILE_MB} (MiB; Pinpoint takes 1 GB per import job)",
    "max_concurrent_jobs": "must be a whole number between 1 and 10 (Pinpoint runs at most 10 import jobs)",
    "max_job_mb": "must be above 0 and at most 1024 for pinpoint (1 GB per import job) or 1000 for "
                  "customer_profiles (an upload stays under 1 GB)",
}


def _nearest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    return "valid keys: " + ", ".join(choices)


def _describe(err: Any, known: dict[tuple, list[str]]) -> tuple[str, str]:
    """(dotted key, message) for one pydantic error, in a user's words."""
    loc = tuple(err["loc"])
    shown = tuple(str(p) for p in loc if not (len(loc) > 1 and loc[0] == "destination" and p in _TAGS
                                              and p == loc[1]))
    key = ".".join(shown) or "(top level)"
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        parent = tuple(str(p) for p in loc[:-1])
        return key, f"unknown key; {_nearest(loc[-1], known.get(parent, []))}"
    if kind == "missing":
        return key, "is required"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        got = f", got {value.get('type')!r}" if isinstance(value, dict) and "type" in value else ""
        return f"{key}.type", f"must be one of: {', '.join(sorted(_TAGS))}{got}"
    if value is None:
        return key, "is empty (null); give a value, or remove the key to use the default"
    message = err["msg"].removeprefix("Value error, ")
    if shown and shown[-1] in _HINTS and kind.startswith(("greater_than", "less_than")):
        message = _HINTS[shown[-1]]
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        message = "must be a mapping (key: value lines)"
    return key, f"{message}, got {value!r}" if "got" not in message else message


def _raise(where: str, exc: ValidationError, known: dict[tuple, list[str]] = _KNOWN) -> None:
    lines = [f"{key}: {msg}" for key, msg in (_describe(e, known) for e in exc.errors())]
    if len(lines) == 1:
        raise ConfigError(f"{where}: {lines[0]}") from None
    raise ConfigError(f"{where}: {len(lines)} problems:\n  " + "\n  ".join(lines)) from None


# --------------------------------------------------------------------------- loading

def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Settings:
    target: str
    destination: dict
    state: str
    max_exit_share: float
    max_file_bytes: int
    memory_limit: str
    work_dir: Path
    digest_key: str = field(default="", repr=False)  # where the digest's secret comes from, or the secret itself
    max_size_change_share: float = DEFAULTS["guard"]["max_size_change_share"]
    max_entered_share: float = DEFAULTS["guard"]["max_entered_share"]
    source: str = "defaults"
    raw: dict = field(default_factory=dict, repr=False)


def _read(file: Path) -> dict:
    try:
        doc = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"settings file {file} cannot be read: {exc}") from exc
    if doc is None:
        return {"targets": {}}
    if not isinstance(doc, dict):
        raise ConfigError(f"{file} must be a mapping with a 'targets:' key, got a YAML {type(doc).__name__}")
    try:
        return {"targets": SettingsFile.model_validate(doc).targets or {}}
    except ValidationError as exc:
        _raise(str(file), exc, {(): list(SettingsFile.model_fields)})
    raise AssertionError  # unreachable


def _check_blocks(file: Path, blocks: dict, target: str, defined: Collection[str] | None, explicit: bool) -> None:
    """Every block names a target the dbt profile defines, and the selected target has a block.

    A misspelt block (``locl:``) would otherwise be ignored and the run go ahead on the built-in
    defaults, sending nothing where the block meant it to go.
    """
    if defined is not None:
        for name in blocks:
            if name not in defined:
                close = difflib.get_close_matches(str(name), list(defined), n=1, cutoff=0.5)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ConfigError(f"{file} has settings for target '{name}', which the dbt profile does not define; "
                                  f"{hint}(the profile's targets: {', '.join(defined) or 'none'})")
    if (blocks or explicit) and target not in blocks:
        close = difflib.get_close_matches(target, list(blocks), n=1, cutoff=0.5)
        hint = f"; is '{close[0]}' meant to be '{target}'?" if close else ""
        raise ConfigError(f"{file} has no settings for dbt target '{target}' (has: {', '.join(blocks) or 'none'}){hint}: "
                          f"add a '{target}:' block under targets:")


def load_settings(project_dir: Path, target: str, *, path: Path | None = None,
                  overrides: dict | None = None, defined_targets: Collection[str] | None = None) -> Settings:
    """Settings for one dbt target: defaults < lakeseg.yml < overrides (flags).

    ``defined_targets`` are the outputs of the dbt profile: a block for any other target is refused.
    """
    file = Path(path) if path else Path(project_dir) / SETTINGS_FILE
    merged = dict(DEFAULTS)
    source, where = "defaults", f"settings (target {target})"
    if file.is_dir():
        raise ConfigError(f"settings file {file} is a directory")
    if file.exists():
        targets = _read(file)["targets"]
        where = f"{file} (target {target})"
        _check_blocks(file, targets, target, defined_targets, explicit=path is not None)
        if target in targets:
            block = targets[target] or {}
            block = interpolate(block, where=where)
            # A destination block replaces the default one whole: another
            # destination type shares none of the files destination's keys.
            if isinstance(block.get("destination"), dict) and block["destination"].get("type"):
                merged["destination"] = {}
            merged = _merge(merged, block)
            source = str(file)
    elif path:
        raise ConfigError(f"settings file {file} does not exist")
    for key, value in (overrides or {}).items():
        if value is not None:
            merged = _merge(merged, {key: value}) if isinstance(value, dict) else {**merged, key: value}
    try:
        valid = TargetSettings.model_validate(merged)
    except ValidationError as exc:
        _raise(where, exc)
    return Settings(
        target=target,
        destination=valid.destination.model_dump(exclude_unset=True),
        state=valid.state,
        max_exit_share=valid.guard.max_exit_share,
        max_file_bytes=int(valid.files.max_file_mb * 1024 * 1024),
        memory_limit=valid.memory_limit,
        work_dir=Path(valid.work_dir),
        digest_key=valid.digest_key,
        max_size_change_share=valid.guard.max_size_change_share,
        max_entered_share=valid.guard.max_entered_share,
        source=source,
        raw=valid.model_dump(),
    )
