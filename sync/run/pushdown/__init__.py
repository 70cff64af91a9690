"""The diff where the data lives: on an Athena target, big segments are classified in the lake.

``choose_engine`` decides per segment, from the settings and the committed
pointer alone (no extra query): ``duckdb`` -- the runner downloads the segment
and diffs it (``sync.run.diff``), the embedded default -- or ``athena`` --
one Athena statement classifies every member against the previous snapshot in
the lake and UNLOADs only the rows to send (``sync.run.pushdown.lake``).

The diff in Athena needs three things of the deployment, checked where the
settings are: a target that builds on Athena, the state store on S3 (Athena
reads the snapshot where the store keeps it), and a destination whose data
does not expire (``refresh_after``: Customer Profiles' members due for a
refresh are chosen by their confirmation times, which only the runner's
snapshot keeps). ``athena`` without them is a configuration error; ``auto``
diffs on the runner.
"""

from __future__ import annotations

from sync.core.errors import ConfigError

ENGINES = ("auto", "duckdb", "athena")
DEFAULT_MIN_ROWS = 5_000_000


def pushdown_problem(*, athena_target: bool, state_on_s3: bool, expires: bool) -> str | None:
    """Why this deployment cannot diff in Athena, or None when it can."""
    if not athena_target:
        return "the target does not build on Athena"
    if not state_on_s3:
        return "the state store is not on S3 (Athena reads the committed snapshot where the store keeps it)"
    if expires:
        return "the destination's data expires (refresh_after): its refreshes need the runner's snapshot"
    return None


def check_engine(setting: str, problem: str | None) -> None:
    """A configuration error for ``diff.engine`` athena where the deployment cannot push down."""
    if setting not in ENGINES:
        raise ConfigError(f"diff.engine {setting!r}: choose one of {', '.join(ENGINES)}")
    if setting == "athena" and problem:
        raise ConfigError(f"diff.engine is athena, but {problem}: use auto or duckdb")


def choose_engine(
    setting: str, min_rows: int, *, problem: str | None, previous_rows: int | None, in_lake: bool = False
) -> str:
    """``duckdb`` or ``athena`` for one segment.

    ``setting`` is ``diff.engine``: ``duckdb`` always diffs on the runner;
    ``athena`` pushes down (and is refused where the deployment cannot:
    ``problem``, from ``pushdown_problem``); ``auto`` pushes down where the
    deployment can, once the committed snapshot holds at least ``min_rows``
    members (``previous_rows``, from its pointer; None when there is none, so a
    first sync runs on the runner). A segment already diffed in the lake
    (``in_lake``: its snapshot was written there) stays there until it falls
    below half of ``min_rows``: each move between the engines sends the segment
    whole once, so a segment near the threshold must not move back and forth.
    """
    check_engine(setting, problem)
    if setting == "duckdb":
        return "duckdb"
    if setting == "athena":
        return "athena"
    if problem is not None or previous_rows is None:
        return "duckdb"
    if previous_rows >= min_rows or (in_lake and 2 * previous_rows >= min_rows):
        return "athena"
    return "duckdb"
