"""The run's guards against a broken upstream.

A run that would exit more than a set share of a segment's previous members,
or empty it, is usually a broken upstream (an empty source, a bad join), not a
change of audience. So is a segment whose size jumps either way, or into which
a large share of its previous size enters at once (a fan-out join, a key that
changed, a generator that put every event on one endpoint). Such a segment is
refused unless explicitly allowed.
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
        return (
            f"would empty the segment: all {plan.previous_rows:,} previous members would exit "
            f"(if that is intended, send it with {allow_it})"
        )
    share = plan.exited / plan.previous_rows
    if share > max_exit_share:
        return (
            f"{plan.exited:,} of {plan.previous_rows:,} previous members ({share:.1%}) would exit, "
            f"above the {max_exit_share:.0%} limit (guard.max_exit_share); "
            f"if that is intended, send it with {allow_it}"
        )
    return None


def size_change_refusal(
    plan: Plan, max_size_change_share: float, max_entered_share: float, allow: bool = False
) -> str | None:
    """A refusal message when the segment's size moves, either way, by more than
    ``max_size_change_share`` of its last committed size, or more than
    ``max_entered_share`` of that size enters; None when the plan may proceed.

    A first sync, or a segment whose committed snapshot is empty, has no size to
    compare with and always proceeds. A change of exactly the share proceeds.
    """
    previous = plan.previous_rows
    if allow or previous == 0:  # a first sync has no previous rows either
        return None
    allow_it = f"if that is intended, send it with `lakeseg sync --select {plan.segment} --allow-size-change`"
    change = (plan.rows - previous) / previous
    if abs(change) > max_size_change_share:
        verb = "grow" if change > 0 else "shrink"
        return (
            f"{plan.segment} would {verb} from {previous:,} to {plan.rows:,} members ({change:+.1%}), "
            f"beyond the {max_size_change_share:.0%} limit (guard.max_size_change_share); {allow_it}"
        )
    entered = plan.entered / previous
    if entered > max_entered_share:
        return (
            f"{plan.segment}: {plan.entered:,} members would enter, {entered:.1%} of its previous "
            f"{previous:,} (size {previous:,} -> {plan.rows:,}), beyond the {max_entered_share:.0%} limit "
            f"(guard.max_entered_share); {allow_it}"
        )
    return None
