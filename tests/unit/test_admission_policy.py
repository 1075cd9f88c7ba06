"""docs/admission-policy.yaml: ValidatingAdmissionPolicies that narrow what Greenlight's
identities may write, in the form the API server takes (schema of Kubernetes 1.37)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
import yaml

from greenlight.cluster.names import slot_name
from greenlight.colour import Colour
from greenlight_sandbox.fleet import load_template

POLICY = Path(__file__).resolve().parents[2] / "docs" / "admission-policy.yaml"


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(POLICY.read_text()) if d]


def policies() -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d for d in documents() if d["kind"] == "ValidatingAdmissionPolicy"
    }


def expressions(policy: dict[str, Any]) -> list[str]:
    return [" ".join(v["expression"].split()) for v in policy["spec"]["validations"]]


def test_the_file_holds_two_policies_each_bound_to_deny():
    docs = documents()
    assert [(d["apiVersion"], d["kind"]) for d in docs] == [
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"),
    ]
    bindings = {d["spec"]["policyName"]: d for d in docs if d["kind"].endswith("Binding")}
    assert set(bindings) == set(policies()) == {"greenlight-slots", "greenlight-pods"}
    for binding in bindings.values():
        assert binding["spec"]["validationActions"] == ["Deny"]
        assert "matchResources" not in binding["spec"]  # every namespace
    for policy in policies().values():
        assert policy["spec"]["failurePolicy"] == "Fail"


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_each_document_validates_against_the_api_schema(doc):
    kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_the_policies_apply_to_the_groups_of_the_access_entries_only():
    resources = load_template()["Resources"]
    groups = sorted(
        g
        for r in resources.values()
        if r["Type"] == "AWS::EKS::AccessEntry"
        for g in r["Properties"]["KubernetesGroups"]
    )
    for policy in policies().values():
        [condition] = policy["spec"]["matchConditions"]
        named = re.findall(r"'(greenlight-[a-z]+)'", condition["expression"])
        assert sorted(named) == groups
        assert "in request.userInfo.groups" in condition["expression"]


def test_only_slot_objects_may_be_written():
    slots = policies()["greenlight-slots"]
    rules = slots["spec"]["matchConstraints"]["resourceRules"]
    assert {(r["apiGroups"][0], r["resources"][0]) for r in rules} == {
        ("apps", "deployments"),
        ("", "services"),
    }
    [name_rule] = [e for e in expressions(slots) if "object.metadata.name" in e]
    pattern = re.search(r"matches\('([^']+)'\)", name_rule)
    assert pattern is not None and pattern.group(1) == "^[a-z0-9-]+-(blue|green)$"
    name = re.compile(pattern.group(1))
    app = SimpleNamespace(name="shop-web")
    assert all(name.search(slot_name(app, colour)) for colour in Colour)
    for other in ("coredns", "shop", "shop-blue-x", "shop-Blue", "kube-proxy", "-blue x"):
        assert not name.search(other), other
    assert any("externalIPs" in e for e in expressions(slots))


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ("privileged containers", "c.securityContext.privileged == false"),
        ("added capabilities", "size(c.securityContext.capabilities.add) == 0"),
        ("hostPath volumes", "variables.pod.volumes.all(v, !has(v.hostPath))"),
        ("hostNetwork", "variables.pod.hostNetwork == false"),
        ("hostPID", "variables.pod.hostPID == false"),
        ("hostIPC", "variables.pod.hostIPC == false"),
    ],
)
def test_each_pod_rule_has_its_cel_expression(rule, needle):
    pods = policies()["greenlight-pods"]
    assert [e for e in expressions(pods) if needle in e], rule
    variables = {v["name"]: " ".join(v["expression"].split()) for v in pods["spec"]["variables"]}
    assert variables["pod"] == "object.spec.template.spec"
    assert "variables.pod.initContainers" in variables["containers"]  # init containers too
