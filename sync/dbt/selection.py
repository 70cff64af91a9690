"""``--select`` / ``--exclude``: dbt's own node selection, limited to segment models.

The selectors are handed to ``dbt ls`` (in-process, through dbt's Python API),
so everything dbt accepts works: names and wildcards, graph operators
(``+seg_x``, ``stg_due__email_click+``), ``tag:``, ``path:``, ``config.``,
``state:modified`` (with ``--dbt-state``), ``@``, unions and intersections.
Whatever dbt selects that is not a segment model (staging views, tests) is
left out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sync.core.errors import ConfigError
from sync.dbt.contract import Segment
from sync.dbt.invoke import DbtProject, run_dbt

log = logging.getLogger(__name__)

# (select, exclude) -> unique ids of the models dbt selects
Resolver = Callable[[Sequence[str], Sequence[str]], set[str]]


@dataclass(frozen=True)
class DbtSelector:
    """Resolves selectors with ``dbt ls --resource-type model``."""

    project: DbtProject
    target_dir: Path  # dbt ls writes its parse artifacts here, never over the build's
    dbt_state: Path | None = None  # artifacts to compare with for state:modified

    def __call__(self, select: Sequence[str], exclude: Sequence[str]) -> set[str]:
        args = [
            "ls",
            *self.project.common_args(),
            "--resource-type",
            "model",
            "--output",
            "json",
            "--output-keys",
            "unique_id",
            "--target-path",
            str(self.target_dir),
        ]
        if select:
            args += ["--select", *select]
        if exclude:
            args += ["--exclude", *exclude]
        if self.dbt_state is not None:
            if not Path(self.dbt_state, "manifest.json").exists():
                raise ConfigError(
                    f"--dbt-state {self.dbt_state} holds no manifest.json: point it at the "
                    "target directory of the dbt run to compare with"
                )
            args += ["--state", str(self.dbt_state)]
        result = run_dbt(args, quiet=True)
        if not result.success:
            raise ConfigError(
                f"dbt could not resolve --select {' '.join(select) or '-'} "
                f"--exclude {' '.join(exclude) or '-'}: {result.exception}"
            )
        ids = set()
        for line in result.result or []:
            try:
                ids.add(json.loads(line)["unique_id"])
            except (ValueError, KeyError, TypeError):
                continue
        return ids


def choose_segments(
    segments: list[Segment], select: Sequence[str] = (), exclude: Sequence[str] = (), resolver: Resolver | None = None
) -> list[Segment]:
    """The segments among what dbt selects; all of them when nothing is selected or excluded."""
    if not select and not exclude:
        return list(segments)
    if resolver is None:
        raise ConfigError("--select/--exclude need the dbt project to resolve them (no selector was configured)")
    chosen_ids = resolver(tuple(select), tuple(exclude))
    chosen = [s for s in segments if s.unique_id in chosen_ids]
    others = len(chosen_ids) - len(chosen)
    if others:
        log.info("selection: %d selected model(s) are not segments and are left out", others)
    if not chosen:  # as `dbt build` does: a warning, nothing to do, and no error
        what = f"{len(chosen_ids)} model(s), none of them a segment" if chosen_ids else "nothing"
        flags = " ".join([*(f"--select {s}" for s in select), *(f"--exclude {e}" for e in exclude)])
        log.warning(
            "Nothing to do: %s matches no segment; dbt selected %s (segments: %s)",
            flags,
            what,
            ", ".join(s.name for s in segments) or "none",
        )
    return chosen
