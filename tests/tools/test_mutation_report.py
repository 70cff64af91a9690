"""tools/mutation_report.py: how survivors, equivalents and kill rates are counted."""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from pathlib import Path

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
    statuses = {
        "m.k": "killed",
        "m.t": "timeout",
        "m.y": "caught by type check",
        "m.n": "not checked",
        "m.s": "survived",
        "m.o": "no tests",
        "m.e": "survived",
        "m.moved": "survived",
    }
    lines = {"m.s": "a = 1", "m.o": "b = 2", "m.e": "c = 3", "m.moved": "d = 5"}
    equivalents = {"m.e": ("c = 3", "harmless"), "m.moved": ("d = 4", "was harmless")}
    read = []

    def diff_of(name):
        read.append(name)
        return diff(lines[name])

    # When tallied
    counts, survivors, matched = mr.tally(statuses, equivalents, diff_of)
    # Then killed, timed-out and type-checked mutants are kills (those mypy refused also counted apart),
    # unchecked ones are set apart, and no diff of theirs is read
    assert counts == Counter(
        {"killed": 3, "by mypy": 1, "not checked": 1, "survived": 2, "no tests": 1, "equivalent": 1}
    )
    assert sorted(read) == ["m.e", "m.moved", "m.o", "m.s"]
    # And only the equivalent whose line still matches counts as one; the moved one is a survivor again
    assert matched == {"m.e"}
    assert [(n, s) for n, s, _ in survivors] == [("m.moved", "survived"), ("m.o", "no tests"), ("m.s", "survived")]
    # And the rate leaves out equivalents and unchecked mutants: 3 / (8 - 1 - 1)
    assert mr.kill_rate(counts, len(statuses)) == pytest.approx(50.0)
    assert mr.kill_rate(Counter({"not checked": 3}), 3) == 100.0


def test_a_listed_equivalent_left_out_of_the_run_counts_as_one_only_while_its_line_matches():
    # Given two listed equivalents not run (one whose line moved) and an unlisted mutant not run
    statuses = {"m.e": "not checked", "m.moved": "not checked", "m.n": "not checked", "m.k": "killed"}
    lines = {"m.e": "c = 3", "m.moved": "d = 5"}
    equivalents = {"m.e": ("c = 3", "harmless"), "m.moved": ("d = 4", "was harmless")}
    # When tallied
    counts, survivors, matched = mr.tally(statuses, equivalents, lambda name: diff(lines[name]))
    # Then the matching one is an equivalent, the moved one and the unlisted one are unchecked
    assert counts == Counter({"killed": 1, "equivalent": 1, "not checked": 2})
    assert matched == {"m.e"} and survivors == []


def test_the_mutants_to_run_leave_out_those_run_and_the_listed_equivalents_whose_line_matches():
    # Given a module with a run mutant, a matching and a moved listed equivalent, and two unrun mutants
    by_module = {
        "sync/b.py": {"b.x": "not checked"},
        "sync/a.py": {"a.k": "killed", "a.e": "not checked", "a.moved": "not checked", "a.n": "not checked"},
    }
    lines = {"a.e": "c = 3", "a.moved": "d = 5"}
    equivalents = {"a.e": ("c = 3", "harmless"), "a.moved": ("d = 4", "was harmless")}
    read = []

    def diff_of(name, module):
        read.append((name, module))
        return diff(lines[name])

    # When the mutants still to run are listed
    names = mr.to_run(by_module, equivalents, diff_of)
    # Then they are the unrun ones, the moved equivalent among them, module by module; only listed diffs are read
    assert names == ["a.moved", "a.n", "b.x"]
    assert sorted(read) == [("a.e", "sync/a.py"), ("a.moved", "sync/a.py")]


def test_an_equivalent_follows_its_mutant_when_an_edit_renumbers_its_function():
    # Given listed equivalents, and the mutants of their functions after an edit shifted the numbers
    text = (
        "# header\n"
        "m.x_f__mutmut_3 | a = 2 | kept: its own mutant still changes its line\n"
        "m.x_f__mutmut_4 | b = None | moved to 6\n"
        "m.x_g__mutmut_1 | c = 'X' | two mutants now change it: left alone\n"
        "m.x_h__mutmut_1 | d = 0 | no mutant changes it any more: left alone\n"
    )
    functions = {
        "m.x_f": {"m.x_f__mutmut_3": "a = 2", "m.x_f__mutmut_4": "other", "m.x_f__mutmut_6": "b = None"},
        "m.x_g": {"m.x_g__mutmut_1": "x", "m.x_g__mutmut_2": "c = 'X'", "m.x_g__mutmut_5": "c = 'X'"},
        "m.x_h": {"m.x_h__mutmut_1": "e"},
    }
    equivalents = {line.split(" | ")[0]: (line.split(" | ")[1], line.split(" | ")[2]) for line in text.splitlines()[1:]}
    # When renumbered
    new, renamed = mr.renumber(text, equivalents, functions.__getitem__)
    # Then only the entry with exactly one new match is renamed, its line and reason kept
    assert renamed == [("m.x_f__mutmut_4", "m.x_f__mutmut_6")]
    assert new == text.replace("m.x_f__mutmut_4 |", "m.x_f__mutmut_6 |")


def test_a_module_whose_result_file_a_kill_emptied_is_found_and_forgotten_so_all_its_mutants_run_again(tmp_path):
    # Given mutated modules whose result files are intact, emptied mid-write, damaged or gone, and an unmutated one
    mutants = tmp_path / "mutants"
    intact, emptied, damaged, gone, unmutated = (
        Path(f"sync/{name}.py") for name in ("intact", "emptied", "damaged", "gone", "unmutated")
    )
    for path in (intact, emptied, damaged, gone):
        (mutants / path).parent.mkdir(parents=True, exist_ok=True)
        (mutants / path).write_text("# mutated\n")
    (mutants / f"{intact}.meta").write_text(json.dumps({"exit_code_by_key": {"sync.intact.x_f__mutmut_1": 1}}))
    (mutants / f"{emptied}.meta").write_text("")
    (mutants / f"{damaged}.meta").write_text(json.dumps({"exit_code_by_key": None}))
    # When the lost results are looked for
    lost = mr.lost_results([intact, emptied, damaged, gone, unmutated], mutants)
    # Then every mutated module without readable results is lost, and only those
    assert lost == [emptied, damaged, gone]
    # And forgetting one removes its mutated copy and result file, so that mutmut makes both afresh, and the
    # record of which tests reach which function (a run without the module's results dropped its functions)
    (mutants / "mutmut-stats.json").write_text("{}")
    assert mr.forget(emptied, mutants) == "sync.emptied.x[_ǁ]*"
    assert not (mutants / emptied).exists() and not (mutants / f"{emptied}.meta").exists()
    assert not (mutants / "mutmut-stats.json").exists()
    assert (mutants / intact).exists() and (mutants / f"{intact}.meta").exists()


@pytest.mark.parametrize(
    ("module", "name", "matches"),
    [
        pytest.param("sync/state/base.py", "sync.state.base.x_load__mutmut_3", True, id="function"),
        pytest.param("sync/state/base.py", "sync.state.base.xǁStoreǁsave__mutmut_1", True, id="method"),
        pytest.param("sync/state/base.py", "sync.state.based.x_load__mutmut_3", False, id="longer-module-name"),
        pytest.param("sync/state/base.py", "sync.state.base.inner.x_f__mutmut_1", False, id="submodule"),
        pytest.param("sync/state/__init__.py", "sync.state.x_open__mutmut_2", True, id="package-function"),
        pytest.param("sync/state/__init__.py", "sync.state.base.x_load__mutmut_3", False, id="package-not-its-modules"),
    ],
)
def test_the_pattern_of_a_forgotten_module_names_its_mutants_and_no_other(module, name, matches):
    assert fnmatch.fnmatchcase(name, mr.mutants_of(Path(module))) is matches
