"""The Kubernetes access: one group per function in template.yaml's access entries, the exact
grants docs/rbac.yaml gives each group, and the renderer behind ``greenlight rbac``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from greenlight_sandbox.cli import main as cli
from greenlight_sandbox.fleet import load_template
from greenlight_sandbox.rbac_manifest import TEMPLATE, RbacError, namespaces_of, render

ROOT = Path(__file__).resolve().parents[2]
ACCESS_ENTRIES = {
    "RolloutAccessEntry": ("RolloutFunctionRole", "greenlight-rollout"),
    "GateAccessEntry": ("GateFunctionRole", "greenlight-gate"),
    "HaproxyAccessEntry": ("HaproxyFunctionRole", "greenlight-haproxy"),
    "NightAccessEntry": ("NightFunctionRole", "greenlight-night"),
}
# What each function's code asks of the API server (layers/greenlight/greenlight/...), and so
# all its group may do: (scope, apiGroup, resource, verb). "namespace" grants come from Roles
# rendered into each app namespace; "cluster" ones from ClusterRoles.
GRANTS = {
    "greenlight-rollout": {
        # rollout/deploy.py: read, create, replace the slot's Deployment; cluster/slots.py:
        # scale a slot it took back to zero (JSON patch).
        *(("namespace", "apps", "deployments", v) for v in ("get", "create", "update", "patch")),
        # rollout/deploy.py: read, create, merge-patch the slot's Service.
        *(("namespace", "", "services", v) for v in ("get", "create", "patch")),
        # rollout/service.py: the capacity interlock lists every node and every pod.
        ("cluster", "", "nodes", "list"),
        ("cluster", "", "pods", "list"),
    },
    "greenlight-gate": {
        # gate/observe.py, gate/execute.py: read the slots; cluster/slots.py: scale down.
        ("namespace", "apps", "deployments", "get"),
        ("namespace", "apps", "deployments", "patch"),
        # gate/observe.py: the app's pods, by label, in its namespace.
        ("namespace", "", "pods", "list"),
    },
    "greenlight-haproxy": {
        ("cluster", "", "nodes", "list"),  # edge/state.py: the backends' servers
        ("namespace", "", "services", "get"),  # edge/state.py: each slot's NodePort
    },
    "greenlight-night": {
        ("cluster", "", "nodes", "list"),  # night/service.py: the group's nodes
        ("cluster", "", "nodes", "patch"),  # night/service.py mark, night/drain.py cordon
        ("cluster", "", "pods", "list"),  # the plan; drain.py waits (pods of any namespace)
        ("cluster", "", "pods", "get"),  # drain.py reads each pod before evicting it
        ("cluster", "", "pods/eviction", "create"),  # drain.py
        ("cluster", "policy", "poddisruptionbudgets", "list"),  # the plan
    },
}


def _documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def grants(documents: list[dict[str, Any]]) -> dict[str, set[tuple[str, ...]]]:
    """Per group: (scope, apiGroup, resource, verb) its bindings give it."""
    roles = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in documents
    }
    found: dict[str, set[tuple[str, ...]]] = {}
    for binding in documents:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        namespace = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        scope = "cluster" if binding["kind"] == "ClusterRoleBinding" else "namespace"
        for subject in binding["subjects"]:
            assert subject["kind"] == "Group", subject
            mine = found.setdefault(subject["name"], set())
            for rule in role["rules"]:
                assert not rule.get("resourceNames"), rule
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        mine |= {(scope, group, resource, verb) for verb in rule["verbs"]}
    return found


def test_each_access_entry_maps_its_role_to_its_own_group():
    resources = load_template()["Resources"]
    entries = {k: v for k, v in resources.items() if v["Type"] == "AWS::EKS::AccessEntry"}
    assert set(entries) == set(ACCESS_ENTRIES)
    for name, (role, group) in ACCESS_ENTRIES.items():
        props = entries[name]["Properties"]
        assert props["PrincipalArn"] == {"Fn::GetAtt": f"{role}.Arn"}, name
        assert props["KubernetesGroups"] == [group], name
        assert not props.get("AccessPolicies"), name  # no EKS-managed policy: RBAC alone


def test_docs_rbac_yaml_grants_each_group_exactly_what_its_function_asks():
    assert grants(_documents(TEMPLATE.read_text())) == GRANTS


def test_nothing_is_granted_that_no_function_uses():
    rules = [
        (group, resource, verb) for grant in GRANTS.values() for _, group, resource, verb in grant
    ]
    assert not [r for r in rules if r[2] in ("watch", "delete", "deletecollection", "*")]
    assert not [r for r in rules if r[1] in ("deployments/scale", "endpointslices", "*")]
    text = TEMPLATE.read_text()
    assert "*" not in "".join(line.split("#")[0] for line in text.splitlines())


def test_rendering_repeats_the_namespaced_part_for_each_namespace():
    rendered = _documents(render(TEMPLATE.read_text(), ["shop", "blog"]))
    template = _documents(TEMPLATE.read_text())
    cluster = [d for d in template if d["kind"].startswith("Cluster")]
    namespaced = [d for d in template if not d["kind"].startswith("Cluster")]
    assert rendered[: len(cluster)] == cluster  # the cluster-scoped part once, as it is
    assert len(rendered) == len(cluster) + 2 * len(namespaced)
    for doc in rendered[len(cluster) :]:
        assert doc["kind"] in ("Role", "RoleBinding")
    spaces = [d["metadata"]["namespace"] for d in rendered[len(cluster) :]]
    assert spaces == ["shop"] * len(namespaced) + ["blog"] * len(namespaced)
    per_namespace = grants(rendered)
    assert per_namespace == GRANTS  # the same grants, now in shop and blog
    assert "APP_NAMESPACE" not in render(TEMPLATE.read_text(), ["shop"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["kube-system"], "namespace 'kube-system': kube-* namespaces are the cluster's own"),
        (["shop", "kube-public"], "namespace 'kube-public': kube-* namespaces"),
        (["Shop"], "namespace 'Shop': not a namespace name"),
        (["shop_2"], "namespace 'shop_2': not a namespace name"),
        (["-shop"], "namespace '-shop': not a namespace name"),
        (["a" * 64], f"namespace '{'a' * 64}': not a namespace name"),
        ([], "namespaces: name at least one app namespace"),
        ([" , "], "namespaces: name at least one app namespace"),
    ],
)
def test_bad_namespaces_are_refused_by_name(args, message):
    with pytest.raises(RbacError) as caught:
        render(TEMPLATE.read_text(), args)
    assert str(caught.value).startswith(message)


def test_namespaces_may_be_comma_separated_as_the_stack_parameter_is():
    assert namespaces_of(["shop,blog", "shop", " api "]) == ["shop", "blog", "api"]


def test_a_template_of_another_form_is_refused():
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role"}
    with pytest.raises(RbacError, match=r"document 0 \(Role\): expected"):
        render(yaml.safe_dump({**role, "metadata": {"name": "r", "namespace": "shop"}}), ["shop"])
    with pytest.raises(RbacError, match=r"document 0 \(Deployment\)"):
        render(yaml.safe_dump({"kind": "Deployment", "metadata": {"name": "d"}}), ["shop"])


def test_greenlight_rbac_prints_the_manifests(capsys):
    assert cli(["rbac", "shop", "blog"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Greenlight's RBAC (docs/rbac.yaml), rendered by `greenlight rbac`")
    assert _documents(out) == _documents(render(TEMPLATE.read_text(), ["shop", "blog"]))
    assert cli(["rbac", "kube-system"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("greenlight rbac: namespace 'kube-system': kube-*")


def test_the_readme_applies_the_rendered_rbac():
    readme = (ROOT / "README.md").read_text()
    assert "kubectl apply -f docs/rbac.yaml" not in readme
    assert "greenlight rbac" in readme
