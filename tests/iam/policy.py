"""A small IAM policy evaluator: enough of AWS's evaluation logic for the policies infra/template.yaml writes.

Why our own: moto's IAM enforcement is basic (actions and resources; no condition keys such as
``s3:prefix`` or ``kms:ViaService``, no NotAction), and an offline simulator from a registry would
be a dependency for a few hundred lines. What it does (AWS "Policy evaluation logic", identity
policies only):

- a request is (action, resource ARN, context keys); it is allowed when some statement allows it
  and no statement denies it (explicit Deny wins; nothing matching is an implicit deny);
- ``Action``/``NotAction`` match case-insensitively with ``*`` and ``?``;
- ``Resource``/``NotResource`` match ARNs segment by segment (partition, service, region, account,
  then the resource part, where ``*`` also spans ``/`` and ``:``);
- conditions: every operator in a block must hold (AND), every key of an operator must hold (AND),
  any of a key's values may match (OR); a key missing from the context fails the condition unless
  the operator ends in ``IfExists`` (or is a negated operator, which AWS treats as true).
  Operators: StringEquals, StringNotEquals, StringEqualsIgnoreCase, StringLike, StringNotLike,
  ArnEquals, ArnLike, ArnNotEquals, ArnNotLike, Bool, NumericEquals/LessThan(Equals)/GreaterThan(Equals).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Decision:
    allowed: bool
    by: list = field(default_factory=list)  # (policy name, statement) that allowed
    denied_by: list = field(default_factory=list)


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool = False) -> re.Pattern:
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(rf"\A{rx}\Z", re.S | (re.I if ignore_case else 0))


def glob_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return bool(_glob(pattern, ignore_case).match(value))


def action_matches(pattern: str, action: str) -> bool:
    return glob_match(pattern, action, ignore_case=True)


def arn_matches(pattern: str, arn: str) -> bool:
    """IAM's ARN matching: the first five segments one by one, the rest (resource) as a whole."""
    if pattern == "*":
        return True
    p, a = pattern.split(":", 5), arn.split(":", 5)
    if len(p) != 6 or len(a) != 6:
        return glob_match(pattern, arn)
    return all(glob_match(x, y) for x, y in zip(p, a))


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _number(x) -> float:
    return float(x)


_OPS = {
    "StringEquals": lambda want, got: str(want) == str(got),
    "StringEqualsIgnoreCase": lambda want, got: str(want).lower() == str(got).lower(),
    "StringLike": lambda want, got: glob_match(str(want), str(got)),
    "ArnEquals": lambda want, got: str(want) == str(got),
    "ArnLike": lambda want, got: arn_matches(str(want), str(got)),
    "Bool": lambda want, got: str(want).lower() == str(got).lower(),
    "NumericEquals": lambda want, got: _number(got) == _number(want),
    "NumericLessThan": lambda want, got: _number(got) < _number(want),
    "NumericLessThanEquals": lambda want, got: _number(got) <= _number(want),
    "NumericGreaterThan": lambda want, got: _number(got) > _number(want),
    "NumericGreaterThanEquals": lambda want, got: _number(got) >= _number(want),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def condition_holds(block: dict | None, context: dict) -> bool:
    for operator, keys in (block or {}).items():
        if_exists = operator.endswith("IfExists")
        op = operator[: -len("IfExists")] if if_exists else operator
        negated = op in _NEGATED
        base = _NEGATED.get(op, op)
        if base not in _OPS:
            raise ValueError(f"condition operator {operator} is not supported by this evaluator")
        test = _OPS[base]
        for key, wanted in keys.items():
            got = _context_value(context, key)
            if got is None:
                if if_exists or negated:
                    continue
                return False
            any_match = any(test(w, g) for w in _as_list(wanted) for g in _as_list(got))
            if any_match == negated:
                return False
    return True


def _context_value(context: dict, key: str):
    for k, v in context.items():  # condition keys are case-insensitive
        if k.lower() == key.lower():
            return v
    return None


def statement_applies(st: dict, req: Request) -> bool:
    if "Action" in st:
        if not any(action_matches(p, req.action) for p in _as_list(st["Action"])):
            return False
    elif "NotAction" in st:
        if any(action_matches(p, req.action) for p in _as_list(st["NotAction"])):
            return False
    else:
        return False
    if "Resource" in st:
        if not any(arn_matches(p, req.resource) for p in _as_list(st["Resource"])):
            return False
    elif "NotResource" in st:
        if any(arn_matches(p, req.resource) for p in _as_list(st["NotResource"])):
            return False
    else:
        return False
    return condition_holds(st.get("Condition"), req.context)


def evaluate(policies: dict[str, dict], req: Request) -> Decision:
    """``policies``: name -> policy document. Explicit deny > allow > implicit deny."""
    decision = Decision(False)
    for name, doc in policies.items():
        for st in _as_list(doc.get("Statement", [])):
            if statement_applies(st, req):
                (decision.denied_by if st.get("Effect") == "Deny" else decision.by).append((name, st))
    decision.allowed = bool(decision.by) and not decision.denied_by
    return decision
