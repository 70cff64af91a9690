"""Per-module kill rate of the last `mutmut run`, with its survivors.

Run from the project root after `mutmut run` (``make mutation`` does both).
Reads mutmut's result files under ``mutants/``; survivors listed in
``tools/mutation-equivalents.txt`` (an equivalent mutant: no test can tell it
from the original) count as such only while their mutated line still matches
what the file recorded. Exits 1 when any module's kill rate is below the
target (``--target``, 90%).

    python tools/mutation_report.py [--target 90] [--show-diffs]
    python tools/mutation_report.py --to-run   # the mutants `make mutation` still runs
    python tools/mutation_report.py --renumber # follow listed equivalents whose mutant was renumbered

A module whose result file is missing, empty or unreadable (a run killed while
mutmut rewrote it) has lost its results: the report names it and exits 1, and
``--to-run`` removes its mutated copy, so that mutmut makes the module's
mutants afresh, and the record of which tests reach which function, so that
mutmut collects it afresh, and prints a pattern that runs all of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files
from mutmut.utils.format_utils import get_mutant_name
from rich.console import Console
from rich.table import Table

EQUIVALENTS = Path(__file__).with_name("mutation-equivalents.txt")
TYPE_CHECKED = "caught by type check"  # type_check_command in [tool.mutmut]: mypy refused the mutant
KILLED = {"killed", "timeout", TYPE_CHECKED, "segfault"}
STATS = "mutmut-stats.json"  # which tests reach which function, as mutmut collected it


def changed_lines(diff: str) -> str:
    """The mutated line(s) of a mutant's diff: its ``+`` lines, stripped."""
    return " / ".join(
        line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    )


def load_equivalents(path: Path = EQUIVALENTS) -> dict[str, tuple[str, str]]:
    """``name -> (mutated line, reason)`` from lines ``name | mutated line | reason``."""
    entries: dict[str, tuple[str, str]] = {}
    if not path.exists():
        return entries
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(" | ")]
        # The mutated line may itself hold " | " (a set union); the name and the reason never do.
        if len(parts) < 3 or not all(parts):
            sys.exit(f"{path}:{n}: expected 'mutant name | mutated line | reason', got {raw!r}")
        entries[parts[0]] = (" | ".join(parts[1:-1]), parts[-1])
    return entries


def lost_results(paths: Sequence[Path], mutants: Path = Path("mutants")) -> list[Path]:
    """The modules of ``paths`` mutated under ``mutants`` whose result file is missing, empty or unreadable."""
    lost = []
    for path in paths:
        if not (mutants / path).exists():
            continue  # not mutated yet: nothing to lose
        try:
            results = json.loads((mutants / f"{path}.meta").read_text())["exit_code_by_key"]
        except (OSError, ValueError, KeyError, TypeError):
            lost.append(path)
            continue
        if not isinstance(results, dict):
            lost.append(path)
    return lost


def forget(path: Path, mutants: Path = Path("mutants")) -> str:
    """Remove ``path``'s mutated copy and result file, so mutmut makes them afresh; the pattern naming its mutants.

    The record of which tests reach which function goes too: a run that found the module's result file gone
    dropped the module's functions from it, and mutmut maps tests only for new tests after that, so without a
    full collection each mutant of the module would run no test, or only the newest ones.
    """
    for leftover in (mutants / path, mutants / f"{path}.meta", mutants / STATS):
        leftover.unlink(missing_ok=True)
    return mutants_of(path)


def mutants_of(path: Path) -> str:
    """The pattern matching every mutant name of module ``path``: mutmut names functions x_name, methods xǁClassǁname."""
    return get_mutant_name(path, "x[_ǁ]*")


def collect(paths: Sequence[Path], lost: Sequence[Path] = ()) -> dict[str, dict[str, str]]:
    """``module path -> {mutant name: status}`` for every mutated module of ``paths`` but those in ``lost``."""
    by_module: dict[str, dict[str, str]] = {}
    for path in paths:
        if path in lost:
            continue
        data = SourceFileMutationData(path=path)
        data.load()
        if data.exit_code_by_key:
            by_module[str(path)] = {k: status_by_exit_code[v] for k, v in data.exit_code_by_key.items()}
    return by_module


def still_equivalent(name: str, equivalents: dict[str, tuple[str, str]], diff: str) -> bool:
    """Whether ``name`` is listed as equivalent and its diff still changes the line the list recorded."""
    return name in equivalents and equivalents[name][0] == changed_lines(diff)


def tally(
    statuses: dict[str, str], equivalents: dict[str, tuple[str, str]], diff_of: Callable[[str], str]
) -> tuple[Counter, list[tuple[str, str, str]], set[str]]:
    """One module's counts, its survivors ``(name, status, diff)`` and the equivalents it matched.

    A listed equivalent counts only while its mutant still changes the line the
    file recorded, whether it survived or was left out of the run; the diff of
    a killed mutant, or of an unchecked one not listed, is never read.
    """
    counts: Counter = Counter()
    survivors, matched = [], set()
    for name, status in sorted(statuses.items()):
        if status in KILLED:
            counts["killed"] += 1
            if status == TYPE_CHECKED:
                counts["by mypy"] += 1  # of the killed: refused by mypy, no test run
            continue
        if status == "not checked" and name not in equivalents:
            counts["not checked"] += 1
            continue
        diff = diff_of(name)
        if still_equivalent(name, equivalents, diff):
            counts["equivalent"] += 1  # survived, or left out of the run as listed (see to_run)
            matched.add(name)
        elif status == "not checked":
            counts["not checked"] += 1
        else:
            counts["no tests" if status == "no tests" else "survived"] += 1
            survivors.append((name, status, diff))
    return counts, survivors, matched


def to_run(
    by_module: dict[str, dict[str, str]], equivalents: dict[str, tuple[str, str]], diff_of: Callable[[str, str], str]
) -> list[str]:
    """Every mutant still to run: not run yet, and not a listed equivalent whose mutated line still matches.

    A listed equivalent was seen to survive when it was listed, and it costs
    every test that reaches its function; once its line changes it runs again.
    """
    names = []
    for module, statuses in sorted(by_module.items()):
        for name, status in sorted(statuses.items()):
            if status != "not checked":
                continue
            if not (name in equivalents and still_equivalent(name, equivalents, diff_of(name, module))):
                names.append(name)
    return names


def function_of(name: str) -> str:
    """The function a mutant belongs to: its name without ``__mutmut_<n>``."""
    return name.rsplit("__mutmut_", 1)[0]


def renumber(
    text: str, equivalents: dict[str, tuple[str, str]], lines_of: Callable[[str], dict[str, str]]
) -> tuple[str, list[tuple[str, str]]]:
    """The equivalents file with each entry whose mutant was renumbered (an edit elsewhere in its function
    shifts mutmut's numbers) renamed to the one mutant of the same function that changes the same line.

    ``lines_of(function)`` gives ``{mutant name: mutated line}`` for every mutant of a function. An entry
    stays as it is when its own mutant still changes its line, when no mutant does, or when more than one
    unlisted mutant does (which one was meant cannot be told). Returns the text and the (old, new) names.
    """
    renamed: list[tuple[str, str]] = []
    taken = set(equivalents)
    cache: dict[str, dict[str, str]] = {}
    for name, (line, _reason) in equivalents.items():
        function = function_of(name)
        lines = cache.setdefault(function, lines_of(function))
        if lines.get(name) == line:
            continue
        matches = [m for m, changed in lines.items() if changed == line and m not in taken]
        if len(matches) == 1:
            renamed.append((name, matches[0]))
            taken.add(matches[0])
    out = []
    new_names = dict(renamed)
    for raw in text.splitlines():
        head, sep, rest = raw.partition(" | ")
        out.append(f"{new_names[head.strip()]}{sep}{rest}" if sep and head.strip() in new_names else raw)
    return "\n".join(out) + "\n", renamed


def kill_rate(counts: Counter, mutants: int) -> float:
    """killed / (mutants - equivalent - not checked), in percent (100 when nothing is scored)."""
    scored = mutants - counts["equivalent"] - counts["not checked"]
    return 100.0 * counts["killed"] / scored if scored else 100.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=90.0, help="minimum kill rate per module, percent")
    parser.add_argument("--show-diffs", action="store_true", help="print each survivor's diff")
    parser.add_argument(
        "--to-run",
        action="store_true",
        help="print the mutants still to run, one per line, listed equivalents left out",
    )
    parser.add_argument(
        "--renumber",
        action="store_true",
        help="rename listed equivalents whose mutant was renumbered (same function, same mutated line)",
    )
    args = parser.parse_args(argv)

    paths = list(walk_mutatable_files())
    lost = lost_results(paths)
    by_module = collect(paths, lost)
    if args.to_run:
        for path in lost:
            print(f"{path}: its results were lost; all its mutants run again", file=sys.stderr)
        equivalents = load_equivalents()
        names = to_run(by_module, equivalents, lambda name, module: get_diff_for_mutant(name, path=module))
        print("\n".join([*names, *(forget(path) for path in lost)]))
        return 0
    if not by_module and not lost:
        print("No mutation results under mutants/: run `make mutation`.", file=sys.stderr)
        return 2
    equivalents = load_equivalents()
    if args.renumber:
        module_of = {name: module for module, statuses in by_module.items() for name in statuses}

        def lines_of(function: str) -> dict[str, str]:
            return {
                name: changed_lines(get_diff_for_mutant(name, path=module))
                for name, module in module_of.items()
                if function_of(name) == function
            }

        text, renamed = renumber(EQUIVALENTS.read_text(), equivalents, lines_of)
        EQUIVALENTS.write_text(text)
        for old, new in renamed:
            print(f"{old} -> {new}")
        print(f"{len(renamed)} entries renamed in {EQUIVALENTS.name}")
        return 0
    table = Table(title="Mutation testing: kill rate = killed / (mutants - equivalent - not checked)")
    columns = ("killed", "by mypy", "survived", "equivalent", "no tests", "not checked")
    for col in ("module", "mutants", *columns, "kill rate"):
        table.add_column(col, justify="left" if col == "module" else "right")

    def add_row(label: str, counts: Counter, mutants: int, **style) -> None:
        table.add_row(
            label,
            str(mutants),
            *(str(counts[k]) for k in columns),
            f"{kill_rate(counts, mutants):.1f}%",
            **style,
        )

    total: Counter = Counter()
    failing: list[str] = []
    not_run: list[str] = []
    run_names: set[str] = set()
    matched: set[str] = set()
    survivors: dict[str, list[tuple[str, str, str]]] = {}
    for module, statuses in sorted(by_module.items()):
        if all(status == "not checked" for status in statuses.values()):
            not_run.append(module)  # left out of this run (`mutmut run <names>`)
            continue
        counts, module_survivors, module_matched = tally(
            statuses, equivalents, lambda name, module=module: get_diff_for_mutant(name, path=module)
        )
        run_names.update(statuses)
        matched |= module_matched
        survivors[module] = module_survivors
        if kill_rate(counts, len(statuses)) < args.target or counts["not checked"]:
            failing.append(module)
        total.update(counts)
        total["mutants"] += len(statuses)
        add_row(module, counts, len(statuses))
    add_row("all", total, total["mutants"], style="bold")

    console = Console(width=160)
    for module, rows in survivors.items():
        if rows:
            console.print(f"[bold]{module}[/]: {len(rows)} not killed")
        for name, status, diff in rows:
            text = diff if args.show_diffs else changed_lines(diff)
            console.print(f"  {name} ({status}): {text}", markup=False, highlight=False)
    # Stale: listed for a module this run checked, but no longer a surviving mutant with that line.
    lost_patterns = [mutants_of(path) for path in lost]
    stale = sorted(
        name
        for name in equivalents
        if name not in matched
        and (name in run_names or not any(name in s for s in by_module.values()))
        and not any(fnmatchcase(name, pattern) for pattern in lost_patterns)
    )
    if stale:
        console.print(f"{len(stale)} entries of {EQUIVALENTS.name} match no surviving mutant (stale):")
        for name in stale:
            console.print(f"  {name}", markup=False)
    console.print(table)
    if not_run:
        console.print(f"Not run (every mutant unchecked): {', '.join(not_run)}")
    if lost:
        console.print(
            f"Results lost (result file missing or damaged; `make mutation-resume` runs them again): {', '.join(map(str, lost))}"
        )
        failing.extend(map(str, lost))
    if failing:
        console.print(f"Below the {args.target:.0f}% target: {', '.join(failing)}")
        return 1
    console.print(f"Every module at or above the {args.target:.0f}% target.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
