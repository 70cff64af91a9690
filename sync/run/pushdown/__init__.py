"""The diff where the data lives: on an Athena target, big segments are classified in the lake.

``choose_engine`` decides per segment, from the settings and the committed
pointer alone (no extra query): ``duckdb`` -- the runner downloads the segment
and diffs it (``sync.run.diff``), the embedded default -- or ``athena`` --
one Athena statement classifies every member against the previous snapshot in
the lake and UNLOADs only the rows to send (``sync.run.pushdown.sql``).

Not yet wired into the runner (issue #26): until it is (``PUSHDOWN_AVAILABLE``),
``diff.engine: athena`` is refused as a configuration error and ``auto`` stays
on DuckDB, so no setting is accepted and silently ignored.
"""

from __future__ import annotations

from sync.core.errors import ConfigError

# Not yet: the runner has no call site for the pushdown (issue #26), so ``athena`` is refused (here and when
# the settings load) and ``auto`` stays on DuckDB. Set True in the commit that wires it into sync.run.engine.
PUSHDOWN_AVAILABLE = False
UNAVAILABLE = (
    "diff.engine is athena, but the diff in Athena (pushdown) is not available yet in this version: "
    "use auto or duckdb (both diff on the runner until it is)"
)
ENGINES = ("auto", "duckdb", "athena")
DEFAULT_MIN_ROWS = 5_000_000


def choose_engine(
    setting: str,
    min_rows: int,
    *,
    athena_target: bool,
    previous_rows: int | None,
    available: bool = PUSHDOWN_AVAILABLE,
) -> str:
    """``duckdb`` or ``athena`` for one segment.

    ``setting`` is ``diff.engine``: ``duckdb`` always diffs on the runner;
    ``athena`` pushes down on an Athena target (and is refused elsewhere);
    ``auto`` pushes down on an Athena target once the committed snapshot holds
    at least ``min_rows`` members (``previous_rows``, from its pointer; None
    when there is none, so a first sync runs on the runner).
    ``available``: whether the runner can push down at all (``PUSHDOWN_AVAILABLE``); while it cannot,
    ``athena`` is a configuration error and ``auto`` is ``duckdb``.
    """
    if setting not in ENGINES:
        raise ConfigError(f"diff.engine {setting!r}: choose one of {', '.join(ENGINES)}")
    if setting == "duckdb":
        return "duckdb"
    if setting == "athena":
        if not available:
            raise ConfigError(UNAVAILABLE)
        if not athena_target:
            raise ConfigError("diff.engine is athena, but the target does not build on Athena: use auto or duckdb")
        return "athena"
    if available and athena_target and previous_rows is not None and previous_rows >= min_rows:
        return "athena"
    return "duckdb"
