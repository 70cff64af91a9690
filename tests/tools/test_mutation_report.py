"""tools/mutation_report.py: how survivors, equivalents and kill rates are counted."""

from __future__ import annotations

from collections import Counter

import pytest

from tools import mutation_report as mr


def diff(line: str) -> str:
    return f"--- a.py\n+++ a.py\n@@ -1 +1 @@\n-    old()\n+    {line}"


def test_an_equivalents_line_may_hold_a_set_union_in_its_mutated_line(tmp_path):
    f = tmp_path / "eq.txt"
    f.write_text("# comment\n\nm.x_f__mutmut_1 | if code in _EXISTS | _MISSING: | Error is always there\n")
    assert mr.load_equivalents(f) == {"m.x_f__mutmut_1": ("if code in _EXISTS | _MISSING:", "Error is always there")}
    f.write_text("m.x_f__mutmut_1 | no reason\n")
    with pytest.raises(SystemExit, match="expected 'mutant name | mutated line | reason'"):
        mr.load_equivalents(f)


def test_changed_lines_are_the_added_lines_of_the_diff():
    assert mr.changed_lines(diff("new(1)")) == "new(1)"
    assert mr.changed_lines("+++ a.py\n+ a\n- b\n+  c") == "a / c"


def test_a_module_is_tallied_by_status_and_an_equivalent_counts_only_while_its_line_matches():
    # Given one mutant of each status, and two listed equivalents of which one's line has moved
    statuses = {"m.k": "killed", "m.t": "timeout", "m.n": "not checked", "m.s": "survived", "m.o": "no tests",
                "m.e": "survived", "m.moved": "survived"}
    lines = {"m.s": "a = 1", "m.o": "b = 2", "m.e": "c = 3", "m.moved": "d = 5"}
    equivalents = {"m.e": ("c = 3", "harmless"), "m.moved": ("d = 4", "was harmless")}
    read = []

    def diff_of(name):
        read.append(name)
        return diff(lines[name])

    # When tallied
    counts, survivors, matched = mr.tally(statuses, equivalents, diff_of)
    # Then killed and timed-out mutants are kills, unchecked ones are set apart, and no diff of theirs is read
    assert counts == Counter({"killed": 2, "not checked": 1, "survived": 2, "no tests": 1, "equivalent": 1})
    assert sorted(read) == ["m.e", "m.moved", "m.o", "m.s"]
    # And only the equivalent whose line still matches counts as one; the moved one is a survivor again
    assert matched == {"m.e"}
    assert [(n, s) for n, s, _ in survivors] == [("m.moved", "survived"), ("m.o", "no tests"), ("m.s", "survived")]
    # And the rate leaves out equivalents and unchecked mutants: 2 / (7 - 1 - 1)
    assert mr.kill_rate(counts, len(statuses)) == pytest.approx(40.0)
    assert mr.kill_rate(Counter({"not checked": 3}), 3) == 100.0
