"""The stand-in's HTTPS, tokens, RBAC, throttling and HTTP robustness, and the product's
request path (greenlight.cluster) against them."""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from greenlight.cluster import access
from greenlight.cluster.access import api_client, eks_configuration
from greenlight.cluster.eks_token import EksTokenSource
from greenlight.cluster.errors import Forbidden, TooManyRequests, Unauthorized, Unavailable
from greenlight.cluster.rest import KubeRest
from greenlight.errors import PermanentError, TemporaryError
from greenlight.settings import ClusterSettings
from greenlight_sandbox.kube import KubeStandIn
from greenlight_sandbox.kube.auth import Identity
from greenlight_sandbox.kube.kinds import kind_named
from greenlight_sandbox.resources import kubeconfig
from greenlight_sandbox.sandbox import function_group, function_identity, function_user
from tests.conftest import KUBE_FUNCTION_TOKENS, KUBE_TOKEN

ROLLOUT_TOKEN = KUBE_FUNCTION_TOKENS["rollout"]  # reads nodes and the slots' Deployments
ROLLOUT_USER = function_user("rollout")

ROOT = Path(__file__).resolve().parents[2]


def product_rest(aws, kube, token, *, ca=True):
    """KubeRest through the product's kubeconfig mode (a secret in moto's Secrets Manager)."""
    sm = aws.client("secretsmanager")
    name = f"kc-{time.monotonic_ns()}"
    sm.create_secret(
        Name=name, SecretString=kubeconfig(kube.url, token, kube.ca_pem if ca else None)
    )
    settings = ClusterSettings(mode="kubeconfig", kubeconfig_secret=name)
    rest = KubeRest(lambda: api_client(settings, session=aws))  # as the functions make it
    rest.secret_name = name
    return rest


def deployment(name="web", image="web:1", replicas=1):
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }


# ------------------------------------------------------------------ TLS and tokens
def test_kubeconfig_mode_verifies_the_standins_ca(kube, aws):
    secret = yaml.safe_load(kubeconfig(kube.url, ROLLOUT_TOKEN, kube.ca_pem))
    assert secret["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
    assert base64.b64decode(secret["clusters"][0]["cluster"]["certificate-authority-data"]) == (
        kube.ca_pem
    )
    rest = product_rest(aws, kube, ROLLOUT_TOKEN)
    assert [n["metadata"]["name"] for n in rest.items("/api/v1/nodes")] == [
        "worker-1",
        "worker-2",
        "worker-3",
    ]
    # Without the CA the certificate is not trusted: no answer at all, a temporary error.
    untrusting = product_rest(aws, kube, ROLLOUT_TOKEN, ca=False)
    with pytest.raises(Unavailable) as caught:
        untrusting.items("/api/v1/nodes")
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)


def test_an_expired_token_is_401_until_the_kubeconfig_secret_is_rotated(kube, aws):
    token = kube.mint_token(ROLLOUT_USER, (function_group("rollout"),), ttl=600)
    rest = product_rest(aws, kube, token)
    assert rest.read("/apis/apps/v1/namespaces/shop/deployments/none") is None
    kube.auth.expire(token)
    before = kube.auth.requests_by_user[ROLLOUT_USER]
    with pytest.raises(Unauthorized) as caught:  # the secret still holds the expired token
        rest.get("/api/v1/nodes")
    assert isinstance(caught.value, TemporaryError)
    assert (caught.value.status, caught.value.reason, caught.value.message) == (
        401,
        "Unauthorized",
        "Unauthorized",
    )
    # The secret is rotated: the next request's 401 makes the client again from it.
    fresh = kube.mint_token(ROLLOUT_USER, (function_group("rollout"),), ttl=600)
    aws.client("secretsmanager").put_secret_value(
        SecretId=rest.secret_name, SecretString=kubeconfig(kube.url, fresh, kube.ca_pem)
    )
    assert [n["metadata"]["name"] for n in rest.items("/api/v1/nodes")][:1] == ["worker-1"]
    assert kube.auth.requests_by_user[ROLLOUT_USER] == before + 1  # only the fresh one counted


def test_first_requests_from_many_threads_at_once_make_one_client_that_works(kube, aws):
    # The edge's snapshot reads the cluster from several threads: the client (the kubeconfig
    # loader writes its certificate files as it goes) is made once, and every request works.
    from concurrent.futures import ThreadPoolExecutor

    token = kube.mint_token(ROLLOUT_USER, (function_group("rollout"),), ttl=600)
    rest = product_rest(aws, kube, token)
    made = []
    factory = rest._factory
    rest._factory = lambda: made.append(1) or factory()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: rest.items("/api/v1/nodes"), range(8)))
    assert made == [1]
    assert all([n["metadata"]["name"] for n in a][:1] == ["worker-1"] for a in answers)


def test_unauthorized_status_body_is_the_apiservers(kube):
    status, _, body = exchange(kube, [request("GET", "/api/v1/nodes", token="nope")])[0]
    assert status == 401
    assert json.loads(body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }


def test_eks_tokens_expire_after_15_minutes_and_the_product_refreshes_them(kube, aws, monkeypatch):
    now = [time.time()]
    clock = lambda: now[0]  # noqa: E731
    kube.auth.clock = clock

    def signing_time(remove_tzinfo=True):  # botocore's signers (and its CRT ones, if present)
        moment = datetime.datetime.fromtimestamp(now[0], datetime.UTC)
        return moment.replace(tzinfo=None) if remove_tzinfo else moment

    monkeypatch.setattr("botocore.auth.get_current_datetime", signing_time)
    with contextlib.suppress(ImportError):
        import botocore.crt.auth

        monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", signing_time)
    monkeypatch.setattr(access, "EksTokenSource", functools.partial(EksTokenSource, clock=clock))
    kube.auth.trust_eks("prod", function_identity("rollout"))
    eks = aws.client("eks")
    described = {
        "cluster": {
            "endpoint": kube.url,
            "certificateAuthority": {"data": base64.b64encode(kube.ca_pem).decode()},
        }
    }
    monkeypatch.setattr(eks, "describe_cluster", lambda name: described)

    def client(*, refresh=True):
        configuration = eks_configuration(eks=eks, sts=aws.client("sts"), cluster_name="prod")
        if not refresh:
            configuration.refresh_api_key_hook = None
        from kubernetes import client as k8s

        return KubeRest(k8s.ApiClient(configuration)), configuration

    rest, configuration = client()
    stale, _ = client(refresh=False)
    rest.items("/api/v1/nodes")
    stale.items("/api/v1/nodes")
    first = configuration.api_key["authorization"]
    assert first.startswith("k8s-aws-v1.")
    now[0] += 10 * 60  # younger than 13 minutes: the cached token is sent again
    rest.items("/api/v1/nodes")
    assert configuration.api_key["authorization"] == first
    now[0] += 6 * 60  # 16 minutes: EKS refuses the old token; the product made a new one
    rest.items("/api/v1/nodes")
    assert configuration.api_key["authorization"] != first
    with pytest.raises(Unauthorized):  # the same client without its refresh hook: 401
        stale.items("/api/v1/nodes")
    assert (ROLLOUT_USER, "eks") in kube.auth.seen


# ------------------------------------------------------------------ RBAC
def test_function_identity_is_bound_by_docs_rbac_yaml(kube, aws):
    night = function_user("night")
    token = KUBE_FUNCTION_TOKENS["night"]
    rest = product_rest(aws, kube, token)
    with pytest.raises(Forbidden) as caught:
        rest.request("DELETE", "/api/v1/namespaces/shop/pods/x")
    assert isinstance(caught.value, PermanentError)
    status, _, body = exchange(
        kube, [request("DELETE", "/api/v1/namespaces/shop/pods/x", token=token)]
    )[0]
    assert status == 403
    assert json.loads(body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'pods "x" is forbidden: User "{night}" cannot delete resource '
        '"pods" in API group "" in the namespace "shop"',
        "reason": "Forbidden",
        "details": {"name": "x", "kind": "pods"},
        "code": 403,
    }
    with pytest.raises(Forbidden) as caught:
        rest.items("/api/v1/namespaces")
    assert caught.value.message == (
        f'namespaces is forbidden: User "{night}" cannot list resource "namespaces" '
        'in API group "" at the cluster scope'
    )
    with pytest.raises(Forbidden) as caught:
        rest.request("DELETE", "/apis/apps/v1/namespaces/shop/deployments/web")
    assert caught.value.message.startswith('deployments.apps "web" is forbidden: User ')
    # What docs/rbac.yaml grants, it allows (and the superuser is never asked).
    assert kube.can(token, "create", "pods/eviction", namespace="shop")
    assert kube.can(token, "patch", "nodes")
    assert not kube.can(token, "delete", "nodes")
    assert kube.can(KUBE_TOKEN, "delete", "nodes")


DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x-green"}}
NODE_PATCH = {"spec": {"unschedulable": True}}
EVICTION = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}}
# (function, method, path, body, what the 403 says after 'User "..." cannot ')
REFUSED = [
    # The haproxy function reads nodes and the slots' Services, nothing else.
    (
        "haproxy",
        "POST",
        "/apis/apps/v1/namespaces/shop/deployments",
        DEPLOYMENT,
        'create resource "deployments" in API group "apps" in the namespace "shop"',
    ),
    (
        "haproxy",
        "PATCH",
        "/api/v1/nodes/worker-1",
        NODE_PATCH,
        'patch resource "nodes" in API group "" at the cluster scope',
    ),
    (
        "haproxy",
        "GET",
        "/api/v1/pods",
        None,
        'list resource "pods" in API group "" at the cluster scope',
    ),
    (
        "haproxy",
        "PATCH",
        "/api/v1/namespaces/shop/services/shop-blue",
        {},
        'patch resource "services" in API group "" in the namespace "shop"',
    ),
    # The rollout function writes its slots in the app namespaces; it never touches a node.
    (
        "rollout",
        "PATCH",
        "/api/v1/nodes/worker-1",
        NODE_PATCH,
        'patch resource "nodes" in API group "" at the cluster scope',
    ),
    (
        "rollout",
        "POST",
        "/api/v1/namespaces/shop/pods/p/eviction",
        EVICTION,
        'create resource "pods/eviction" in API group "" in the namespace "shop"',
    ),
    (
        "rollout",
        "DELETE",
        "/apis/apps/v1/namespaces/shop/deployments/shop-blue",
        None,
        'delete resource "deployments" in API group "apps" in the namespace "shop"',
    ),
    (
        "rollout",
        "PUT",
        "/api/v1/namespaces/shop/services/shop-blue",
        {},
        'update resource "services" in API group "" in the namespace "shop"',
    ),
    # The gate observes and scales down; it creates nothing and reads no node.
    (
        "gate",
        "POST",
        "/apis/apps/v1/namespaces/shop/deployments",
        DEPLOYMENT,
        'create resource "deployments" in API group "apps" in the namespace "shop"',
    ),
    (
        "gate",
        "GET",
        "/api/v1/nodes",
        None,
        'list resource "nodes" in API group "" at the cluster scope',
    ),
    (
        "gate",
        "PATCH",
        "/api/v1/namespaces/shop/services/shop-blue",
        {},
        'patch resource "services" in API group "" in the namespace "shop"',
    ),
    # The night function cordons, drains and reads budgets: no workload of its own.
    (
        "night",
        "POST",
        "/apis/apps/v1/namespaces/shop/deployments",
        DEPLOYMENT,
        'create resource "deployments" in API group "apps" in the namespace "shop"',
    ),
    (
        "night",
        "PATCH",
        "/apis/apps/v1/namespaces/shop/deployments/shop-blue",
        {},
        'patch resource "deployments" in API group "apps" in the namespace "shop"',
    ),
    (
        "night",
        "DELETE",
        "/api/v1/nodes/worker-1",
        None,
        'delete resource "nodes" in API group "" at the cluster scope',
    ),
    (
        "night",
        "DELETE",
        "/api/v1/namespaces/shop/pods/p",
        None,
        'delete resource "pods" in API group "" in the namespace "shop"',
    ),
]
# No function writes, or reads a Deployment or Service, in kube-system or in a namespace the
# RBAC was not rendered for (the night function's cluster-wide pod reads and evictions are its
# drain's: a node's pods may be in any namespace).
for _function in ("rollout", "gate", "haproxy", "night"):
    for _ns in ("kube-system", "other"):
        REFUSED += [
            (
                _function,
                "POST",
                f"/apis/apps/v1/namespaces/{_ns}/deployments",
                DEPLOYMENT,
                f'create resource "deployments" in API group "apps" in the namespace "{_ns}"',
            ),
            (
                _function,
                "GET",
                f"/api/v1/namespaces/{_ns}/services/x-blue",
                None,
                f'get resource "services" in API group "" in the namespace "{_ns}"',
            ),
            (
                _function,
                "PATCH",
                f"/apis/apps/v1/namespaces/{_ns}/deployments/x-blue",
                {},
                f'patch resource "deployments" in API group "apps" in the namespace "{_ns}"',
            ),
        ]


@pytest.mark.parametrize("function", ["rollout", "gate", "haproxy", "night"])
def test_each_function_is_refused_what_it_does_not_need(kube, function):
    """The stand-in's real 403 for each request in REFUSED, sent with the function's token."""
    cases = [case for case in REFUSED if case[0] == function]
    answers = exchange(
        kube,
        [
            request(method, path, body, token=KUBE_FUNCTION_TOKENS[function])
            for _, method, path, body, _ in cases
        ],
    )
    user = function_user(function)
    for (_, method, path, _, cannot), (status, _, text) in zip(cases, answers, strict=True):
        assert status == 403, (method, path, text)
        message = json.loads(text)["message"]
        assert message.endswith(f'is forbidden: User "{user}" cannot {cannot}'), message


# Each function's grants, exactly as docs/rbac.yaml renders them for shop and blog:
# (verb, resource, group, namespace or "" for the cluster scope).
GRANTED = {
    "rollout": {
        *(
            (v, "deployments", "apps", ns)
            for v in ("get", "create", "update", "patch")
            for ns in ("shop", "blog")
        ),
        *((v, "services", "", ns) for v in ("get", "create", "patch") for ns in ("shop", "blog")),
        ("list", "nodes", "", ""),
        ("list", "pods", "", ""),
    },
    "gate": {
        *((v, "deployments", "apps", ns) for v in ("get", "patch") for ns in ("shop", "blog")),
        *(("list", "pods", "", ns) for ns in ("shop", "blog")),
    },
    "haproxy": {
        ("list", "nodes", "", ""),
        *(("get", "services", "", ns) for ns in ("shop", "blog")),
    },
    "night": {
        ("list", "nodes", "", ""),
        ("patch", "nodes", "", ""),
        ("get", "pods", "", ""),
        ("list", "pods", "", ""),
        ("create", "pods/eviction", "", ""),
        ("list", "poddisruptionbudgets", "policy", ""),
    },
}
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
RESOURCES = (
    ("deployments", "apps"),
    ("deployments/scale", "apps"),
    ("services", ""),
    ("pods", ""),
    ("pods/eviction", ""),
    ("nodes", ""),
    ("poddisruptionbudgets", "policy"),
    ("endpointslices", "discovery.k8s.io"),
    ("secrets", ""),
    ("configmaps", ""),
)


@pytest.mark.parametrize("function", sorted(GRANTED))
def test_each_function_is_allowed_exactly_its_grants(kube, function):
    """Every verb on every resource Greenlight could touch, in each scope: what the stand-in's
    RBAC allows the function is exactly its list (a cluster-scoped grant reaches every
    namespace; a namespaced one only shop and blog)."""
    token = KUBE_FUNCTION_TOKENS[function]
    granted = GRANTED[function]
    for verb in VERBS:
        for resource, group in RESOURCES:
            for ns in ("", "shop", "blog", "kube-system", "other"):
                expected = (verb, resource, group, ns) in granted or (
                    (verb, resource, group, "") in granted and resource != "nodes"
                )
                if resource == "nodes" and ns:
                    continue  # nodes have no namespace
                allowed = kube.can(token, verb, resource, group=group, namespace=ns)
                assert allowed == expected, (function, verb, resource, ns)


def test_a_loaded_handler_talks_to_the_cluster_as_its_own_function(rollout, kube):
    """functions.load builds the rollout function's runtime with its own kubeconfig secret."""
    from tests.conftest import load_event

    before = dict(kube.auth.requests_by_user)
    result = rollout(load_event("codecommit-push.json"))
    assert result["status"] == "started", result
    asked = {u for u, n in kube.auth.requests_by_user.items() if n > before.get(u, 0)}
    assert asked == {function_user("rollout")}


def test_no_function_falls_back_to_a_shared_identity(aws_env):
    """The sandbox's environment names no kubeconfig secret: each function must take its own."""
    from greenlight.errors import SettingsError
    from greenlight.settings import RolloutSettings
    from tests.conftest import own_env

    assert "GREENLIGHT_KUBECONFIG_SECRET" not in aws_env
    with pytest.raises(SettingsError, match="GREENLIGHT_KUBECONFIG_SECRET is required"):
        RolloutSettings.from_env()
    assert RolloutSettings.from_env(own_env("rollout")).cluster.kubeconfig_secret == (
        "greenlight/sandbox/kubeconfig/rollout"
    )
    secrets = {own_env(f)["GREENLIGHT_KUBECONFIG_SECRET"] for f in KUBE_FUNCTION_TOKENS}
    assert len(secrets) == len(KUBE_FUNCTION_TOKENS)


def test_a_missing_eviction_permission_is_a_403_for_the_drain(kube, aws):
    core = kind_named("pods")
    with kube.cluster.lock:
        kube.cluster.create(
            core,
            "shop",
            {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}},
        )
    kube.apply_manifest(
        """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: drain-without-eviction}
rules:
  - apiGroups: [""]
    resources: ["pods", "nodes"]
    verbs: ["get", "list", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: drainer, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: drain-without-eviction}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: drainer}]
"""
    )
    rest = product_rest(aws, kube, kube.mint_token("drainer"))
    assert rest.get("/api/v1/namespaces/shop/pods/p")["metadata"]["name"] == "p"
    with pytest.raises(Forbidden) as caught:  # a RoleBinding grants inside its namespace only
        rest.get("/api/v1/namespaces/blog/pods")
    with pytest.raises(Forbidden) as caught:
        rest.create(
            "/api/v1/namespaces/shop/pods/p/eviction",
            {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}},
        )
    assert caught.value.message == (
        'pods "p" is forbidden: User "drainer" cannot create resource "pods/eviction" '
        'in API group "" in the namespace "shop"'
    )


def test_rbac_rules_roles_service_accounts_and_resource_names(kube):
    kube.apply_manifest(
        """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: one-deployment, namespace: shop}
rules:
  - apiGroups: ["apps"]
    resources: ["deployments"]
    resourceNames: ["web"]
    verbs: ["get"]
  - apiGroups: ["*"]
    resources: ["*/scale"]
    verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ci, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: one-deployment}
subjects: [{kind: ServiceAccount, name: ci}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: dangling}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gone}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: ci-bots}]
"""
    )
    sa = Identity("system:serviceaccount:shop:ci", ("system:serviceaccounts", "ci-bots"))
    assert kube.can(sa, "get", "deployments", group="apps", namespace="shop", name="web")
    assert not kube.can(sa, "get", "deployments", group="apps", namespace="shop", name="api")
    assert not kube.can(sa, "get", "deployments", group="apps", namespace="blog", name="web")
    assert kube.can(sa, "patch", "deployments/scale", group="apps", namespace="shop", name="x")
    token = kube.auth.mint(sa)
    status, _, body = exchange(
        kube, [request("GET", "/apis/apps/v1/namespaces/shop/deployments", token=token)]
    )[0]
    assert status == 403
    assert json.loads(body)["message"].endswith(
        'cannot list resource "deployments" in API group "apps" in the namespace "shop": '
        'RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found'
    )


def test_self_subject_access_review_answers_for_the_caller(kube):
    def review(token, **attrs):
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }
        path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        status, _, text = exchange(kube, [request("POST", path, body, token=token)])[0]
        assert status == 201, text
        return json.loads(text)["status"]

    night, rollout = KUBE_FUNCTION_TOKENS["night"], KUBE_FUNCTION_TOKENS["rollout"]
    allowed = review(night, verb="create", resource="pods", subresource="eviction", namespace="x")
    assert allowed == {
        "allowed": True,
        "reason": 'RBAC: allowed by ClusterRoleBinding "greenlight-night" of ClusterRole '
        '"greenlight-night" to Group "greenlight-night"',
    }
    assert review(
        rollout, verb="create", resource="deployments", group="apps", namespace="blog"
    ) == {
        "allowed": True,
        "reason": 'RBAC: allowed by RoleBinding "greenlight-rollout" in namespace "blog" of Role '
        '"greenlight-rollout" to Group "greenlight-rollout"',
    }
    assert review(night, verb="delete", resource="pods", namespace="x") == {"allowed": False}
    assert review(KUBE_TOKEN, verb="delete", resource="nodes")["allowed"] is True


# ------------------------------------------------------------------ HTTP framing, raw sockets
def request(method, path, body=None, *, token=KUBE_TOKEN, headers=None, chunked=False):
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    lines = [f"{method} {path} HTTP/1.1", "Host: kube"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        pieces = [data[i : i + 7] for i in range(0, len(data), 7)]
        payload = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(data)}")
        payload = data
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def exchange(kube, requests, *, expect=None):
    """Send ``requests`` pipelined on one keep-alive TLS connection; the answers
    (status, headers, body) in order."""
    context = ssl.create_default_context(cafile=kube.ca_file)
    host, port = kube.url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as conn,
    ):
        conn.sendall(b"".join(requests))
        stream = conn.makefile("rb")
        answers = []
        for _ in range(expect or len(requests)):
            status_line = stream.readline()
            if not status_line:
                break
            headers = {}
            while (line := stream.readline()) not in (b"\r\n", b""):
                key, _, value = line.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            body = stream.read(int(headers.get("content-length", 0)))
            answers.append((int(status_line.split()[1]), headers, body.decode()))
        return answers


def test_early_errors_consume_the_body_on_a_keep_alive_connection(kube):
    trap = b"GET /api/v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n"  # must never be parsed as a request
    answers = exchange(
        kube,
        [
            request("POST", "/nowhere/at/all", trap),  # 404 on an unknown route
            request("POST", "/api/v1/namespaces/shop/services", trap, token="bad"),  # 401
            request(
                "PATCH",
                "/apis/apps/v1/namespaces/shop/deployments/x",
                trap,
                headers={"Content-Type": "application/apply-patch+yaml"},
            ),  # 415
            request("PUT", "/api/v1/namespaces/shop/pods", trap),  # 405
            request("GET", "/version"),
        ],
    )
    assert [a[0] for a in answers] == [404, 401, 415, 405, 200]
    assert json.loads(answers[-1][2])["gitVersion"].startswith("v1.37")


def test_chunked_bodies_are_read(kube):
    svc = {"metadata": {"name": "chunky"}, "spec": {"ports": [{"port": 80}]}}
    answers = exchange(
        kube,
        [
            request("POST", "/api/v1/namespaces/shop/services", svc, chunked=True),
            request("GET", "/api/v1/namespaces/shop/services/chunky"),
        ],
    )
    assert [a[0] for a in answers] == [201, 200]
    assert json.loads(answers[1][2])["spec"]["ports"][0]["port"] == 80
    broken = b"POST /api/v1/namespaces/shop/services HTTP/1.1\r\nHost: k\r\n"
    broken += f"Authorization: Bearer {KUBE_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    broken += b"zz\r\n{}\r\n0\r\n\r\n"
    (status, headers, body), *rest = exchange(kube, [broken, request("GET", "/version")])
    assert status == 400 and headers["connection"] == "close" and not rest
    assert json.loads(body)["message"] == "malformed chunked encoding"


def test_an_unexpected_exception_answers_a_500_status_and_the_connection_goes_on(kube):
    kube.fail_next(1)
    answers = exchange(kube, [request("GET", "/api/v1/nodes"), request("GET", "/api/v1/nodes")])
    (status, _, body), (after, _, _) = answers
    assert (status, after) == (500, 200)
    assert json.loads(body) | {"message": "", "details": {}} == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "",
        "reason": "InternalError",
        "details": {},
        "code": 500,
    }
    assert json.loads(body)["message"].startswith("Internal error occurred: RuntimeError: ")
    assert kube.internal_errors == 1
    # The same hook over the sandbox controls (superuser only).
    answers = exchange(
        kube,
        [
            request("POST", "/_sandbox/fail", {"requests": 1}, token=ROLLOUT_TOKEN),
            request("POST", "/_sandbox/fail", {"requests": 1}),
            request("GET", "/version"),
            request("GET", "/_sandbox/status"),
        ],
    )
    assert [a[0] for a in answers] == [403, 200, 500, 200]
    assert json.loads(answers[3][2])["internalErrors"] == 2


# ------------------------------------------------------------------ controllers
def test_a_failing_reconcile_never_stops_the_controllers():
    with KubeStandIn(tick_seconds=0.02) as kube:
        kube.add_node("worker-1")
        create = kube.cluster.create
        failing = [True]

        def pods_fail(kind, ns, body):
            if kind.resource == "pods" and failing[0]:
                raise KeyError("image")  # the shape of issue 13's silent controller death
            return create(kind, ns, body)

        kube.cluster.create = pods_fail  # type: ignore[method-assign]
        with kube.cluster.lock:
            create(kind_named("deployments"), "default", deployment())
        assert kube.wait_for(lambda: kube.controller_errors >= 3, timeout=5)
        assert "KeyError" in kube.controller_error_log[-1]
        status, _, body = exchange(kube, [request("GET", "/_sandbox/status", token=None)])[0]
        assert status == 200 and json.loads(body)["controllerErrors"] >= 3
        failing[0] = False  # later ticks still run: the Deployment gets its pod
        assert kube.wait_for(lambda: bool(kube.cluster.items("pods", "default")), timeout=5), (
            kube.controller_error_log
        )


# ------------------------------------------------------------------ throttling
def test_throttled_reads_are_retried_and_writes_surface_as_too_many_requests(kube, aws):
    rest = product_rest(aws, kube, ROLLOUT_TOKEN)
    kube.throttle(2, retry_after=1)  # GET: urllib3 honours Retry-After (configuration.retries=2)
    started = time.monotonic()
    assert len(rest.items("/api/v1/nodes")) == 3
    assert time.monotonic() - started >= 2 and kube.throttled_requests == 2
    kube.throttle(3, retry_after=1)  # one more than the client's retries: the last 429 is typed
    with pytest.raises(TooManyRequests) as caught:
        rest.items("/api/v1/nodes")
    assert caught.value.retry_after == 1 and kube.throttled_requests == 5
    svc = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    for style in ("status", "apf"):  # POST is never retried by the client: the product decides
        kube.throttle(1, retry_after=4, style=style)
        with pytest.raises(TooManyRequests) as caught:
            rest.create("/api/v1/namespaces/shop/services", svc)
        assert isinstance(caught.value, TemporaryError)
        assert caught.value.retry_after == 4 and caught.value.delay == 4
    kube.throttle(1, retry_after=7)
    status, headers, body = exchange(kube, [request("DELETE", "/api/v1/nodes/x")])[0]
    assert (status, headers["retry-after"]) == (429, "7")
    assert json.loads(body)["details"] == {"retryAfterSeconds": 7}
    assert json.loads(body)["reason"] == "TooManyRequests"
    assert rest.create("/api/v1/namespaces/shop/services", svc)["metadata"]["name"] == "web"


# ------------------------------------------------------------------ the command
def test_kube_standin_command_writes_a_private_kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tools"), str(ROOT)])}
    process = subprocess.Popen(
        [sys.executable, "-m", "greenlight_sandbox.kube", "--nodes", "1", "--kubeconfig", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert path.exists(), process.stdout.read() if process.poll() is not None else ""
        assert path.stat().st_mode & 0o777 == 0o600
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config

        configuration = k8s.Configuration()
        k8s_config.load_kube_config(config_file=str(path), client_configuration=configuration)
        assert configuration.host.startswith("https://")
        with k8s.ApiClient(configuration) as api:
            assert [n.metadata.name for n in k8s.CoreV1Api(api).list_node().items] == ["worker-1"]
    finally:
        process.terminate()
        process.wait(timeout=10)
