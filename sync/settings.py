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
    guard: {max_exit_share: 0.2}
```

``${NAME}`` and ``${NAME:-default}`` are replaced from the environment; a
missing variable without a default is an error naming it. Command-line flags
(and their ``LAKESEG_*`` environment variables) override the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

SETTINGS_FILE = "lakeseg.yml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

DEFAULTS: dict[str, Any] = {
    "destination": {"type": "files", "path": "build/exports"},
    "state": "build/state",
    "guard": {"max_exit_share": 0.30},
    "files": {"max_file_mb": 100},
    "memory_limit": "1GB",
    "work_dir": "build/work",
}


def interpolate(value: Any, *, where: str = SETTINGS_FILE) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where} uses ${{{name}}}, which is not set (export it or write ${{{name}:-default}})")
        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, where=where) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, where=where) for v in value]
    return value


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
    source: str = "defaults"
    raw: dict = field(default_factory=dict, repr=False)


def load_settings(project_dir: Path, target: str, *, path: Path | None = None,
                  overrides: dict | None = None) -> Settings:
    """Settings for one dbt target: defaults < lakeseg.yml < overrides (flags)."""
    file = Path(path) if path else Path(project_dir) / SETTINGS_FILE
    merged = dict(DEFAULTS)
    source = "defaults"
    if file.exists():
        try:
            doc = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file} is not valid YAML: {exc}") from exc
        targets = doc.get("targets") or {}
        if target in targets:
            block = interpolate(targets[target] or {}, where=f"{file} (target {target})")
            # A destination block replaces the default one whole: another
            # destination type shares none of the files destination's keys.
            if isinstance(block.get("destination"), dict) and block["destination"].get("type"):
                merged["destination"] = {}
            merged = _merge(merged, block)
            source = str(file)
        elif path:
            raise ConfigError(f"{file} has no settings for dbt target '{target}' (has: {', '.join(targets) or 'none'})")
    elif path:
        raise ConfigError(f"settings file {file} does not exist")
    for key, value in (overrides or {}).items():
        if value is not None:
            merged = _merge(merged, {key: value}) if isinstance(value, dict) else {**merged, key: value}
    try:
        share = float(merged["guard"]["max_exit_share"])
        max_file = int(float(merged["files"]["max_file_mb"]) * 1024 * 1024)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"invalid guard/files settings in {source}: {exc}") from exc
    if not 0 <= share <= 1:
        raise ConfigError(f"guard.max_exit_share must be between 0 and 1, got {share}")
    if not 0 < max_file <= 1024 ** 3:
        raise ConfigError("files.max_file_mb must be positive and at most 1024 (Pinpoint's 1 GB per import job)")
    dest = merged["destination"]
    if not isinstance(dest, dict) or not dest.get("type"):
        raise ConfigError(f"destination.type is not set for target '{target}' in {source}")
    return Settings(
        target=target,
        destination=dest,
        state=str(merged["state"]),
        max_exit_share=share,
        max_file_bytes=max_file,
        memory_limit=str(merged["memory_limit"]),
        work_dir=Path(str(merged["work_dir"])),
        source=source,
        raw=merged,
    )
