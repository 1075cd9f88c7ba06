"""template.yaml's grants, read from the template itself: queue-scoped SQS access (no SAM managed
policy on ``*``), the rollout queue's sender, the night role's one tag, DynamoDB writes only on
their own keys, ECR only under the repository prefix, schedule names that carry the stack name
and visibility timeouts that outlast their consumers. A grant widened in the template fails
here."""

from __future__ import annotations

import re
from typing import Any

import pytest

from greenlight_sandbox.fleet import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
FUNCTIONS = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
DYNAMODB_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
}


def _target(node: Any) -> str:
    """The logical id that a ``!GetAtt X.Arn`` / ``!Ref X`` names, or the literal."""
    if isinstance(node, dict):
        (key, value), *_ = node.items()
        if key == "Fn::GetAtt":
            return str(value if isinstance(value, str) else value[0]).split(".")[0]
        if key == "Ref":
            return str(value)
        if key == "Fn::Sub":
            return str(value)
    return str(node)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(policies: list[Any]) -> list[dict[str, Any]]:
    """Every statement of a function's ``Policies`` or a role's inline policies, either branch
    of an ``Fn::If`` included."""
    found: list[dict[str, Any]] = []
    for policy in policies:
        if isinstance(policy, dict) and "Fn::If" in policy:
            branches = [b for b in policy["Fn::If"][1:] if isinstance(b, dict) and "Ref" not in b]
        else:
            branches = [policy]
        for branch in branches:
            document = branch.get("PolicyDocument", branch)
            found.extend(_listed(document.get("Statement", [])))
    return found


def grants(function: str) -> list[dict[str, Any]]:
    """The statements a function's role holds."""
    props = FUNCTIONS[function]["Properties"]
    if "Role" in props:
        role = RESOURCES[_target(props["Role"])]
        assert role["Type"] == "AWS::IAM::Role"
        return _statements(role["Properties"].get("Policies", []))
    return _statements(props.get("Policies", []))


def sqs_sources(function: str) -> set[str]:
    events = FUNCTIONS[function]["Properties"].get("Events", {})
    return {_target(e["Properties"]["Queue"]) for e in events.values() if e["Type"] == "SQS"}


SQS_CONSUMERS = sorted(f for f in FUNCTIONS if sqs_sources(f))


def test_there_are_sqs_consumers_to_check() -> None:
    assert {"RolloutFunction", "GateFunction", "NotifyFunction"} <= set(SQS_CONSUMERS)


@pytest.mark.parametrize("function", SQS_CONSUMERS)
def test_sqs_consumers_have_an_explicit_role_scoped_to_their_own_queues(function: str) -> None:
    props = FUNCTIONS[function]["Properties"]
    # SAM gives a generated role of a function with an SQS event the managed policy
    # AWSLambdaSQSQueueExecutionRole (receive and delete on every queue): an explicit role.
    assert "Role" in props and "Policies" not in props, function
    role = RESOURCES[_target(props["Role"])]["Properties"]
    assert not role.get("ManagedPolicyArns"), role.get("ManagedPolicyArns")
    receive = [
        s
        for s in grants(function)
        if any(str(a).startswith("sqs:Receive") for a in _listed(s["Action"]))
    ]
    assert receive, f"{function} cannot receive from its queues"
    for statement in receive:
        assert statement["Effect"] == "Allow"
        queues = {_target(r) for r in _listed(statement["Resource"])}
        assert queues == sqs_sources(function), (function, queues)
    for statement in grants(function):
        for action in _listed(statement["Action"]):
            if str(action).startswith("sqs:"):
                assert statement["Resource"] != "*", (function, statement)


@pytest.mark.parametrize("function", SQS_CONSUMERS)
def test_each_queue_outlasts_six_times_its_consumers_timeout(function: str) -> None:
    timeout = FUNCTIONS[function]["Properties"].get(
        "Timeout", TEMPLATE["Globals"]["Function"]["Timeout"]
    )
    for queue in sqs_sources(function):
        visibility = RESOURCES[queue]["Properties"]["VisibilityTimeout"]
        assert visibility >= 6 * timeout, (function, queue, visibility, timeout)


def test_only_the_webhook_and_the_deployer_send_to_the_rollout_queue() -> None:
    policies = [
        r["Properties"]
        for r in RESOURCES.values()
        if r["Type"] == "AWS::SQS::QueuePolicy"
        and {_target(q) for q in r["Properties"]["Queues"]} == {"RolloutQueue"}
    ]
    assert len(policies) == 1
    deny = [s for s in policies[0]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert len(deny) == 1
    assert deny[0]["Principal"] == "*"
    assert deny[0]["Action"] == "sqs:SendMessage"
    allowed = {_target(a) for a in deny[0]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]}
    assert allowed == {"GitHubWebhookFunctionRole", "DeployerRoleArn"}
    # Nobody else's role may send there either.
    for function in FUNCTIONS:
        if function == "GitHubWebhookFunction":
            continue
        for statement in grants(function):
            if "sqs:SendMessage" in _listed(statement["Action"]):
                targets = {_target(r) for r in _listed(statement["Resource"])}
                assert "RolloutQueue" not in targets, function


def test_the_night_role_changes_only_its_capacity_tag() -> None:
    tagging = [
        s
        for s in grants("NightFunction")
        if {"autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"} & set(_listed(s["Action"]))
    ]
    assert len(tagging) == 1
    condition = tagging[0]["Condition"]
    assert condition["ForAllValues:StringEquals"]["aws:TagKeys"] == ["greenlight:night-capacity"]
    assert condition["Null"]["aws:TagKeys"] == "false"  # a request must name its tag keys
    assert set(_listed(tagging[0]["Action"])) == {
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteTags",
    }


@pytest.mark.parametrize(
    ("function", "prefixes"),
    [
        ("RolloutFunction", ["app#*"]),
        ("GateFunction", ["app#*"]),
        ("NotifyFunction", ["app#*"]),
        ("NightFunction", [{"Fn::Sub": "night#${WorkerGroupName}"}]),
        ("HaproxyFunction", None),  # checked below: its own edge# items only
    ],
)
def test_dynamodb_writes_only_on_their_own_keys(function: str, prefixes: Any) -> None:
    writes = [
        s
        for s in grants(function)
        if DYNAMODB_WRITES & set(_listed(s["Action"])) and _target(s["Resource"]) == "RolloutsTable"
    ]
    assert writes, function
    for statement in writes:
        keys = next(
            v["dynamodb:LeadingKeys"]
            for k, v in statement["Condition"].items()
            if k.startswith("ForAllValues:")
        )
        if prefixes is None:
            assert all(str(key).startswith("edge#") for key in keys), keys
        else:
            assert keys == prefixes, (function, keys)


def test_the_rollout_function_only_reads_the_night_state() -> None:
    night = [s for s in grants("RolloutFunction") if "night#*" in str(s.get("Condition", {}))]
    assert len(night) == 1
    assert set(_listed(night[0]["Action"])) <= {"dynamodb:GetItem", "dynamodb:ConditionCheckItem"}


def test_ecr_lookups_only_under_the_repository_prefix() -> None:
    assert "EcrRepositoryPrefix" in TEMPLATE["Parameters"]
    assert "Default" not in TEMPLATE["Parameters"]["EcrRepositoryPrefix"]  # never "all"
    lookups = [
        s
        for f in FUNCTIONS
        for s in grants(f)
        if any(str(a).startswith("ecr:") for a in _listed(s["Action"]))
    ]
    assert lookups
    for statement in lookups:
        assert _listed(statement["Action"]) == ["ecr:DescribeImages"]
        assert str(_target(statement["Resource"])).endswith(
            ":repository/${EcrRepositoryPrefix}*"
        ), statement["Resource"]


def test_schedules_and_rules_carry_the_stack_name() -> None:
    named = 0
    for function, resource in FUNCTIONS.items():
        for event_name, event in resource["Properties"].get("Events", {}).items():
            if event["Type"] in ("Schedule", "ScheduleV2"):
                name = event["Properties"].get("Name")
                assert name is not None, (function, event_name)
                assert "${AWS::StackName}" in name["Fn::Sub"], (function, event_name)
                named += 1
            if event["Type"] == "EventBridgeRule":
                assert "${AWS::StackName}" in event["Properties"]["RuleName"]["Fn::Sub"]
    assert named >= 4  # gate sweep, edge reconcile, night shrink and restore
    for name, resource in RESOURCES.items():
        if resource["Type"] == "AWS::Events::Rule":
            assert "${AWS::StackName}" in resource["Properties"]["Name"]["Fn::Sub"], name


@pytest.mark.parametrize("function", ["RolloutFunction", "GateFunction"])
def test_lifecycle_moves_may_check_other_rollouts_of_their_app(function: str) -> None:
    # RolloutStore.move mirrors a phase onto the state item or, for a rollout that is neither the
    # newest nor the live one, checks the state in the same transaction (a ConditionCheck).
    app_items = [
        s
        for s in grants(function)
        if _target(s["Resource"]) == "RolloutsTable" and "app#*" in str(s.get("Condition"))
    ]
    actions = {a for s in app_items for a in _listed(s["Action"])}
    assert {"dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"} <= actions, actions


@pytest.mark.parametrize(
    ("queue", "rule"), [("CodeCommitQueue", "CodeCommitPushRule"), ("NotifyQueue", "NotifyRule")]
)
def test_rule_fed_queues_refuse_every_other_sender(queue: str, rule: str) -> None:
    # An Allow for the rule alone restricts nothing: a principal of the account whose own IAM
    # policy allows sqs:SendMessage could still queue a push or a state change.
    policies = [
        r["Properties"]
        for r in RESOURCES.values()
        if r["Type"] == "AWS::SQS::QueuePolicy"
        and {_target(q) for q in r["Properties"]["Queues"]} == {queue}
    ]
    assert len(policies) == 1
    deny = [s for s in policies[0]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert len(deny) == 1
    assert deny[0]["Principal"] == "*" and deny[0]["Action"] == "sqs:SendMessage"
    unless = deny[0]["Condition"]["ArnNotEquals"]
    assert _target(unless["aws:SourceArn"]) == rule
    assert _target(unless["aws:PrincipalArn"]) == "DeployerRoleArn"  # redrives


# What each function's stores read outside its own write keys (store/fleet.py, night.py, lease.py).
READS = {
    "GateFunction": ["edge#fleet", "edge#pin"],
    "RolloutFunction": ["night#*"],
    "HaproxyFunction": ["app#*", "edge#fleet", "edge#lock", "edge#pin"],
}


def test_the_haproxy_function_batch_reads_only_the_apps_items() -> None:
    # Every app's state item in one BatchGetItem per push (store/rollouts.py ``states``).
    batch = [
        s for s in grants("HaproxyFunction") if "dynamodb:BatchGetItem" in _listed(s["Action"])
    ]
    assert len(batch) == 1 and _target(batch[0]["Resource"]) == "RolloutsTable"
    assert batch[0]["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["app#*"]}}
    assert not any(
        "dynamodb:GetItem" in _listed(s["Action"]) and not s.get("Condition")
        for s in grants("HaproxyFunction")
    )


def test_only_the_haproxy_function_writes_the_edge_pin() -> None:
    # A rollback pins (a conditional put), unpin deletes, every push reads: store/pin.py. The
    # gate reads it before any scale-down (gate/execute.py), and only reads it.
    on_pin = {
        function: [
            s
            for s in grants(function)
            if _target(s["Resource"]) == "RolloutsTable" and "edge#pin" in str(s.get("Condition"))
        ]
        for function in FUNCTIONS
    }
    assert {f for f, found in on_pin.items() if found} == {"HaproxyFunction", "GateFunction"}
    (read,) = on_pin["GateFunction"]
    assert _listed(read["Action"]) == ["dynamodb:GetItem"]
    assert read["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["edge#pin"]}
    }
    (statement,) = on_pin["HaproxyFunction"]
    assert sorted(_listed(statement["Action"])) == [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
    ]
    assert statement["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["edge#pin"]}
    }


@pytest.mark.parametrize(("function", "keys"), READS.items())
def test_each_function_may_read_the_records_its_code_reads(function: str, keys: list[str]) -> None:
    readable = {
        str(key)
        for s in grants(function)
        if "dynamodb:GetItem" in _listed(s["Action"]) and _target(s["Resource"]) == "RolloutsTable"
        for condition in [s.get("Condition") or {}]
        for operator, values in condition.items()
        for key in values.get("dynamodb:LeadingKeys", [])
    }
    unconditioned = any(
        "dynamodb:GetItem" in _listed(s["Action"])
        and _target(s["Resource"]) == "RolloutsTable"
        and not s.get("Condition")
        for s in grants(function)
    )
    assert unconditioned or set(keys) <= readable, (function, readable)


def test_only_the_haproxy_function_sends_commands_its_two_documents_to_the_fleet() -> None:
    # The apply document (writes: a release, a reload) and the stats document (reads HAProxy's
    # counters: edge/counters.py), each only on instances that carry the fleet's tag.
    sends = {
        function: [s for s in grants(function) if "ssm:SendCommand" in _listed(s["Action"])]
        for function in FUNCTIONS
    }
    assert {f for f, found in sends.items() if found} == {"HaproxyFunction"}
    statements = sends["HaproxyFunction"]
    assert all(_listed(s["Action"]) == ["ssm:SendCommand"] for s in statements)
    resources = sorted(_target(s["Resource"]) for s in statements)
    document = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/${%s}"
    instance = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"
    assert resources == sorted(
        [document % "EdgeApplyConfigDocument", document % "EdgeStatsDocument", instance]
    )
    (on_instances,) = [s for s in statements if _target(s["Resource"]) == instance]
    assert on_instances["Condition"] == {
        "StringEquals": {"ssm:resourceTag/greenlight:edge-fleet": {"Ref": "EdgeFleetName"}}
    }
    variables = FUNCTIONS["HaproxyFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["GREENLIGHT_EDGE_STATS_DOCUMENT"] == {"Ref": "EdgeStatsDocument"}


def test_the_stats_document_only_reads_the_admin_socket() -> None:
    content = RESOURCES["EdgeStatsDocument"]["Properties"]["Content"]
    (step,) = content["mainSteps"]
    script = "\n".join(step["inputs"]["runCommand"])
    assert set(content["parameters"]) == {"Backends", "ConfigRoot"}
    # One connection to the admin socket, with "show" commands only; no AWS call, no master
    # socket (reloads), no file written.
    assert script.count("socat") == 1 and "unix-connect:$ADMIN" in script
    sent = [line for line in script.splitlines() if "commands=" in line]
    assert sent and all(re.search(r"show (info|stat)", line) for line in sent)
    assert set(re.findall(r"show [a-z]+", script)) == {"show info", "show stat"}
    for word in ("aws ", "MASTER", "master", "reload", "disable", "enable", "shutdown", "rm "):
        assert word not in script, word
    assert not re.search(r"[^2]>\s*\"?\$", script)  # no redirect into a file
