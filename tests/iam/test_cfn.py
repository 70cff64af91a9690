"""The template resolver the conformance test relies on (tests/iam/cfn.py)."""

from __future__ import annotations

import pytest

from .cfn import Stack

TEMPLATE = {
    "Parameters": {
        "Name": {"Type": "String"},
        "On": {"Type": "String", "Default": "false"},
        "Arns": {"Type": "CommaDelimitedList", "Default": ""},
    },
    "Conditions": {"IsOn": {"Fn::Equals": [{"Ref": "On"}, "true"]}, "IsOff": {"Fn::Not": [{"Condition": "IsOn"}]}},
    "Resources": {
        "Machine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {}},
        "Extra": {"Type": "AWS::IAM::ManagedPolicy", "Condition": "IsOn", "Properties": {"PolicyDocument": {}}},
        "Thing": {
            "Type": "AWS::X::Y",
            "Properties": {
                "Sub": {
                    "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${Machine.Name}:*"
                },
                "SubMap": {"Fn::Sub": ["${A}-${Name}", {"A": {"Ref": "AWS::StackName"}}]},
                "If": {"Fn::If": ["IsOn", {"Ref": "Extra"}, {"Ref": "AWS::NoValue"}]},
                "List": [{"Fn::If": ["IsOff", "off", {"Ref": "AWS::NoValue"}]}, "always"],
                "Join": {"Fn::Join": [",", [{"Ref": "Name"}, "b"]]},
            },
        },
    },
}


@pytest.mark.parametrize(
    "on, expected_if, expected_list",
    [("true", True, ["always"]), ("false", False, ["off", "always"])],
    ids=["condition-true", "condition-false"],
)
def test_given_parameters_then_conditions_intrinsics_and_no_value_resolve(on, expected_if, expected_list):
    stack = Stack(TEMPLATE, {"Name": "n", "On": on}, name="st", account="111122223333", region="eu-west-1")
    props = stack.resolve(stack.resources["Thing"]["Properties"])
    assert props["Sub"] == "arn:aws:states:eu-west-1:111122223333:execution:Machine-SUFFIX:*"
    assert props["SubMap"] == "st-n" and props["Join"] == "n,b" and props["List"] == expected_list
    assert ("If" in props) is expected_if and ("Extra" in stack.resources) is expected_if


def test_a_missing_required_parameter_or_an_unknown_one_is_refused():
    with pytest.raises(ValueError, match="Name"):
        Stack(TEMPLATE, {})
    with pytest.raises(ValueError, match="Nme"):
        Stack(TEMPLATE, {"Name": "n", "Nme": "x"})
