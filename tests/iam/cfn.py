"""Resolve infra/template.yaml for one concrete set of parameters, as CloudFormation would.

Conditions (Fn::Equals/Not/And/Or, Condition), Fn::If with AWS::NoValue, Ref (parameters, pseudo
parameters, resources' physical ids), Fn::Sub (both forms, ``${Res.Attr}``), Fn::GetAtt, Fn::Join,
Fn::Split, Fn::Select. Resources whose Condition is false are dropped. Physical ids follow the
names CloudFormation gives (``<stack>-<LogicalId>-<suffix>``) or the name the template sets.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "template.yaml"
NO_VALUE = object()


def load_template(path: Path = TEMPLATE) -> dict:
    return json.loads(json.dumps(cfn_yaml.loads(path.read_text())))


class Stack:
    def __init__(
        self,
        template: dict,
        parameters: dict,
        *,
        name: str = "lakeseg",
        account: str = "123456789012",
        region: str = "eu-west-1",
        partition: str = "aws",
    ):
        self.t = template
        self.name, self.account, self.region, self.partition = name, account, region, partition
        self.params = {}
        for key, spec in template["Parameters"].items():
            if key in parameters:
                value = parameters[key]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise ValueError(f"parameter {key} has no default and was not given")
            if spec["Type"] == "CommaDelimitedList":
                value = [v for v in str(value).split(",")] if not isinstance(value, list) else value
            self.params[key] = value if isinstance(value, list) else str(value)
        unknown = set(parameters) - set(template["Parameters"])
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}")
        self._conditions: dict[str, bool] = {}
        self.resources = {
            k: r for k, r in template["Resources"].items() if "Condition" not in r or self.condition(r["Condition"])
        }

    # ------------------------------------------------------------- conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self._cond(self.t["Conditions"][name]))
        return self._conditions[name]

    def _cond(self, node) -> bool:
        ((fn, arg),) = node.items()
        if fn == "Fn::Equals":
            a, b = (self.resolve(x) for x in arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not self._cond(arg[0])
        if fn == "Fn::And":
            return all(self._cond(x) for x in arg)
        if fn == "Fn::Or":
            return any(self._cond(x) for x in arg)
        if fn == "Condition":
            return self.condition(arg)
        raise ValueError(f"unknown condition function {fn}")

    # ------------------------------------------------------------- ids
    def pseudo(self, name: str):
        return {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::StackName": self.name,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
            "AWS::StackId": f"arn:{self.partition}:cloudformation:{self.region}:{self.account}:stack/{self.name}/1",
        }[name]

    def ref(self, name: str):
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.params:
            return self.params[name]
        if name not in self.resources:
            raise KeyError(f"Ref to {name}, which does not exist with these parameters")
        res = self.resources[name]
        kind, props = res["Type"], res.get("Properties", {})
        p, r, a = self.partition, self.region, self.account
        generated = f"{self.name}-{name}-SUFFIX"
        if kind == "AWS::IAM::ManagedPolicy":
            return f"arn:{p}:iam::{a}:policy/{self.resolve(props.get('ManagedPolicyName', generated))}"
        if kind == "AWS::StepFunctions::StateMachine":
            return f"arn:{p}:states:{r}:{a}:stateMachine:{self.getatt(name, 'Name')}"
        if kind == "AWS::SNS::Topic":
            return f"arn:{p}:sns:{r}:{a}:{generated}"
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{r}.amazonaws.com/{a}/{generated}"
        if kind == "AWS::S3::Bucket":
            return self.resolve(props.get("BucketName", generated.lower()))
        if kind == "AWS::Glue::Database":
            return self.resolve(props["DatabaseInput"]["Name"])
        if kind in ("AWS::CodeBuild::Project", "AWS::Athena::WorkGroup", "AWS::Logs::LogGroup"):
            return self.resolve(props.get("Name") or props.get("LogGroupName") or generated)
        if kind == "AWS::KMS::Key":
            return "11111111-2222-3333-4444-555555555555"
        if kind == "AWS::IAM::OIDCProvider":
            return f"arn:{p}:iam::{a}:oidc-provider/token.actions.githubusercontent.com"
        return generated

    def getatt(self, name: str, attr: str):
        res = self.resources[name]
        kind, props = res["Type"], res.get("Properties", {})
        p, r, a = self.partition, self.region, self.account
        if kind == "AWS::IAM::Role" and attr == "Arn":
            return f"arn:{p}:iam::{a}:role/{self.name}-{name}-SUFFIX"
        if kind == "AWS::StepFunctions::StateMachine" and attr == "Name":
            return self.resolve(props.get("StateMachineName", f"{name}-SUFFIX"))
        if kind == "AWS::Logs::LogGroup" and attr == "Arn":
            return f"arn:{p}:logs:{r}:{a}:log-group:{self.ref(name)}:*"
        if kind == "AWS::S3::Bucket" and attr == "Arn":
            return f"arn:{p}:s3:::{self.ref(name)}"
        if kind == "AWS::CodeBuild::Project" and attr == "Arn":
            return f"arn:{p}:codebuild:{r}:{a}:project/{self.ref(name)}"
        if kind == "AWS::SQS::Queue" and attr == "Arn":
            return f"arn:{p}:sqs:{r}:{a}:{self.name}-{name}-SUFFIX"
        if kind == "AWS::SNS::Topic" and attr == "TopicArn":
            return self.ref(name)
        if kind == "AWS::KMS::Key" and attr == "Arn":
            return f"arn:{p}:kms:{r}:{a}:key/{self.ref(name)}"
        if kind == "AWS::Events::Rule" and attr == "Arn":
            return f"arn:{p}:events:{r}:{a}:rule/{self.name}-{name}-SUFFIX"
        return f"arn:{p}:{kind.split('::')[1].lower()}:{r}:{a}:{name}/{attr}"

    # ------------------------------------------------------------- values
    def resolve(self, node):
        if isinstance(node, list):
            out = [self.resolve(x) for x in node]
            return [x for x in out if x is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if fn == "Fn::GetAtt":
                name, attr = arg.split(".", 1) if isinstance(arg, str) else arg
                return self.getatt(name, attr)
            if fn == "Fn::Sub":
                return self._sub(arg)
            if fn == "Fn::Join":
                sep, items = arg
                return sep.join(str(x) for x in self.resolve(items))
            if fn == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if fn.startswith("Fn::"):
                raise ValueError(f"{fn} is not supported")
        out = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}

    def _sub(self, arg) -> str:
        text, names = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def one(m: re.Match) -> str:
            key = m.group(1)
            if key.startswith("!"):
                return "${" + key[1:] + "}"
            if key in names:
                return str(names[key])
            if "." in key and not key.startswith("AWS::"):
                res, attr = key.split(".", 1)
                return str(self.getatt(res, attr))
            value = self.ref(key)
            return ",".join(value) if isinstance(value, list) else str(value)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    # ------------------------------------------------------------- IAM
    def managed_policies(self) -> dict[str, tuple[str, dict]]:
        """ARN -> (logical id, policy document) of the stack's managed policies."""
        return {
            self.ref(k): (k, self.resolve(r["Properties"]["PolicyDocument"]))
            for k, r in self.resources.items()
            if r["Type"] == "AWS::IAM::ManagedPolicy"
        }

    def role_policies(self, role: str) -> dict[str, dict]:
        """Every policy document attached to a role of the stack: its inline ones and its managed ones."""
        props = self.resolve(self.resources[role]["Properties"])
        out = {f"{role}/{p['PolicyName']}": p["PolicyDocument"] for p in props.get("Policies", [])}
        managed = self.managed_policies()
        for arn in props.get("ManagedPolicyArns", []):
            if arn in managed:
                logical, doc = managed[arn]
                out[logical] = doc
        return out

    def output(self, name: str):
        out = self.t["Outputs"][name]
        if "Condition" in out and not self.condition(out["Condition"]):
            return None
        return self.resolve(out["Value"])
