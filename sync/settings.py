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
    Field,
    StrictStr,
    ValidationError,
    model_validator,
)

from sync.core.errors import ConfigError
from sync.core.settings_types import Number, Strict, Text, Whole, config_error
from sync.core.sizes import memory_limit_bytes
from sync.destinations.customer_profiles import CustomerProfilesDestinationSettings
from sync.destinations.files import FilesDestinationSettings
from sync.destinations.pinpoint import PinpointDestinationSettings

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
    # A commit stores a delta beside the base until the deltas reach compact_share of the base's rows or
    # there would be more than max_deltas of them; then it writes a new base (sync/state/deltas.py).
    "snapshots": {"compact_share": 0.20, "max_deltas": 8},
    # Where the diff runs (sync/run/pushdown): duckdb (on the runner), athena (in the lake: an athena target,
    # the state on S3, a destination whose data does not expire) or auto (athena where it can run, once the
    # committed snapshot has pushdown_min_rows members; else on the runner).
    "diff": {"engine": "auto", "pushdown_min_rows": 5_000_000},
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
            raise ConfigError(
                f"{where}{at} uses ${{{name}}}, which is not set (export it or write ${{{name}:-default}})"
            )

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, where=where, key=f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, where=where, key=f"{key}[{i}]") for i, v in enumerate(value)]
    return value


# --------------------------------------------------------------------------- the schema


def _memory_limit(value: str) -> str:
    memory_limit_bytes(value)
    return value


class GuardSettings(BaseModel):
    model_config = Strict
    max_exit_share: Annotated[Number, Field(gt=0, le=1)]
    # Shares of the last committed size; growth can exceed 1 (3.0: up to four times the size).
    max_size_change_share: Annotated[Number, Field(gt=0)]
    max_entered_share: Annotated[Number, Field(gt=0)]


class SnapshotSettings(BaseModel):
    model_config = Strict
    compact_share: Annotated[Number, Field(gt=0)]
    max_deltas: Annotated[Whole, Field(ge=0, le=1000)]


class DiffSettings(BaseModel):
    model_config = Strict
    engine: Literal["auto", "duckdb", "athena"]
    pushdown_min_rows: Annotated[Whole, Field(ge=0)]


class FilesSettings(BaseModel):
    model_config = Strict
    max_file_mb: Annotated[Number, Field(ge=MIN_FILE_MB, le=MAX_FILE_MB)]


Destination = Annotated[
    FilesDestinationSettings | PinpointDestinationSettings | CustomerProfilesDestinationSettings,
    Field(discriminator="type"),
]


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
    snapshots: SnapshotSettings
    diff: DiffSettings
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
    ("snapshots",): list(SnapshotSettings.model_fields),
    ("diff",): list(DiffSettings.model_fields),
    ("owner",): list(OwnerSettings.model_fields),
    ("notify",): list(NotifySettings.model_fields),
    ("destination", "files"): list(FilesDestinationSettings.model_fields),
    ("destination", "pinpoint"): list(PinpointDestinationSettings.model_fields),
    ("destination", "customer_profiles"): list(CustomerProfilesDestinationSettings.model_fields),
}


def _raise(where: str, exc: ValidationError, known: dict[tuple, list[str]] = _KNOWN) -> None:
    raise config_error(where, exc.errors(), known) from None


# --------------------------------------------------------------------------- loading


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


DestinationSettings = FilesDestinationSettings | PinpointDestinationSettings | CustomerProfilesDestinationSettings


@dataclass
class Settings:
    """One target's settings, typed: what the run, preflight and the destination receive as they are."""

    target: str
    destination: DestinationSettings
    state: str
    max_exit_share: float
    max_file_bytes: int
    memory_limit: str
    work_dir: Path
    digest_key: str = field(default="", repr=False)  # where the digest's secret comes from, or the secret itself
    max_size_change_share: float = DEFAULTS["guard"]["max_size_change_share"]
    max_entered_share: float = DEFAULTS["guard"]["max_entered_share"]
    source: str = "defaults"
    state_kms_key_id: str | None = None
    owner: OwnerSettings | None = None
    notify: NotifySettings | None = None
    compact_share: float = DEFAULTS["snapshots"]["compact_share"]
    max_deltas: int = DEFAULTS["snapshots"]["max_deltas"]
    diff_engine: str = DEFAULTS["diff"]["engine"]
    pushdown_min_rows: int = DEFAULTS["diff"]["pushdown_min_rows"]


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
                raise ConfigError(
                    f"{file} has settings for target '{name}', which the dbt profile does not define; "
                    f"{hint}(the profile's targets: {', '.join(defined) or 'none'})"
                )
    if (blocks or explicit) and target not in blocks:
        close = difflib.get_close_matches(target, list(blocks), n=1, cutoff=0.5)
        hint = f"; is '{close[0]}' meant to be '{target}'?" if close else ""
        raise ConfigError(
            f"{file} has no settings for dbt target '{target}' (has: {', '.join(blocks) or 'none'}){hint}: "
            f"add a '{target}:' block under targets:"
        )


def load_settings(
    project_dir: Path,
    target: str,
    *,
    path: Path | None = None,
    overrides: dict | None = None,
    defined_targets: Collection[str] | None = None,
) -> Settings:
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
        destination=valid.destination,
        state=valid.state,
        max_exit_share=valid.guard.max_exit_share,
        max_file_bytes=int(valid.files.max_file_mb * 1024 * 1024),
        memory_limit=valid.memory_limit,
        work_dir=Path(valid.work_dir),
        digest_key=valid.digest_key,
        max_size_change_share=valid.guard.max_size_change_share,
        max_entered_share=valid.guard.max_entered_share,
        source=source,
        state_kms_key_id=valid.state_kms_key_id,
        owner=valid.owner,
        notify=valid.notify,
        compact_share=valid.snapshots.compact_share,
        max_deltas=valid.snapshots.max_deltas,
        diff_engine=valid.diff.engine,
        pushdown_min_rows=valid.diff.pushdown_min_rows,
    )
