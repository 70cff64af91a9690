"""The mass-exit guard.

A run that would exit more than a set share of a segment's previous members,
or empty it, is usually a broken upstream (an empty source, a bad join), not a
change of audience. Such a segment is refused unless explicitly allowed.
"""

from __future__ import annotations

from sync.run.diff import Plan


def mass_exit_refusal(plan: Plan, max_exit_share: float, allow: bool = False) -> str | None:
    """A refusal message, or None when the plan may proceed.

    The message ends with the one command that sends this segment anyway (``plan`` takes no
    ``--allow-mass-exit``: it sends nothing).
    """
    if allow or plan.previous_rows == 0:
        return None
    allow_it = f"`lakeseg sync --select {plan.segment} --allow-mass-exit`"
    if plan.rows == 0:
        return (f"would empty the segment: all {plan.previous_rows:,} previous members would exit "
                f"(if that is intended, send it with {allow_it})")
    share = plan.exited / plan.previous_rows
    if share > max_exit_share:
        return (f"{plan.exited:,} of {plan.previous_rows:,} previous members ({share:.1%}) would exit, "
                f"above the {max_exit_share:.0%} limit (guard.max_exit_share); "
                f"if that is intended, send it with {allow_it}")
    return None
