"""Reading the dbt profile the segments were built with.

The sync needs the target's adapter settings (the DuckDB file, or Athena's
work group and result location) to read built segments. profiles.yml is
rendered the way dbt renders it for these keys: ``env_var()`` is available;
project vars are not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from sync.core.errors import ConfigError


@dataclass(frozen=True)
class Target:
    profile: str
    name: str
    config: dict  # the rendered output block: type, path / work_group, ...
    targets: tuple[str, ...] = ()  # every output the profile defines (lakeseg.yml may hold a block for each)

    @property
    def type(self) -> str:
        return str(self.config.get("type", ""))


_MISSING = object()


def _env_var(name: str, default=_MISSING):
    if name in os.environ:
        return os.environ[name]
    if default is _MISSING:
        raise ConfigError(f"profiles.yml uses env_var('{name}'), which is not set and has no default")
    return default


def _render(value):
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        env = jinja2.Environment(undefined=jinja2.StrictUndefined)
        rendered = env.from_string(value).render(env_var=_env_var)
        try:
            return yaml.safe_load(rendered) if rendered.strip() else rendered
        except yaml.YAMLError:
            return rendered
    if isinstance(value, dict):
        return {k: _render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v) for v in value]
    return value


def find_profiles_file(project_dir: Path, profiles_dir: Path | None = None) -> Path:
    candidates = []
    if profiles_dir:
        candidates.append(Path(profiles_dir))
    if os.environ.get("DBT_PROFILES_DIR"):
        candidates.append(Path(os.environ["DBT_PROFILES_DIR"]))
    candidates += [Path(project_dir), Path.cwd(), Path.home() / ".dbt"]
    for d in candidates:
        if (d / "profiles.yml").exists():
            return d / "profiles.yml"
    raise ConfigError(
        "no profiles.yml found (looked in --profiles-dir, $DBT_PROFILES_DIR, the project, the current "
        "directory and ~/.dbt): copy profiles.yml.example to profiles.yml"
    )


def load_target(project_dir: Path, profiles_dir: Path | None = None, target: str | None = None) -> Target:
    project_file = Path(project_dir) / "dbt_project.yml"
    if not project_file.exists():
        raise ConfigError(f"no dbt_project.yml in {project_dir}: pass --project-dir")
    profile_name = (yaml.safe_load(project_file.read_text()) or {}).get("profile")
    if not profile_name:
        raise ConfigError(f"{project_file} names no profile")
    path = find_profiles_file(Path(project_dir), profiles_dir)
    raw = yaml.safe_load(path.read_text()) or {}
    if profile_name not in raw:
        raise ConfigError(f"{path} has no profile '{profile_name}'")
    profile = raw[profile_name] or {}
    name = target or _render(profile.get("target")) or "default"
    outputs = profile.get("outputs") or {}
    if name not in outputs:
        raise ConfigError(f"profile '{profile_name}' in {path} has no target '{name}' (has: {', '.join(outputs)})")
    return Target(profile_name, str(name), _render(outputs[name]), tuple(str(t) for t in outputs))
