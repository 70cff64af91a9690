"""The IAM evaluator the conformance test relies on (tests/iam/policy.py)."""

from __future__ import annotations

import pytest

from .policy import Request, arn_matches, condition_holds, evaluate

BUCKET = "arn:aws:s3:::acme"


def doc(*statements) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action, resource, **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


@pytest.mark.parametrize(
    "action, allowed",
    [("s3:GetObject", True), ("S3:getobject", True), ("s3:GetObjectVersion", False), ("s3:PutObject", False)],
)
def test_given_an_exact_action_then_only_that_action_case_insensitively_is_allowed(action, allowed):
    policies = {"p": doc(allow("s3:GetObject", f"{BUCKET}/*"))}
    assert evaluate(policies, Request(action, f"{BUCKET}/k")).allowed is allowed


@pytest.mark.parametrize(
    "action, allowed",
    [("kms:GenerateDataKey", True), ("kms:GenerateDataKeyWithoutPlaintext", True), ("kms:Decrypt", False)],
)
def test_given_an_action_wildcard_then_it_matches_the_names_it_spells(action, allowed):
    policies = {"p": doc(allow("kms:GenerateDataKey*", "*"))}
    assert evaluate(policies, Request(action, "arn:aws:kms:eu-west-1:1:key/k")).allowed is allowed


def test_given_nothing_matches_then_it_is_an_implicit_deny():
    decision = evaluate({"p": doc(allow("s3:GetObject", f"{BUCKET}/state/*"))}, Request("s3:GetObject", f"{BUCKET}/x"))
    assert not decision.allowed and not decision.by and not decision.denied_by


def test_given_an_allow_and_a_matching_deny_then_the_deny_wins():
    policies = {
        "a": doc(allow("s3:*", "*")),
        "d": doc({"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": f"{BUCKET}/state/*"}),
    }
    assert not evaluate(policies, Request("s3:DeleteObject", f"{BUCKET}/state/k")).allowed
    assert evaluate(policies, Request("s3:DeleteObject", f"{BUCKET}/imports/k")).allowed


def test_given_not_action_then_every_other_action_is_allowed():
    policies = {"p": doc({"Effect": "Allow", "NotAction": "glue:Delete*", "Resource": "*"})}
    assert evaluate(policies, Request("glue:GetTable", "arn:aws:glue:eu-west-1:1:catalog")).allowed
    assert not evaluate(policies, Request("glue:DeleteTable", "arn:aws:glue:eu-west-1:1:catalog")).allowed


def test_given_not_resource_then_everything_but_that_resource_is_allowed():
    policies = {
        "p": doc(
            {"Effect": "Allow", "Action": "glue:CreateTable", "NotResource": "arn:aws:glue:*:*:database/lakeseg_ops"}
        )
    }
    assert evaluate(policies, Request("glue:CreateTable", "arn:aws:glue:eu-west-1:1:database/lakeseg_imports")).allowed
    assert not evaluate(policies, Request("glue:CreateTable", "arn:aws:glue:eu-west-1:1:database/lakeseg_ops")).allowed


@pytest.mark.parametrize(
    "pattern, arn, matches",
    [
        ("arn:aws:glue:eu-west-1:1:table/lakeseg_*/*", "arn:aws:glue:eu-west-1:1:table/lakeseg_imports/t", True),
        ("arn:aws:glue:eu-west-1:1:table/lakeseg_*/*", "arn:aws:glue:eu-west-1:1:table/lakeseg/t", False),
        ("arn:aws:glue:eu-west-1:1:database/lakeseg", "arn:aws:glue:eu-west-1:1:database/lakeseg_ops", False),
        ("arn:aws:states:*:1:execution:Tail:*", "arn:aws:states:eu-west-1:1:execution:Tail:run-a-p1", True),
        ("arn:aws:states:*:1:execution:Tail:*", "arn:aws:states:eu-west-1:2:execution:Tail:run-a-p1", False),
        (
            "arn:aws:secretsmanager:r:1:secret:lakeseg/digest-key-??????",
            "arn:aws:secretsmanager:r:1:secret:lakeseg/digest-key-AbCdEf",
            True,
        ),
        (
            "arn:aws:secretsmanager:r:1:secret:lakeseg/digest-key-??????",
            "arn:aws:secretsmanager:r:1:secret:lakeseg/digest-key-other-AbCdEf",
            False,
        ),
        ("arn:aws:s3:::acme/state/*", "arn:aws:s3:::acme/state/a/b.json", True),
    ],
    ids=[
        "prefix-wildcard",
        "prefix-needs-underscore",
        "no-implicit-prefix",
        "execution-any-region",
        "other-account",
        "secret-suffix",
        "secret-longer-name",
        "star-spans-slashes",
    ],
)
def test_arn_patterns_match_segment_by_segment(pattern, arn, matches):
    assert arn_matches(pattern, arn) is matches


@pytest.mark.parametrize(
    "prefix, allowed",
    [
        ("lakeseg/state/", True),
        ("lakeseg/state/history/", True),
        ("lakeseg/state", True),
        ("lakeseg/", False),
        ("", False),
    ],
    ids=["root", "below", "exact", "parent", "whole-bucket"],
)
def test_string_like_on_s3_prefix_limits_a_listing(prefix, allowed):
    st = allow("s3:ListBucket", BUCKET, Condition={"StringLike": {"s3:prefix": ["lakeseg/state/*", "lakeseg/state"]}})
    assert evaluate({"p": doc(st)}, Request("s3:ListBucket", BUCKET, {"s3:prefix": prefix})).allowed is allowed


def test_a_condition_key_missing_from_the_request_fails_the_condition_unless_if_exists():
    assert not condition_holds({"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}, {})
    assert condition_holds({"StringEqualsIfExists": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}, {})


@pytest.mark.parametrize(
    "block, context, holds",
    [
        ({"StringEquals": {"cloudwatch:namespace": "lakeseg"}}, {"cloudwatch:namespace": "lakeseg"}, True),
        ({"StringEquals": {"cloudwatch:namespace": "lakeseg"}}, {"cloudwatch:namespace": "other"}, False),
        ({"StringNotEquals": {"aws:SourceAccount": "1"}}, {"aws:SourceAccount": "1"}, False),
        ({"ArnEquals": {"aws:SourceArn": ["arn:a", "arn:b"]}}, {"aws:SourceArn": "arn:b"}, True),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:r:1:alarm:*"}},
            {"aws:SourceArn": "arn:aws:cloudwatch:r:1:alarm:x"},
            True,
        ),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"}, False),
        ({"StringEquals": {"a": "1"}, "StringLike": {"b": "x*"}}, {"a": "1", "b": "y"}, False),
    ],
    ids=["equals", "not-equals-value", "negated", "arn-any-of", "arn-like", "bool", "all-operators"],
)
def test_condition_operators_the_template_uses(block, context, holds):
    assert condition_holds(block, context) is holds


def test_an_operator_the_evaluator_does_not_know_is_an_error_not_a_silent_allow():
    with pytest.raises(ValueError, match="DateLessThan"):
        condition_holds({"DateLessThan": {"aws:CurrentTime": "2030-01-01"}}, {"aws:CurrentTime": "2026-01-01"})
