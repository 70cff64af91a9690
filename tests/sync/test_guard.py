"""The run's guards: the mass-exit guard and the size-change guard."""

import pytest

from sync.run.diff import Plan
from sync.run.guard import mass_exit_refusal, size_change_refusal


@pytest.mark.parametrize(
    "previous,rows,exited,refused",
    [
        pytest.param(1000, 700, 300, False, id="exactly-30pct-allowed"),
        pytest.param(1000, 699, 301, True, id="just-over-30pct-refused"),
        pytest.param(1000, 0, 1000, True, id="emptied-refused"),
        pytest.param(0, 0, 0, False, id="new-empty-segment-allowed"),
        pytest.param(0, 50, 0, False, id="first-sync-allowed"),
    ],
)
def test_guard_threshold(previous, rows, exited, refused):
    plan = Plan("seg_x", rows=rows, previous_rows=previous, exited=exited)
    message = mass_exit_refusal(plan, 0.30)
    assert (message is not None) == refused
    if refused:
        assert "--allow-mass-exit" in message and f"{previous:,}" in message
        # And the command it suggests is the narrow one that works (plan takes no --allow-mass-exit)
        assert message.endswith("send it with `lakeseg sync --select seg_x --allow-mass-exit`") or message.endswith(
            "send it with `lakeseg sync --select seg_x --allow-mass-exit`)"
        )


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


# --------------------------------------------------------------------------- the size-change guard


@pytest.mark.parametrize(
    "previous,rows,entered,refused",
    [
        pytest.param(1000, 1500, 500, False, id="growth-of-exactly-50pct-allowed"),
        pytest.param(1000, 1501, 501, True, id="growth-just-over-50pct-refused"),
        pytest.param(1000, 3000, 2000, True, id="growth-to-triple-refused"),
        pytest.param(1000, 500, 0, False, id="shrink-of-exactly-50pct-allowed"),
        pytest.param(1000, 499, 0, True, id="shrink-just-over-50pct-refused"),
        pytest.param(1000, 1, 0, True, id="shrink-to-one-member-refused"),
        pytest.param(1000, 1000, 0, False, id="same-size-allowed"),
    ],
)
def test_size_guard_refuses_a_jump_beyond_the_share_in_either_direction(previous, rows, entered, refused):
    # Given a segment of `previous` members that would have `rows`, under a 50% size limit (entries unlimited)
    plan = Plan("seg_x", rows=rows, previous_rows=previous, entered=entered, exited=previous - rows + entered)
    # When the size guard looks at it
    message = size_change_refusal(plan, max_size_change_share=0.5, max_entered_share=100)
    # Then it refuses only beyond the share
    assert (message is not None) == refused
    if refused:
        # and says which segment, the sizes, the share, the setting and the command that allows it
        verb = "grow" if rows > previous else "shrink"
        assert (
            f"seg_x would {verb} from {previous:,} to {rows:,} members ({(rows - previous) / previous:+.1%})" in message
        )
        assert "guard.max_size_change_share" in message
        assert "lakeseg sync --select seg_x --allow-size-change" in message


@pytest.mark.parametrize(
    "entered,exited,refused",
    [
        pytest.param(500, 500, False, id="half-replaced-at-the-threshold-allowed"),
        pytest.param(501, 501, True, id="just-over-half-replaced-refused"),
        pytest.param(1000, 1000, True, id="every-member-replaced-refused"),
    ],
)
def test_size_guard_refuses_entries_beyond_the_share_even_at_the_same_size(entered, exited, refused):
    # Given a segment of 1,000 members keeping its size while `entered` new members replace `exited`
    plan = Plan("seg_x", rows=1000, previous_rows=1000, entered=entered, exited=exited)
    # When the size guard looks at it with a 50% entries limit
    message = size_change_refusal(plan, max_size_change_share=0.5, max_entered_share=0.5)
    # Then it refuses only beyond the share, naming the setting and the command
    assert (message is not None) == refused
    if refused:
        assert f"seg_x: {entered:,} members would enter, {entered / 1000:.1%} of its previous 1,000" in message
        assert "(size 1,000 -> 1,000)" in message and "guard.max_entered_share" in message
        assert "--allow-size-change" in message


@pytest.mark.parametrize(
    "plan",
    [
        pytest.param(Plan("seg_x", rows=5000, previous_rows=0, entered=5000, first_sync=True), id="first-sync"),
        pytest.param(Plan("seg_x", rows=5000, previous_rows=0, entered=5000), id="empty-previous-snapshot"),
        pytest.param(Plan("seg_x", rows=0, previous_rows=0), id="empty-stays-empty"),
    ],
)
def test_size_guard_lets_a_segment_without_a_previous_size_through(plan):
    # Given a segment with nothing committed to compare with
    # Then any size passes: there is no share of nothing
    assert size_change_refusal(plan, 0.5, 0.5) is None


def test_size_guard_can_be_overridden():
    # Given a segment tripling in size
    plan = Plan("seg_x", rows=3000, previous_rows=1000, entered=2000)
    # When the run allows size changes, then it passes
    assert size_change_refusal(plan, 0.5, 0.5, allow=True) is None
    assert size_change_refusal(plan, 0.5, 0.5) is not None
