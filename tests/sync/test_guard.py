"""The mass-exit guard."""

import pytest

from sync.run.diff import Plan
from sync.run.guard import mass_exit_refusal


@pytest.mark.parametrize("previous,rows,exited,refused", [
    pytest.param(1000, 700, 300, False, id="exactly-30pct-allowed"),
    pytest.param(1000, 699, 301, True, id="just-over-30pct-refused"),
    pytest.param(1000, 0, 1000, True, id="emptied-refused"),
    pytest.param(0, 0, 0, False, id="new-empty-segment-allowed"),
    pytest.param(0, 50, 0, False, id="first-sync-allowed"),
])
def test_guard_threshold(previous, rows, exited, refused):
    plan = Plan("seg_x", rows=rows, previous_rows=previous, exited=exited)
    message = mass_exit_refusal(plan, 0.30)
    assert (message is not None) == refused
    if refused:
        assert "--allow-mass-exit" in message and f"{previous:,}" in message
        # And the command it suggests is the narrow one that works (plan takes no --allow-mass-exit)
        assert message.endswith("send it with `lakeseg sync --select seg_x --allow-mass-exit`") or \
            message.endswith("send it with `lakeseg sync --select seg_x --allow-mass-exit`)")


def test_one_member_left_is_a_share_not_an_emptied_segment():
    # Given a segment of 3 shrinking to 1 member, under a 70% limit
    plan = Plan("seg_x", rows=1, previous_rows=3, exited=2)
    # Then it passes: only an empty segment is refused outright
    assert mass_exit_refusal(plan, 0.70) is None
    assert "would empty" in mass_exit_refusal(Plan("seg_x", rows=0, previous_rows=3, exited=3), 1.0)


def test_guard_can_be_overridden():
    plan = Plan("seg_x", rows=0, previous_rows=10, exited=10)
    assert mass_exit_refusal(plan, 0.3, allow=True) is None


def test_refusal_says_how_many_would_exit():
    plan = Plan("seg_x", rows=500, previous_rows=1000, exited=500)
    assert "500 of 1,000" in mass_exit_refusal(plan, 0.3)
