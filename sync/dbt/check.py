"""``lakeseg check``: the static half of segment validation.

dbt tests check the *data* (unique ids, value lengths, ...). This module checks
what is metadata rather than data, from the manifest alone: field names, the
id column, exit declarations, required tests and field ownership.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from sync.core import fields as pf
from sync.dbt.contract import KEEP, Segment, load_segments, test_name, tests_by_model

# Rule names a user sees (docs/segments.md, "The contract").
REQUIRED_ID_TESTS = ("unique", "not_null")
REQUIRED_VALUE_TESTS = ("pinpoint_max_length", "pinpoint_no_control_chars")
NUMERIC_TEST = "pinpoint_numeric"
ACCEPTED_VALUES_TESTS = ("pinpoint_accepted_values", "accepted_values")


@dataclass(frozen=True)
class Problem:
    model: str
    column: str | None
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"{self.model}.{self.column}" if self.column else self.model
        return f"{where}: [{self.rule}] {self.message}"


def _column_tests(tests: list[dict]) -> dict[str | None, dict[str, dict]]:
    by_column: dict[str | None, dict[str, dict]] = defaultdict(dict)
    for t in tests:
        column = t.get("column_name") or ((t.get("test_metadata") or {}).get("kwargs") or {}).get("column_name")
        by_column[column.lower() if column else None][test_name(t)] = t
    return by_column


def _accepted_values(test: dict) -> list | None:
    kwargs = (test.get("test_metadata") or {}).get("kwargs") or {}
    values = kwargs.get("values")
    if values is None:
        values = (kwargs.get("arguments") or {}).get("values")
    return values


# Test configs that keep a required test from checking every row at error severity.
_DEFAULT_ERROR_IF = {"!=0", ">0", ">=1"}


def neutralised(test: dict) -> str | None:
    """Why a test does not really guard the data (it filters rows, only warns, ...), or None."""
    config = test.get("config") or {}
    if str(config.get("severity") or "error").strip().lower() != "error":
        return f"severity: {config.get('severity')}"
    if config.get("where") not in (None, ""):
        return f"where: {config.get('where')!r}"
    if config.get("limit") is not None:
        return f"limit: {config.get('limit')!r}"
    error_if = str(config.get("error_if") or "!= 0").replace(" ", "")
    if error_if not in _DEFAULT_ERROR_IF:
        return f"error_if: {config.get('error_if')!r}"
    fail_calc = str(config.get("fail_calc") or "count(*)").replace(" ", "").lower()
    if fail_calc != "count(*)":
        return f"fail_calc: {config.get('fail_calc')!r}"
    kwargs = (test.get("test_metadata") or {}).get("kwargs") or {}
    max_length = kwargs.get("max_length", (kwargs.get("arguments") or {}).get("max_length"))
    if test_name(test) == "pinpoint_max_length" and max_length is not None:
        try:
            if float(max_length) > pf.MAX_VALUE_LENGTH:
                return f"max_length: {max_length} (Pinpoint allows {pf.MAX_VALUE_LENGTH})"
        except (TypeError, ValueError):
            return f"max_length: {max_length!r}"
    return None


def _exit_value_problem(value) -> str | None:
    """Exit values are strings or numbers exactly as written; YAML null and booleans are refused."""
    if value is None:
        return "is null (YAML ~, null or nothing); write the value in quotes, e.g. 'None'"
    if isinstance(value, bool):
        return f"is the YAML boolean {str(value).lower()} (an unquoted yes/no/true/false/on/off); quote it, e.g. 'No'"
    if not isinstance(value, (str, int, float)):
        return f"must be a string or a number, got a {type(value).__name__}"
    return None


Add = Callable[[str | None, str, str], None]  # (column or None, rule, message)


def check_segment(seg: Segment, tests: list[dict]) -> list[Problem]:
    problems: list[Problem] = []

    def add(column, rule, message):
        problems.append(Problem(seg.name, column, rule, message))

    if "_invalid" in seg.raw_meta:
        add(None, "contract", f"meta '{'lakeseg'}' must be a mapping, got {seg.raw_meta['_invalid']!r}")
    if not seg.mappings:
        add(None, "contract", "declares no exported columns (column config.meta.lakeseg.field)")
        return problems
    _check_fields(seg, add)
    _check_exit(seg, add)
    _check_required_tests(seg, tests, add)
    return problems


def _check_fields(seg: Segment, add: Add) -> None:
    """One Id column; every field valid and mapped from one column only."""
    ids = seg.id_mappings
    if len(ids) != 1:
        cols = ", ".join(m.column for m in ids) or "none"
        add(None, "one-id-column", f"needs exactly one column mapped to Id, found {len(ids)} ({cols})")
    seen: dict[str, str] = {}
    for m in seg.mappings:
        for fp in pf.validate_field(m.field):
            add(m.column, fp.rule, fp.message)
        if m.field in seen:
            add(m.column, "one-column-per-field", f"{m.field} is also mapped from column {seen[m.field]}")
        seen.setdefault(m.field, m.column)


def _check_exit(seg: Segment, add: Add) -> None:
    """Exit choice: `keep`, or a value for every owned field."""
    if seg.exit is None:
        add(
            None,
            "exit",
            f"declares no exit behaviour: set config.meta.lakeseg.exit to '{KEEP}' "
            f"or to a value for each of {', '.join(seg.owned_fields) or 'its fields'}",
        )
    elif isinstance(seg.exit, str):
        if seg.exit != KEEP:
            add(None, "exit", f"exit must be '{KEEP}' or a mapping of field to value, got {seg.exit!r}")
    elif isinstance(seg.exit, dict):
        _check_exit_values(seg, seg.exit, add)
    else:
        add(None, "exit", f"exit must be '{KEEP}' or a mapping of field to value, got {type(seg.exit).__name__}")


def _check_exit_values(seg: Segment, exit_values: dict, add: Add) -> None:
    for f in seg.owned_fields:
        if f not in exit_values:
            add(None, "exit", f"exit has no value for {f} (give one, or declare exit: {KEEP})")
    for f, v in exit_values.items():
        if f not in seg.owned_fields:
            add(None, "exit", f"exit names {f}, which this segment does not export")
            continue
        bad = _exit_value_problem(v)
        if bad:
            add(None, "exit-value", f"exit value for {f} {bad}")
            continue
        for fp in pf.validate_value(f, v):
            add(None, f"exit-{fp.rule}", f"exit value for {f}: {fp.message}")


def _check_required_tests(seg: Segment, tests: list[dict], add: Add) -> None:
    """Required tests, attached to the model in the manifest, each at error severity on every row."""
    attached = _column_tests(tests)
    for m in seg.mappings:
        have = attached.get(m.column.lower(), {})
        required = list(REQUIRED_VALUE_TESTS)
        if m.field == pf.ID_FIELD:
            required = list(REQUIRED_ID_TESTS) + required
        if pf.is_metric(m.field):
            required.append(NUMERIC_TEST)
        for rule in required:
            if rule not in have:
                add(m.column, "required-test", f"{m.field} needs the '{rule}' test")
            elif (why := neutralised(have[rule])) is not None:
                add(
                    m.column,
                    "required-test",
                    f"{m.field}'s '{rule}' test does not count with {why}: "
                    "required tests run at error severity on every row",
                )
        allowed = pf.ACCEPTED_VALUES.get(m.field)
        if allowed is not None:
            _check_accepted_values(m.column, m.field, allowed, have, add)


def _check_accepted_values(column: str, field: str, allowed, have: dict, add: Add) -> None:
    """A field with a fixed set of values needs an accepted-values test that accepts none beyond it."""
    found = [have[n] for n in ACCEPTED_VALUES_TESTS if n in have]
    guarding = [t for t in found if neutralised(t) is None]
    if not found:
        add(
            column,
            "required-test",
            f"{field} needs a 'pinpoint_accepted_values' test with values from {', '.join(sorted(allowed))}",
        )
    elif not guarding:
        add(
            column,
            "required-test",
            f"{field}'s '{test_name(found[0])}' test does not count with "
            f"{neutralised(found[0])}: required tests run at error severity on "
            "every row",
        )
    else:
        values = _accepted_values(guarding[0]) or []
        extra = sorted(set(map(str, values)) - allowed)
        if extra:
            add(column, "accepted-values", f"{field} test accepts {', '.join(extra)}, which Pinpoint does not")


def check_manifest(manifest: dict) -> tuple[list[Segment], list[Problem]]:
    """All segments and every contract problem across them."""
    segments = load_segments(manifest)
    tests = tests_by_model(manifest)
    problems: list[Problem] = []
    for seg in segments:
        problems.extend(check_segment(seg, tests.get(seg.unique_id, [])))

    owners: dict[str, list[str]] = defaultdict(list)
    for seg in segments:
        for f in set(seg.owned_fields):
            owners[f].append(seg.name)
    for f, models in sorted(owners.items()):
        if len(models) > 1:
            for model in sorted(models):
                others = ", ".join(sorted(m for m in models if m != model))
                col = next(m.column for s in segments if s.name == model for m in s.mappings if m.field == f)
                problems.append(
                    Problem(
                        model,
                        col,
                        "field-ownership",
                        f"{f} is also written by {others}; each field has exactly one owner",
                    )
                )
    problems.extend(_quota_problems(segments))
    return segments, problems


def _quota_problems(segments: list[Segment]) -> list[Problem]:
    """Pinpoint's 250 custom attributes per project, attached to the segments that push past it.

    Segments are counted in name order; a segment whose new custom attributes
    would take the project past the quota is refused whole (its fields
    all-or-nothing), and the count goes on with the next one.
    """
    counted: set[str] = set()
    total = len({f for s in segments for f in s.owned_fields if pf.custom_name(f) is not None})
    problems = []
    for seg in sorted(segments, key=lambda s: s.name):
        new = sorted({f for f in seg.owned_fields if pf.custom_name(f) is not None} - counted)
        if len(counted) + len(new) > pf.MAX_CUSTOM_ATTRIBUTES:
            problems.append(
                Problem(
                    seg.name,
                    None,
                    "custom-attribute-quota",
                    f"its {len(new)} custom attribute(s) ({', '.join(new[:3])}"
                    + (", ..." if len(new) > 3 else "")
                    + f") would take the project past "
                    f"Pinpoint's {pf.MAX_CUSTOM_ATTRIBUTES} per project ({total} declared "
                    f"across all segments; counted in segment name order)",
                )
            )
            continue
        counted.update(new)
    return problems


# ---- the data rules, re-checked by the sync on what it reads ---------------------------------------------
@dataclass(frozen=True)
class ValueRule:
    """One data rule the contract's tests enforce on one column, as the sync checks it on the values it sends.

    ``kind``: ``max_length`` (up to ``limit`` characters), ``no_control_chars``, ``numeric`` or
    ``accepted_values`` (one of ``values``). ``rule`` is the dbt test's name, for messages.
    """

    column: str
    field: str
    rule: str
    kind: str
    limit: int = 0
    values: tuple[str, ...] = ()


def _test_kwarg(test: dict, key: str):
    kwargs = (test.get("test_metadata") or {}).get("kwargs") or {}
    return kwargs.get(key, (kwargs.get("arguments") or {}).get(key))


def value_rules(seg: Segment, tests: list[dict]) -> list[ValueRule]:
    """The data rules on every exported column: what the required tests check (a value's length, control
    characters, a metric's number, Pinpoint's accepted values), with a test's own stricter setting (a lower
    ``max_length``, fewer accepted values) where the column has one -- so the sync refuses what dbt's tests
    would have refused, had they run on the table the sync reads."""
    attached = _column_tests(tests)
    rules = []
    for m in seg.mappings:
        have = attached.get(m.column.lower(), {})
        limit = pf.MAX_VALUE_LENGTH
        if "pinpoint_max_length" in have:
            with_limit = _test_kwarg(have["pinpoint_max_length"], "max_length")
            try:
                limit = min(limit, int(with_limit)) if with_limit is not None else limit
            except (TypeError, ValueError):
                pass
        rules.append(ValueRule(m.column, m.field, "pinpoint_max_length", "max_length", limit=limit))
        rules.append(ValueRule(m.column, m.field, "pinpoint_no_control_chars", "no_control_chars"))
        if pf.is_metric(m.field):
            rules.append(ValueRule(m.column, m.field, NUMERIC_TEST, "numeric"))
        for name in ACCEPTED_VALUES_TESTS:
            values = _accepted_values(have[name]) if name in have and neutralised(have[name]) is None else None
            if values:
                rules.append(
                    ValueRule(m.column, m.field, name, "accepted_values", values=tuple(str(v) for v in values))
                )
        allowed = pf.ACCEPTED_VALUES.get(m.field)
        if allowed is not None and not any(r.kind == "accepted_values" and r.column == m.column for r in rules):
            rules.append(
                ValueRule(
                    m.column, m.field, "pinpoint_accepted_values", "accepted_values", values=tuple(sorted(allowed))
                )
            )
    return rules
