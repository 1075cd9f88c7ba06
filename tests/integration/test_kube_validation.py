"""The stand-in validates writes as a real apiserver does (kube/validation.py), over HTTP.

Messages, reasons and field paths follow the apiserver's sources, quoted in each docstring
(K/ kubernetes/kubernetes, AM/ kubernetes/apimachinery, AS/ kubernetes/apiserver):
field/errors.go renders ``<field>: <Type>: <value>: <detail>``; errors.NewInvalid joins several
as ``<Kind>.<group> "<name>" is invalid: [e1, e2]``, one without brackets.
"""

from __future__ import annotations

import json
import types

import pytest
import urllib3
from kubernetes import client as k8s

from greenlight.cluster.rest import KubeRest
from greenlight.colour import Colour
from greenlight.rollout.deploy import Action, apply_service
from greenlight.rollout.workload import candidate_service
from greenlight_sandbox.kube import validation
from tests.conftest import KUBE_TOKEN

DEPLOYMENTS = "/apis/apps/v1/namespaces/shop/deployments"
SERVICES = "/api/v1/namespaces/shop/services"
PODS = "/api/v1/namespaces/shop/pods"
PDBS = "/apis/policy/v1/namespaces/shop/poddisruptionbudgets"
STRATEGIC = "application/strategic-merge-patch+json"


def call(kube, method, path, body=None, content_type="application/json"):
    raw = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    response = urllib3.PoolManager(ca_certs=kube.ca_file).request(
        method,
        kube.url + path,
        body=raw,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {KUBE_TOKEN}"},
    )
    return response.status, json.loads(response.data), response.headers


def deployment(name="web", **spec):
    labels = {"app": name}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "web:1"}]},
            },
        },
    }
    body["spec"].update(spec)
    return body


def pod(name="p", **spec):
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "web:1"}], **spec},
    }


def service(name="s", ports=None, **spec):
    return {"metadata": {"name": name}, "spec": {"ports": ports or [{"port": 80}], **spec}}


def refused(kube, path, body, method="POST", content_type="application/json"):
    code, status, _ = call(kube, method, path, body, content_type)
    assert code == 422, status
    assert status["reason"] == "Invalid" and status["status"] == "Failure"
    return status


def causes(status):
    return [(c["reason"], c["field"], c["message"]) for c in status["details"]["causes"]]


def test_containers_image_names_and_ports(kube):
    """K/pkg/apis/core/validation/validation.go validateContainers: no containers is
    ``Required value``; validateContainerCommon: image required, name a DNS-1123 label;
    duplicate names ``Duplicate value``; validateContainerPorts: IsValidPortNum."""
    body = deployment()
    body["spec"]["template"]["spec"]["containers"] = []
    status = refused(kube, DEPLOYMENTS, body)
    assert status["message"] == (
        'Deployment.apps "web" is invalid: spec.template.spec.containers: Required value'
    )
    assert status["details"]["kind"] == "Deployment" and status["details"]["group"] == "apps"
    assert causes(status) == [
        ("FieldValueRequired", "spec.template.spec.containers", "Required value")
    ]

    body = deployment()
    body["spec"]["template"]["spec"]["containers"] = [
        {"name": "c"},
        {"name": "c", "image": "x:1", "ports": [{"containerPort": 70000}]},
        {"name": "Bad_Name", "image": "x:1"},
    ]
    status = refused(kube, DEPLOYMENTS, body)
    where = "spec.template.spec.containers"
    got = causes(status)
    assert ("FieldValueRequired", f"{where}[0].image", "Required value") in got
    assert ("FieldValueDuplicate", f"{where}[1].name", 'Duplicate value: "c"') in got
    assert (
        "FieldValueInvalid",
        f"{where}[1].ports[0].containerPort",
        "Invalid value: 70000: must be between 1 and 65535, inclusive",
    ) in got
    bad_name = [m for r, f, m in got if f == f"{where}[2].name"]
    assert bad_name == [
        'Invalid value: "Bad_Name": a lowercase RFC 1123 label must consist of lower case '
        "alphanumeric characters or '-', and must start and end with an alphanumeric character "
        "(e.g. 'my-name',  or '123-abc', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    ]
    assert status["message"].startswith('Deployment.apps "web" is invalid: [')
    assert status["message"].endswith("]")

    # the same rules for a bare pod
    status = refused(kube, PODS, pod(containers=[{"name": "c", "image": ""}]))
    assert causes(status) == [("FieldValueRequired", "spec.containers[0].image", "Required value")]


def test_labels_keys_and_values(kube):
    """AM/pkg/apis/meta/v1/validation ValidateLabels: the cause's field is the map
    (``metadata.labels``); AM/pkg/util/validation IsQualifiedName, IsValidLabelValue."""
    body = pod()
    body["metadata"]["labels"] = {"ok": "yes", "bad key": "v", "k": "-bad-value-"}
    got = causes(refused(kube, PODS, body))
    assert (
        "FieldValueInvalid",
        "metadata.labels",
        'Invalid value: "bad key": name part must consist of alphanumeric characters, '
        "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
        "'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    ) in got
    assert (
        "FieldValueInvalid",
        "metadata.labels",
        'Invalid value: "-bad-value-": a valid label must be an empty string or consist of '
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
        "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    ) in got
    assert len(got) == 2

    long_value = {"metadata": {"name": "p2", "labels": {"k": "v" * 64}}, "spec": pod()["spec"]}
    got = causes(refused(kube, PODS, long_value))
    assert got[0][2].endswith("must be no more than 63 characters")


def test_service_ports(kube):
    """K/pkg/apis/core/validation/validation.go ValidateService: ``spec.ports`` required;
    validateServicePort: names required when several, DNS-1123 labels, unique; duplicate
    (protocol, port) pairs are ``Duplicate value: core.ServicePort{...}``; port numbers."""
    status = refused(kube, SERVICES, {"metadata": {"name": "s"}, "spec": {"ports": []}})
    assert status["message"] == 'Service "s" is invalid: spec.ports: Required value'
    assert "group" not in status["details"]

    status = refused(kube, SERVICES, service(ports=[{"port": 80}, {"port": 81}]))
    assert causes(status) == [
        ("FieldValueRequired", "spec.ports[0].name", "Required value"),
        ("FieldValueRequired", "spec.ports[1].name", "Required value"),
    ]

    status = refused(
        kube,
        SERVICES,
        service(ports=[{"name": "http", "port": 80}, {"name": "http", "port": 80}]),
    )
    assert status["message"] == (
        'Service "s" is invalid: [spec.ports[1].name: Duplicate value: "http", '
        'spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", '
        "AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, "
        'StrVal:""}, NodePort:0}]'
    )
    assert [c["reason"] for c in status["details"]["causes"]] == ["FieldValueDuplicate"] * 2

    status = refused(kube, SERVICES, service(ports=[{"port": 65536, "targetPort": 8080}]))
    assert causes(status) == [
        (
            "FieldValueInvalid",
            "spec.ports[0].port",
            "Invalid value: 65536: must be between 1 and 65535, inclusive",
        )
    ]
    # Service names are DNS-1035 labels (ValidateServiceName): no leading digit
    status = refused(kube, SERVICES, service(name="1web"))
    assert causes(status)[0][1] == "metadata.name"
    assert "a DNS-1035 label must consist of" in causes(status)[0][2]


def test_deployment_strategy_and_pdb_rules(kube):
    """K/pkg/apis/apps/validation ValidateRollingUpdateDeployment: ``may not be 0 when
    `maxSurge` is 0``; K/pkg/apis/policy/validation ValidatePodDisruptionBudgetSpec:
    ``minAvailable and maxUnavailable cannot be both set``."""
    body = deployment(
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}
    )
    status = refused(kube, DEPLOYMENTS, body)
    assert status["message"] == (
        'Deployment.apps "web" is invalid: spec.strategy.rollingUpdate.maxUnavailable: '
        "Invalid value: 0: may not be 0 when `maxSurge` is 0"
    )
    body["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": "0%", "maxUnavailable": "110%"}
    got = causes(refused(kube, DEPLOYMENTS, body))
    assert got == [
        (
            "FieldValueInvalid",
            "spec.strategy.rollingUpdate.maxUnavailable",
            "Invalid value: 110%: must not be greater than 100%",
        )
    ]

    pdb = {
        "metadata": {"name": "b"},
        "spec": {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"a": "b"}}},
    }
    status = refused(kube, PDBS, pdb)
    assert status["message"].startswith('PodDisruptionBudget.policy "b" is invalid: spec: ')
    assert status["message"].endswith(": minAvailable and maxUnavailable cannot be both set")
    assert causes(status)[0][:2] == ("FieldValueInvalid", "spec")


def test_immutable_fields(kube):
    """ValidatePodUpdate (only images, a lower activeDeadlineSeconds, added tolerations),
    validateUpgradeDowngradeClusterIPs (``may not change once set``), apps/v1 selector
    immutability (ValidateImmutableField: ``field is immutable``), ValidateNodeUpdate."""
    assert call(kube, "POST", PODS, pod())[0] == 201
    code, _, _ = call(
        kube,
        "PATCH",
        PODS + "/p",
        {"spec": {"containers": [{"name": "c", "image": "web:2"}]}},
        STRATEGIC,
    )
    assert code == 200  # an image may change
    status = refused(
        kube, PODS + "/p", {"spec": {"terminationGracePeriodSeconds": 5}}, "PATCH", STRATEGIC
    )
    assert causes(status)[0][:2] == ("FieldValueForbidden", "spec")
    assert causes(status)[0][2].startswith(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    )

    code, created, _ = call(kube, "POST", SERVICES, service())
    assert code == 201
    ip = created["spec"]["clusterIP"]
    status = refused(
        kube, SERVICES + "/s", {"spec": {"clusterIP": "10.96.9.9"}}, "PATCH", STRATEGIC
    )
    assert causes(status) == [
        (
            "FieldValueInvalid",
            "spec.clusterIPs[0]",
            'Invalid value: []string{"10.96.9.9"}: may not change once set',
        )
    ]
    code, same, _ = call(kube, "PATCH", SERVICES + "/s", {"spec": {"clusterIP": ip}}, STRATEGIC)
    assert code == 200 and same["spec"]["clusterIP"] == ip

    assert call(kube, "POST", DEPLOYMENTS, deployment())[0] == 201
    changed = deployment()
    changed["spec"]["selector"] = {"matchLabels": {"app": "web", "v": "2"}}
    changed["spec"]["template"]["metadata"]["labels"] = {"app": "web", "v": "2"}
    status = refused(kube, DEPLOYMENTS + "/web", changed, "PUT")
    assert causes(status) == [
        (
            "FieldValueInvalid",
            "spec.selector",
            'Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "v":"2"}, '
            "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
        )
    ]

    status = refused(
        kube, "/api/v1/nodes/worker-1", {"spec": {"providerID": "aws:///x/y"}}, "PATCH", STRATEGIC
    )
    assert causes(status)[0][:2] == ("FieldValueForbidden", "spec.providerID")
    status = refused(
        kube,
        "/api/v1/nodes/worker-1",
        {"spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}},
        "PATCH",
        "application/merge-patch+json",
    )
    assert causes(status) == [
        (
            "FieldValueNotSupported",
            "metadata.taints[0].effect",
            'Unsupported value: "Sometimes": supported values: "NoSchedule", '
            '"PreferNoSchedule", "NoExecute"',
        )
    ]
    code, cordoned, _ = call(
        kube, "PATCH", "/api/v1/nodes/worker-1", {"spec": {"unschedulable": True}}, STRATEGIC
    )
    assert code == 200 and cordoned["spec"]["unschedulable"] is True


def test_field_validation_three_ways(kube):
    """AS/pkg/endpoints/handlers/rest.go fieldValidation: absent means Warn. Strict: 400
    ``strict decoding error`` (create.go transformDecodeError); Warn: a ``Warning: 299``
    header; Ignore: silent. The unknown field is dropped in Warn and Ignore."""
    body = service(name="strict")
    body["spec"]["portz"] = 1
    code, status, _ = call(kube, "POST", SERVICES + "?fieldValidation=Strict", body)
    assert code == 400 and status["reason"] == "BadRequest"
    assert status["message"] == (
        'Service in version "v1" cannot be handled as a Service: strict decoding error: '
        'unknown field "spec.portz"'
    )

    body["metadata"]["name"] = "warned"
    code, created, headers = call(kube, "POST", SERVICES, body)  # no directive: Warn
    assert code == 201 and "portz" not in created["spec"]
    assert headers.get("Warning") == '299 - "unknown field \\"spec.portz\\""'

    body["metadata"]["name"] = "ignored"
    code, created, headers = call(kube, "POST", SERVICES + "?fieldValidation=Ignore", body)
    assert code == 201 and "portz" not in created["spec"] and "Warning" not in headers

    code, status, _ = call(
        kube, "PATCH", SERVICES + "/ignored?fieldValidation=Strict", {"spec": {"x": 1}}, STRATEGIC
    )
    assert code == 400 and status["message"] == 'strict decoding error: unknown field "spec.x"'

    # A field given twice (JSON allows it; Strict does not): the last value under Warn/Ignore.
    twice = json.dumps(service(name="twice")).replace(
        '"spec": {', '"spec": {"type": "NodePort", ', 1
    )
    twice = twice.replace('"spec": {', '"spec": {"type": "ClusterIP", ', 1).encode()
    code, status, _ = call(kube, "POST", SERVICES + "?fieldValidation=Strict", twice)
    assert code == 400 and status["message"] == (
        'Service in version "v1" cannot be handled as a Service: strict decoding error: '
        'duplicate field "type"'
    )
    code, created, headers = call(kube, "POST", SERVICES, twice)
    assert code == 201 and created["spec"]["type"] == "NodePort"
    assert headers.get("Warning") == r'299 - "duplicate field \"type\""'
    code, status, _ = call(
        kube,
        "PATCH",
        SERVICES + "/twice?fieldValidation=Strict",
        b'{"metadata": {"labels": {"a": "1"}, "labels": {"a": "2"}}}',
        STRATEGIC,
    )
    assert code == 400 and status["message"] == 'strict decoding error: duplicate field "labels"'

    code, status, _ = call(kube, "POST", SERVICES + "?fieldValidation=Loose", service(name="l"))
    assert code == 422
    assert status["message"] == (
        'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Loose": '
        'supported values: "", "Ignore", "Strict", "Warn"'
    )


def test_dry_run_writes_nothing(kube):
    """dryRun=All: validated and answered as if written, nothing stored, no resourceVersion
    bump (AS/pkg/registry/generic/registry/dryrun.go); another value is 422
    (AM/pkg/apis/meta/v1/validation ValidateDryRun)."""
    rv = kube.cluster.rv
    code, created, _ = call(kube, "POST", SERVICES + "?dryRun=All", service(name="dry"))
    assert code == 201 and created["metadata"]["uid"] and "resourceVersion" not in created
    assert created["spec"]["clusterIP"]
    assert kube.cluster.find("services", "shop", "dry") is None
    bad = deployment()
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    assert refused(kube, DEPLOYMENTS + "?dryRun=All", bad)
    assert kube.cluster.rv == rv

    assert call(kube, "POST", SERVICES, service(name="wet"))[0] == 201
    before = kube.cluster.find("services", "shop", "wet")["metadata"]["resourceVersion"]
    code, patched, _ = call(
        kube, "PATCH", SERVICES + "/wet?dryRun=All", {"metadata": {"labels": {"a": "b"}}}, STRATEGIC
    )
    assert code == 200 and patched["metadata"]["labels"] == {"a": "b"}
    assert patched["metadata"]["resourceVersion"] == before
    stored = kube.cluster.find("services", "shop", "wet")
    assert "labels" not in stored["metadata"] and stored["metadata"]["resourceVersion"] == before
    code, _, _ = call(kube, "DELETE", SERVICES + "/wet?dryRun=All")
    assert code == 200 and kube.cluster.find("services", "shop", "wet") is not None

    code, status, _ = call(kube, "POST", SERVICES + "?dryRun=Some", service(name="x"))
    assert code == 422 and causes(status) == [
        (
            "FieldValueNotSupported",
            "dryRun",
            'Unsupported value: []string{"Some"}: supported values: "All"',
        )
    ]


def test_dry_run_eviction_keeps_the_pod(kube):
    """eviction.go propagateDryRun: the query's dryRun reaches the delete; nothing happens."""
    assert call(kube, "POST", PODS, pod(name="e"))[0] == 201
    code, _, _ = call(kube, "POST", PODS + "/e/eviction?dryRun=All", {"metadata": {"name": "e"}})
    assert code == 201
    assert "deletionTimestamp" not in kube.cluster.find("pods", "shop", "e")["metadata"]
    code, status, _ = call(kube, "POST", PODS + "/e/eviction", {"metadata": {"name": "f"}})
    assert code == 400 and status["message"] == (
        "name in URL does not match name in Eviction object"
    )


def test_apply_service_with_a_new_service_port(kube, kube_api, function_api):
    """The product's fix: apply_service used to send a strategic merge patch, which merges
    Service ports by ``port``; with a new service_port the Service would hold two ports both
    named ``http`` (422 on a real apiserver). It now replaces the list and keeps the
    nodePort."""
    kube_rest = KubeRest(function_api("rollout"))  # the rollout function's identity
    app = types.SimpleNamespace(name="web", namespace="shop", service_port=80, container_port=8080)
    first = apply_service(kube_rest, candidate_service(app, colour=Colour.BLUE), dry_run=False)
    assert first.action is Action.CREATED
    node_port = kube.cluster.find("services", "shop", "web-blue")["spec"]["ports"][0]["nodePort"]

    app.service_port = 8081
    again = apply_service(kube_rest, candidate_service(app, colour=Colour.BLUE), dry_run=False)
    assert again.action is Action.REPLACED
    ports = k8s.CoreV1Api(kube_api).read_namespaced_service("web-blue", "shop").spec.ports
    assert [(p.name, p.port, p.node_port) for p in ports] == [("http", 8081, node_port)]


def test_pure_functions():
    """validate_create / validate_update are pure: plain dicts in, field errors out."""
    errors = validation.validate_create(
        "PodDisruptionBudget", {"metadata": {"name": "b"}, "spec": {"maxUnavailable": "x"}}
    )
    assert [(e.reason, e.field) for e in errors] == [("FieldValueInvalid", "spec.maxUnavailable")]
    assert (
        validation.validate_update(
            "Namespace", {"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}
        )[0].message
        == 'Invalid value: "b": field is immutable'
    )


@pytest.mark.parametrize("name", ["web", "a.b", "x-1"])
def test_valid_pods_are_accepted(kube, name):
    assert call(kube, "POST", PODS, pod(name=name))[0] == 201
