"""The mass-exit guard.

A run that would exit more than a set share of a segment's previous members,
or empty it, is usually a broken upstream (an empty source, a bad join), not a
change of audience. Such a segment is refused unless explicitly allowed.
"""

from __future__ import annotations

from sync.run.diff import Plan


def mass_exit_refusal(plan: Plan, max_exit_share: float, allow: bool = False) -> str | None:
    """A refusal message, or None when the plan may proceed."""
    if allow or plan.previous_rows == 0:
        return None
    if plan.rows == 0:
        return (f"would empty the segment: all {plan.previous_rows:,} previous members would exit "
                f"(rerun with --allow-mass-exit if that is intended)")
    share = plan.exited / plan.previous_rows
    if share > max_exit_share:
        return (f"{plan.exited:,} of {plan.previous_rows:,} previous members ({share:.1%}) would exit, "
                f"above the {max_exit_share:.0%} limit (guard.max_exit_share); "
                f"rerun with --allow-mass-exit if that is intended")
    return None
