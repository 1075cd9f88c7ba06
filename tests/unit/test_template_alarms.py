"""template.yaml's alarms and dashboard: every dead-letter queue and every function has its
alarm, every alarm notifies the topic, and the dashboard's body is JSON once substituted. A queue
or a function added without an alarm fails here."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from greenlight_sandbox.fleet import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def _refs(node: Any) -> set[str]:
    """The logical ids ``node`` names with GetAtt (``X.Arn``, ``[X, Arn]``) or Ref."""
    if isinstance(node, dict):
        found: set[str] = set()
        for key, value in node.items():
            if key in ("Fn::GetAtt", "!GetAtt"):
                target = value if isinstance(value, str) else value[0]
                found.add(str(target).split(".")[0])
            elif key in ("Ref", "!Ref"):
                found.add(str(value))
            else:
                found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def _dead_letter_targets(node: Any) -> set[str]:
    """Queues named as somewhere to put what failed: redrive policies, event source and
    EventBridge target failure destinations."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("deadLetterTargetArn", "OnFailure", "DeadLetterConfig"):
                found |= _refs(value)
            else:
                found |= _dead_letter_targets(value)
    elif isinstance(node, list):
        for value in node:
            found |= _dead_letter_targets(value)
    return found


QUEUES = of_type("AWS::SQS::Queue")
DEAD_LETTER_QUEUES = sorted(
    (_dead_letter_targets(RESOURCES) & set(QUEUES)) | {q for q in QUEUES if "DeadLetter" in q}
)
FUNCTIONS = sorted(of_type("AWS::Serverless::Function"))
ALARMS = of_type("AWS::CloudWatch::Alarm")


def alarms_on(namespace: str, metric: str, dimension: str, resource: str) -> list[str]:
    return [
        name
        for name, alarm in ALARMS.items()
        if alarm["Properties"]["Namespace"] == namespace
        and alarm["Properties"]["MetricName"] == metric
        and any(
            d["Name"] == dimension and _refs(d["Value"]) == {resource}
            for d in alarm["Properties"]["Dimensions"]
        )
    ]


def test_the_lists_are_what_the_template_has():
    assert {"RolloutDeadLetterQueue", "GateDeadLetterQueue", "AnnounceDeadLetterQueue"} <= set(
        DEAD_LETTER_QUEUES
    )
    assert {"RolloutFunction", "AnnounceFunction", "NightFunction"} <= set(FUNCTIONS)


@pytest.mark.parametrize("queue", DEAD_LETTER_QUEUES)
def test_every_dead_letter_queue_has_an_alarm_when_it_is_not_empty(queue):
    (name,) = alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue)
    props = ALARMS[name]["Properties"]
    assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert ALARMS[name].get("Condition") == QUEUES[queue].get("Condition")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_has_an_errors_alarm(function):
    (name,) = alarms_on("AWS/Lambda", "Errors", "FunctionName", function)
    props = ALARMS[name]["Properties"]
    assert (props["Statistic"], props["Threshold"]) == ("Sum", 0)
    assert ALARMS[name].get("Condition") == RESOURCES[function].get("Condition")


@pytest.mark.parametrize(
    "metric", ["PhaseDeadlineExpired", "FleetDegraded", "NightRestoreIncomplete"]
)
def test_the_greenlight_metrics_alarms_watch_this_stacks_service(metric):
    (alarm,) = [a for a in ALARMS.values() if a["Properties"]["MetricName"] == metric]
    props = alarm["Properties"]
    assert props["Namespace"] == "Greenlight"
    assert props["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]
    env = RESOURCES["AnnounceFunction"]["Properties"]["Environment"]["Variables"]
    assert env["GREENLIGHT_METRICS_SERVICE"] == {"Ref": "AWS::StackName"}


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_every_alarm_notifies_the_topic_on_alarm_and_ok(name):
    props = ALARMS[name]["Properties"]
    topics = of_type("AWS::SNS::Topic")
    assert props["AlarmActions"] == props["OKActions"]
    assert _refs(props["AlarmActions"]) and _refs(props["AlarmActions"]) <= set(topics)
    assert props["TreatMissingData"] in ("notBreaching", "ignore")


def test_the_dashboard_body_is_json_once_substituted():
    (dashboard,) = of_type("AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    text = body["Fn::Sub"] if isinstance(body, dict) else body
    named = set(re.findall(r"\$\{([A-Za-z0-9]+)\.[A-Za-z]+\}", text))
    assert named and named <= set(RESOURCES)  # ${Queue.QueueName}: resources that exist
    assert set(DEAD_LETTER_QUEUES) <= named  # each dead-letter queue's depth is shown
    substituted = re.sub(r"\$\{!", "${", re.sub(r"\$\{[A-Za-z0-9:.]+\}", "x", text))
    widgets = json.loads(substituted)["widgets"]
    assert all(w["properties"]["metrics"] for w in widgets)


def test_the_alarms_topic_is_encrypted_with_a_key_cloudwatch_may_use():
    # CloudWatch cannot publish to a topic under the AWS-managed alias/aws/sns key: the alarms'
    # topic needs its own key whose policy lets cloudwatch.amazonaws.com encrypt.
    alarms = of_type("AWS::CloudWatch::Alarm")
    topics = set().union(*(_refs(a["Properties"].get("AlarmActions", [])) for a in alarms.values()))
    assert topics, "no alarm notifies a topic"
    for topic in topics:
        key = RESOURCES[topic]["Properties"]["KmsMasterKeyId"]
        (key_id,) = _refs(key)
        statements = RESOURCES[key_id]["Properties"]["KeyPolicy"]["Statement"]
        allowed = [
            s
            for s in statements
            if s.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"
            and s["Effect"] == "Allow"
        ]
        assert allowed, f"{key_id}: CloudWatch may not use it"
        assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(allowed[0]["Action"])
