"""The stand-in's controllers as the real ones behave: ReplicaSets with revisions (rollout
history and undo), delete propagation (Orphan, Background, Foreground), DaemonSets on every
eligible node, pods bound by ``spec.nodeName``, mirror pods, the cordon taint, readiness that
follows the probe and termination that follows the grace period (scaled); and the product's
drain and night plan with DaemonSet and mirror pods on the node."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from greenlight.cluster.rest import KubeRest
from greenlight.deadline import Deadline
from greenlight.night.drain import drain
from greenlight.night.plan import NightSize, plan, view
from greenlight_sandbox.kube import KubeStandIn
from greenlight_sandbox.kube.cluster import pod_ready
from greenlight_sandbox.kube.controllers import MIRROR, REVISION, UNSCHEDULABLE_TAINT
from greenlight_sandbox.kube.kinds import kind_named

TOKEN = "controllers-token"
DEP = kind_named("deployments")


@pytest.fixture
def standin() -> Iterator[KubeStandIn]:
    with KubeStandIn(token=TOKEN, tick_seconds=0.02, time_scale=0.1) as kube:
        for i in range(1, 4):
            kube.add_node(f"worker-{i}", cpu="2", memory="4Gi", address=f"127.0.1.{i}")
        kube.cluster.create(kind_named("namespaces"), "", {"metadata": {"name": "shop"}})
        yield kube


@pytest.fixture
def api(standin: KubeStandIn) -> Iterator[k8s.ApiClient]:
    configuration = k8s.Configuration()
    configuration.host = standin.url
    configuration.api_key = {"authorization": TOKEN}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    if getattr(standin, "ca_file", None):
        configuration.ssl_ca_cert = standin.ca_file
    with k8s.ApiClient(configuration) as client:
        yield client


def deployment(image: str = "web:1", replicas: int = 2, **spec: Any) -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
            **spec,
        },
    }


def live_pods(kube: KubeStandIn, ns: str = "shop") -> list[dict[str, Any]]:
    return [p for p in kube.cluster.items("pods", ns) if "deletionTimestamp" not in p["metadata"]]


def replicasets(kube: KubeStandIn) -> dict[str, dict[str, Any]]:
    return {rs["metadata"]["name"]: rs for rs in kube.cluster.items("replicasets", "shop")}


def revisions(kube: KubeStandIn) -> dict[int, dict[str, Any]]:
    return {int(rs["metadata"]["annotations"][REVISION]): rs for rs in replicasets(kube).values()}


def rolled_out(kube: KubeStandIn, image: str, replicas: int = 2) -> bool:
    pods = live_pods(kube)
    return (
        len(pods) == replicas
        and all(pod_ready(p) for p in pods)
        and all(p["spec"]["containers"][0]["image"] == image for p in pods)
        and len(kube.cluster.items("pods", "shop")) == replicas
    )


def set_image(kube: KubeStandIn, image: str) -> None:
    with kube.cluster.lock:
        body = kube.cluster.out(DEP, kube.cluster.get(DEP, "shop", "web"))
        body["spec"]["template"]["spec"]["containers"][0]["image"] = image
        kube.cluster.replace(DEP, "shop", "web", body)


# ---------------------------------------------------------------------- ReplicaSets
def test_replica_sets_carry_revisions_and_a_rollback_reuses_the_old_one(standin, api):
    kube = standin
    kube.cluster.create(DEP, "shop", deployment("web:1"))
    assert kube.wait_for(lambda: rolled_out(kube, "web:1"))
    [first] = revisions(kube).values()
    dep = kube.cluster.find("deployments", "shop", "web")
    assert first["metadata"]["annotations"][REVISION] == "1"
    hash_ = first["metadata"]["labels"]["pod-template-hash"]
    assert first["metadata"]["name"] == f"web-{hash_}"
    assert first["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": hash_}
    ref = first["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == (
        "Deployment",
        dep["metadata"]["uid"],
        True,
        True,
    )
    for pod in live_pods(kube):  # pod -> ReplicaSet -> Deployment
        assert pod["metadata"]["labels"]["pod-template-hash"] == hash_
        assert pod["metadata"]["ownerReferences"][0]["uid"] == first["metadata"]["uid"]
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    annotations = first["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/desired-replicas"] == "2"
    assert annotations["deployment.kubernetes.io/max-replicas"] == "3"  # 2 + 25% rounded up

    set_image(kube, "web:2")
    assert kube.wait_for(lambda: rolled_out(kube, "web:2"))
    assert kube.wait_for(lambda: revisions(kube)[1]["status"]["replicas"] == 0)
    by_rev = revisions(kube)
    assert sorted(by_rev) == [1, 2] and by_rev[1]["spec"]["replicas"] == 0
    assert by_rev[2]["spec"]["replicas"] == 2
    status = kube.cluster.find("deployments", "shop", "web")["status"]
    assert status["updatedReplicas"] == 2 and status["availableReplicas"] == 2
    reasons = {c["type"]: c["reason"] for c in status["conditions"]}
    assert reasons == {
        "Available": "MinimumReplicasAvailable",
        "Progressing": "NewReplicaSetAvailable",
    }

    # Served: kubectl rollout history lists ReplicaSets; undo patches the template back.
    listed = k8s.AppsV1Api(api).list_namespaced_replica_set("shop", label_selector="app=web")
    assert {rs.metadata.annotations[REVISION] for rs in listed.items} == {"1", "2"}
    scale = k8s.AppsV1Api(api).read_namespaced_replica_set_scale(first["metadata"]["name"], "shop")
    assert scale.spec.replicas == 0
    template = k8s.ApiClient().sanitize_for_serialization(
        next(rs for rs in listed.items if rs.metadata.annotations[REVISION] == "1").spec.template
    )
    del template["metadata"]["labels"]["pod-template-hash"]  # as kubectl rollout undo does
    k8s.AppsV1Api(api).patch_namespaced_deployment(
        "web", "shop", [{"op": "replace", "path": "/spec/template", "value": template}]
    )
    assert kube.wait_for(lambda: rolled_out(kube, "web:1"))
    by_rev = revisions(kube)
    assert sorted(by_rev) == [2, 3]  # revision 1's ReplicaSet is now revision 3
    assert by_rev[3]["metadata"]["uid"] == first["metadata"]["uid"]
    assert by_rev[3]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert kube.wait_for(lambda: revisions(kube)[2]["status"]["replicas"] == 0)


def test_revision_history_limit_removes_the_oldest_idle_replica_sets(standin):
    kube = standin
    kube.cluster.create(DEP, "shop", deployment("web:1", replicas=1, revisionHistoryLimit=1))
    for tag in (1, 2, 3):
        set_image(kube, f"web:{tag}")
        assert kube.wait_for(lambda tag=tag: rolled_out(kube, f"web:{tag}", replicas=1))
    assert kube.wait_for(lambda: sorted(revisions(kube)) == [2, 3])


# ---------------------------------------------------------------------- deletion
def test_orphan_delete_keeps_the_replica_set_and_pods_without_owner(standin, api):
    kube = standin
    kube.cluster.create(DEP, "shop", deployment())
    assert kube.wait_for(lambda: rolled_out(kube, "web:1"))
    k8s.AppsV1Api(api).delete_namespaced_deployment("web", "shop", propagation_policy="Orphan")
    time.sleep(0.3)
    assert kube.cluster.find("deployments", "shop", "web") is None
    [rs] = replicasets(kube).values()
    assert "ownerReferences" not in rs["metadata"]
    pods = live_pods(kube)
    assert len(pods) == 2  # still owned by the ReplicaSet, which stays
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet" for p in pods)
    # A new Deployment with the same template adopts the orphaned ReplicaSet and its pods.
    kube.cluster.create(DEP, "shop", deployment())
    assert kube.wait_for(
        lambda: "ownerReferences" in next(iter(replicasets(kube).values()))["metadata"]
    )
    time.sleep(0.2)
    assert {p["metadata"]["uid"] for p in live_pods(kube)} == {p["metadata"]["uid"] for p in pods}


def test_legacy_orphan_dependents_and_orphan_delete_of_a_replica_set(standin):
    kube = standin
    kube.cluster.create(DEP, "shop", deployment())
    assert kube.wait_for(lambda: rolled_out(kube, "web:1"))
    kube.cluster.delete(DEP, "shop", "web", {"orphanDependents": True})
    [rs] = replicasets(kube).values()
    kube.cluster.delete(
        kind_named("replicasets"), "shop", rs["metadata"]["name"], {"propagationPolicy": "Orphan"}
    )
    time.sleep(0.3)
    pods = live_pods(kube)
    assert len(pods) == 2 and all("ownerReferences" not in p["metadata"] for p in pods)


def test_background_delete_removes_the_owner_at_once_and_dependents_after(standin, api):
    kube = standin
    kube.cluster.create(DEP, "shop", deployment())
    assert kube.wait_for(lambda: rolled_out(kube, "web:1"))
    k8s.AppsV1Api(api).delete_namespaced_deployment("web", "shop")  # apps/v1: Background
    assert kube.cluster.find("deployments", "shop", "web") is None
    assert kube.wait_for(lambda: not replicasets(kube) and not kube.cluster.items("pods", "shop"))


def test_foreground_delete_keeps_the_owner_until_its_dependents_are_gone(standin, api):
    kube = standin
    kube.set_behaviour("web:1", "ready", ready_after=None, exit_after=math.inf)
    kube.cluster.create(DEP, "shop", deployment())
    assert kube.wait_for(lambda: rolled_out(kube, "web:1"))
    body = k8s.AppsV1Api(api).delete_namespaced_deployment(
        "web", "shop", body=k8s.V1DeleteOptions(propagation_policy="Foreground")
    )
    assert body["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert "deletionTimestamp" in body["metadata"]
    time.sleep(0.5)  # pods take their grace (30 s x 0.1) to go
    dep = kube.cluster.find("deployments", "shop", "web")
    assert dep is not None and "deletionTimestamp" in dep["metadata"]
    [rs] = replicasets(kube).values()
    assert "foregroundDeletion" in rs["metadata"]["finalizers"]  # blocking dependents first
    assert all("deletionTimestamp" in p["metadata"] for p in kube.cluster.items("pods", "shop"))
    assert kube.wait_for(lambda: kube.cluster.find("deployments", "shop", "web") is None, timeout=8)
    assert not replicasets(kube) and not kube.cluster.items("pods", "shop")


# ---------------------------------------------------------------------- DaemonSets and nodes
def daemon_pods(kube: KubeStandIn, name: str = "kube-proxy") -> dict[str, dict[str, Any]]:
    return {
        p["spec"]["nodeName"]: p
        for p in live_pods(kube, "kube-system")
        if p["metadata"].get("labels", {}).get("k8s-app") == name
    }


def test_a_daemon_set_runs_one_pod_on_every_node_cordoned_and_new_ones_too(standin, api):
    kube = standin
    kube.cordon("worker-3")
    kube.install_eks_daemonsets()
    nodes = {"worker-1", "worker-2", "worker-3"}
    assert kube.wait_for(
        lambda: set(daemon_pods(kube)) == nodes and set(daemon_pods(kube, "aws-node")) == nodes
    )
    assert kube.wait_for(lambda: all(pod_ready(p) for p in daemon_pods(kube).values()))
    pod = daemon_pods(kube)["worker-3"]
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "DaemonSet" and ref["controller"] is True
    assert {"key": UNSCHEDULABLE_TAINT, "operator": "Exists", "effect": "NoSchedule"} in pod[
        "spec"
    ]["tolerations"]
    assert pod["status"]["podIP"] == "127.0.1.3"  # hostNetwork: the node's address

    def ds_status() -> Any:
        return k8s.AppsV1Api(api).read_namespaced_daemon_set("kube-proxy", "kube-system").status

    for _ in range(50):  # written at the next tick (not under wait_for: it holds the lock)
        if ds_status().number_ready == 3:
            break
        time.sleep(0.05)
    assert ds_status().number_ready == 3
    assert ds_status().desired_number_scheduled == 3

    kube.add_node("worker-4", address="127.0.1.4")
    assert kube.wait_for(lambda: "worker-4" in daemon_pods(kube))
    with kube.cluster.lock:
        kube.cluster.remove("nodes", kube.cluster.find("nodes", "", "worker-4"))
    assert kube.wait_for(
        lambda: (
            "worker-4"
            not in {p["spec"]["nodeName"] for p in kube.cluster.items("pods", "kube-system")}
        )
    )


def test_a_daemon_set_skips_nodes_its_selector_or_tolerations_leave_out(standin):
    kube = standin
    with kube.cluster.lock:
        node = kube.cluster.find("nodes", "", "worker-2")
        node["spec"]["taints"] = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
        kube.cluster.create(
            kind_named("daemonsets"),
            "kube-system",
            {
                "metadata": {"name": "agent"},
                "spec": {
                    "selector": {"matchLabels": {"k8s-app": "agent"}},
                    "template": {
                        "metadata": {"labels": {"k8s-app": "agent"}},
                        "spec": {
                            "nodeSelector": {"topology.kubernetes.io/zone": "zone-a"},
                            "containers": [{"name": "agent", "image": "agent:1"}],
                        },
                    },
                },
            },
        )
    assert kube.wait_for(lambda: set(daemon_pods(kube, "agent")) == {"worker-1", "worker-3"})


def test_a_pod_with_node_name_is_bound_at_once_and_runs(standin):
    kube = standin
    kube.cordon("worker-2")  # the scheduler's concern, not the kubelet's
    pod = {
        "metadata": {"name": "bound"},
        "spec": {"nodeName": "worker-2", "containers": [{"name": "c", "image": "x:1"}]},
    }
    kube.cluster.create(kind_named("pods"), "shop", pod)
    kube.cluster.create(
        kind_named("pods"),
        "shop",
        {
            "metadata": {"name": "lost"},
            "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "x:1"}]},
        },
    )
    assert kube.wait_for(lambda: pod_ready(kube.cluster.find("pods", "shop", "bound")))
    bound = kube.cluster.find("pods", "shop", "bound")
    assert bound["spec"]["nodeName"] == "worker-2" and bound["status"]["hostIP"] == "127.0.1.2"
    assert kube.cluster.find("pods", "shop", "lost")["status"]["phase"] == "Pending"


def test_cordon_adds_the_unschedulable_taint_and_uncordon_removes_it(standin):
    kube = standin

    def taints() -> list[dict[str, Any]]:
        return kube.cluster.find("nodes", "", "worker-1")["spec"].get("taints") or []

    kube.cordon("worker-1")
    assert kube.wait_for(lambda: [t["key"] for t in taints()] == [UNSCHEDULABLE_TAINT])
    assert taints()[0]["effect"] == "NoSchedule" and "timeAdded" in taints()[0]
    kube.cordon("worker-1", unschedulable=False)
    assert kube.wait_for(lambda: not taints())


def test_the_scheduler_respects_no_schedule_taints(standin):
    kube = standin
    with kube.cluster.lock:
        for name in ("worker-1", "worker-2", "worker-3"):
            kube.cluster.find("nodes", "", name)["spec"]["taints"] = [
                {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
            ]
    kube.cluster.create(
        kind_named("pods"),
        "shop",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}},
    )
    time.sleep(0.2)
    pod = kube.cluster.find("pods", "shop", "p")
    [cond] = pod["status"]["conditions"]
    assert cond["reason"] == "Unschedulable"
    assert (
        cond["message"]
        == "0/3 nodes are available: 3 node(s) had untolerated taint {dedicated: gpu}."
    )
    with kube.cluster.lock:
        pod["spec"]["tolerations"] = [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
        ]
    assert kube.wait_for(
        lambda: bool(kube.cluster.find("pods", "shop", "p")["spec"].get("nodeName"))
    )


def test_the_scheduler_places_a_pod_only_on_nodes_its_node_selector_names(standin):
    kube = standin

    def pod(name: str, selector: dict[str, str]) -> None:
        kube.cluster.create(
            kind_named("pods"),
            "shop",
            {
                "metadata": {"name": name},
                "spec": {
                    "nodeSelector": selector,
                    "containers": [{"name": "c", "image": "x:1"}],
                },
            },
        )

    pod("pinned", {"kubernetes.io/hostname": "worker-3"})
    pod("nowhere", {"kubernetes.io/hostname": "worker-9"})
    assert kube.wait_for(
        lambda: kube.cluster.find("pods", "shop", "pinned")["spec"].get("nodeName") == "worker-3"
    )
    time.sleep(0.2)
    nowhere = kube.cluster.find("pods", "shop", "nowhere")
    assert not nowhere["spec"].get("nodeName")
    [cond] = nowhere["status"]["conditions"]
    assert cond["message"] == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    )


# ---------------------------------------------------------------------- mirror pods
def test_a_static_pod_has_a_mirror_pod_that_comes_back(standin):
    kube = standin
    kube.add_static_pod(
        "worker-1",
        {
            "metadata": {"name": "etcd-probe"},
            "spec": {"containers": [{"name": "p", "image": "probe:1"}]},
        },
    )
    assert kube.wait_for(
        lambda: kube.cluster.find("pods", "kube-system", "etcd-probe-worker-1") is not None
    )
    mirror = kube.cluster.find("pods", "kube-system", "etcd-probe-worker-1")
    assert MIRROR in mirror["metadata"]["annotations"]
    ref = mirror["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["apiVersion"]) == ("Node", "worker-1", "v1")
    kube.cluster.delete(
        kind_named("pods"), "kube-system", "etcd-probe-worker-1", {"gracePeriodSeconds": 0}
    )
    assert kube.wait_for(
        lambda: kube.cluster.find("pods", "kube-system", "etcd-probe-worker-1") is not None
    )


# ---------------------------------------------------------------------- timing
def probed_pod(name: str, image: str, **probe: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "containers": [
                {
                    "name": "c",
                    "image": image,
                    "readinessProbe": {"tcpSocket": {"port": 8080}, **probe},
                }
            ],
        },
    }


def test_readiness_follows_the_probe_scaled(standin):
    kube = standin  # time_scale 0.1
    kube.cluster.create(
        kind_named("pods"),
        "shop",
        probed_pod("slow", "x:1", initialDelaySeconds=8, periodSeconds=2),
    )
    kube.cluster.create(
        kind_named("pods"), "shop", probed_pod("twice", "x:1", periodSeconds=3, successThreshold=2)
    )
    start = time.monotonic()
    assert kube.wait_for(lambda: pod_ready(kube.cluster.find("pods", "shop", "slow")), timeout=5)
    assert 0.75 <= time.monotonic() - start < 1.5  # 8 s x 0.1, at a 2 s probe period
    assert pod_ready(kube.cluster.find("pods", "shop", "twice"))  # 0 + 3 s x 0.1


def test_termination_waits_for_the_grace_period_scaled_when_sigterm_is_ignored(standin):
    kube = standin
    kube.set_behaviour("stubborn:1", "ready", ready_after=None, exit_after=math.inf)
    for name in ("a", "b"):
        kube.cluster.create(kind_named("pods"), "shop", probed_pod(name, "stubborn:1"))
    assert kube.wait_for(
        lambda: (
            all(pod_ready(p) for p in kube.cluster.items("pods", "shop"))
            and len(kube.cluster.items("pods", "shop")) == 2
        )
    )
    start = time.monotonic()
    kube.cluster.delete(kind_named("pods"), "shop", "a", None)  # its own 10 s grace
    kube.cluster.delete(kind_named("pods"), "shop", "b", {"gracePeriodSeconds": 3})
    assert kube.wait_for(lambda: kube.cluster.find("pods", "shop", "b") is None)
    assert 0.25 <= time.monotonic() - start < 0.7
    assert kube.wait_for(lambda: kube.cluster.find("pods", "shop", "a") is None)
    assert 0.95 <= time.monotonic() - start < 1.6


def test_a_pod_that_exits_on_sigterm_goes_before_its_grace_ends(standin):
    kube = standin
    kube.cluster.create(kind_named("pods"), "shop", probed_pod("quick", "x:1"))
    assert kube.wait_for(lambda: pod_ready(kube.cluster.find("pods", "shop", "quick")))
    start = time.monotonic()
    kube.cluster.delete(kind_named("pods"), "shop", "quick", None)
    assert kube.wait_for(lambda: kube.cluster.find("pods", "shop", "quick") is None)
    assert time.monotonic() - start < 0.6  # Cluster.termination_seconds (0.3), not 10 s x 0.1


# ---------------------------------------------------------------------- the product's drain
def node_with_agents(kube: KubeStandIn) -> list[str]:
    """worker-1 with aws-node, kube-proxy, a mirror pod and two app pods; the others empty."""
    kube.install_eks_daemonsets()
    kube.add_static_pod(
        "worker-1",
        {
            "metadata": {"name": "static-web"},
            "spec": {"containers": [{"name": "s", "image": "static:1"}]},
        },
    )
    with kube.cluster.lock:
        for name in ("worker-2", "worker-3"):
            kube.cluster.objects["nodes"][("", name)]["spec"]["unschedulable"] = True
        body = deployment("web:1", replicas=2)
        body["spec"]["template"]["spec"]["containers"][0]["resources"] = {
            "requests": {"cpu": "200m"}
        }
        kube.cluster.create(DEP, "shop", body)
    assert kube.wait_for(lambda: rolled_out(kube, "web:1"))
    assert kube.wait_for(
        lambda: len(daemon_pods(kube)) == 3 and len(daemon_pods(kube, "aws-node")) == 3
    )
    assert kube.wait_for(
        lambda: kube.cluster.find("pods", "kube-system", "static-web-worker-1") is not None
    )
    with kube.cluster.lock:
        for name in ("worker-2", "worker-3"):
            kube.cluster.objects["nodes"][("", name)]["spec"]["unschedulable"] = False
        return [
            f"{p['metadata']['namespace']}/{p['metadata']['name']}"
            for p in kube.cluster.items("pods")
            if p["spec"].get("nodeName") == "worker-1"
        ]


def test_the_night_plan_leaves_daemon_set_and_mirror_pods_but_counts_them(standin, api):
    kube = standin
    on_node = node_with_agents(kube)
    assert len(on_node) == 5
    rest = KubeRest(api)
    nodes, pods = rest.items("/api/v1/nodes"), rest.items("/api/v1/pods")
    views, _ = view(nodes, pods, [])
    worker1 = next(v for v in views if v.name == "worker-1")
    assert sorted(p for p, _ in worker1.movable) == sorted(
        k for k in on_node if k.startswith("shop/")
    )
    assert worker1.requested.cpu_m == 2 * 200 + 25 + 100  # the agents take their share
    assert worker1.requested.pods == 5
    worker2 = next(v for v in views if v.name == "worker-2")
    assert worker2.requested.cpu_m == 125 and not worker2.movable and not worker2.blockers
    result = plan(nodes, pods, [], NightSize(keep=2, headroom=0.0))
    [going] = result.to_dict()["remove"]
    assert all(k.startswith("shop/") for k in going["pods_to_move"])


def test_the_drain_evicts_only_the_app_pods_and_the_agents_stay(standin, api):
    kube = standin
    on_node = node_with_agents(kube)
    agents = sorted(k for k in on_node if k.startswith("kube-system/"))
    result = drain(
        KubeRest(api), "worker-1", on_node, deadline=Deadline.within(20), poll_seconds=0.1
    )
    assert sorted(result.evicted) == sorted(k for k in on_node if k.startswith("shop/"))
    time.sleep(0.3)
    still = sorted(
        f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        for p in kube.cluster.items("pods")
        if p["spec"].get("nodeName") == "worker-1" and "deletionTimestamp" not in p["metadata"]
    )
    assert still == agents  # aws-node, kube-proxy and the mirror pod stay, nothing else
    moved = live_pods(kube)
    assert len(moved) == 2 and all(
        p["spec"]["nodeName"] != "worker-1" and pod_ready(p) for p in moved
    )
