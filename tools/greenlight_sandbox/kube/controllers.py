"""Simulated controllers: the garbage collector, the node lifecycle controller (cordon taint),
Deployments, ReplicaSets, DaemonSets, static (mirror) pods, the scheduler, the kubelet, PDB
status, EndpointSlices.

They run in one loop (``tick``) under the cluster lock, following the real controllers:
a Deployment owns one ReplicaSet per pod template (``<deployment>-<pod-template-hash>``, with
``deployment.kubernetes.io/revision``), each ReplicaSet owns its pods, a DaemonSet puts one pod
on every eligible node (bound with ``spec.nodeName``), and owner references are followed on
delete (Orphan, Background, Foreground). Pod behaviour comes from the image (see
``Behaviour``): pods become Ready as their readiness probe says (or after a fixed delay), or
crash-loop, run out of memory, fail to pull, or never become Ready; they stop after SIGTERM or
at the end of their grace period. Probe delays and grace periods are scaled by
``Cluster.time_scale``. The scheduler respects cordons, taints, node readiness and allocatable
capacity.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from .cluster import Behaviour, Cluster, pod_ready, rfc3339
from .kinds import kind_named
from .selectors import match_label_selector

_UNITS = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def quantity(text: Any) -> float:
    """A Kubernetes quantity as a float (cores, bytes, or a count)."""
    if isinstance(text, int | float):
        return float(text)
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"bad quantity {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def pod_requests(pod: dict[str, Any]) -> tuple[float, float]:
    cpu = mem = 0.0
    for container in pod["spec"].get("containers", []):
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += quantity(requests.get("cpu", 0))
        mem += quantity(requests.get("memory", 0))
    return cpu, mem


def template_hash(template: dict[str, Any]) -> str:
    """The pod-template-hash: a digest of the template, in rand.SafeEncodeString's alphabet."""
    digest = int(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest(), 16)
    out = ""
    for _ in range(10):
        digest, i = divmod(digest, len(_SAFE))
        out += _SAFE[i]
    return out


def _set_condition(conditions: list[dict[str, Any]], cond: dict[str, Any], now: str) -> None:
    for existing in conditions:
        if existing["type"] == cond["type"]:
            if existing.get("status") != cond["status"]:
                existing["lastTransitionTime"] = now
            existing.update({k: v for k, v in cond.items()})
            existing.setdefault("lastTransitionTime", now)
            return
    conditions.append({**cond, "lastTransitionTime": now})


def _write_status(cluster: Cluster, obj: dict[str, Any], status: dict[str, Any]) -> None:
    if obj.get("status") != status:
        obj["status"] = status
        obj["metadata"]["resourceVersion"] = cluster._bump()


REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
MIRROR = "kubernetes.io/config.mirror"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
# Annotations the Deployment controller does not copy onto its ReplicaSets (deployment/util).
_NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
}
# Tolerations the DaemonSet controller adds to its pods (pkg/controller/daemon/util).
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": UNSCHEDULABLE_TAINT, "operator": "Exists", "effect": "NoSchedule"},
]
_SAFE = "bcdfghjklmnpqrstvwxz2456789"  # rand.SafeEncodeString's alphabet


def controller_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_ref(owner: dict[str, Any], kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1" if kind == "Node" else "apps/v1",
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint, for any of ``tolerations``."""
    for tol in tolerations or []:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        if tol.get("key") and tol["key"] != taint.get("key"):
            continue
        if tol.get("operator", "Equal") == "Exists":
            return True
        if tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def _untolerated(node: dict[str, Any], pod_spec: dict[str, Any]) -> dict[str, Any] | None:
    for taint in node["spec"].get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(
            pod_spec.get("tolerations") or [], taint
        ):
            return dict(taint)
    return None


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(template))
    labels = (out.get("metadata") or {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    return out


def _revision(obj: dict[str, Any]) -> int:
    try:
        return int((obj["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


class Controllers:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.progress: dict[str, tuple[str, float]] = {}  # deployment uid -> (signature, since)
        # Static pods the kubelets run from files: (node, namespace, name) -> pod body. Each
        # has a mirror pod in the API, recreated when deleted, gone with its node.
        self.static_pods: dict[tuple[str, str, str], dict[str, Any]] = {}

    def tick(self) -> None:
        with self.cluster.lock:
            self.garbage_collector()
            self.node_lifecycle()
            self.deployments()
            self.replicasets()
            self.daemonsets()
            self.mirror_pods()
            self.scheduler()
            self.kubelet()
            self.disruption_budgets()
            self.endpoint_slices()

    # ------------------------------------------------------------------ garbage collector
    def _dependents(self, uid: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (resource, obj)
            for resource in ("replicasets", "pods")
            for obj in self.cluster.items(resource)
            if any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])
        ]

    def _gc_delete(self, resource: str, obj: dict[str, Any], *, foreground: bool) -> None:
        cluster = self.cluster
        meta = obj["metadata"]
        if resource == "pods":
            cluster.delete_pod(obj, grace=None)
        elif foreground:
            if "foregroundDeletion" not in meta.get("finalizers", []):
                meta.setdefault("deletionTimestamp", cluster.now())
                meta["deletionGracePeriodSeconds"] = 0
                meta["finalizers"] = sorted({*meta.get("finalizers", []), "foregroundDeletion"})
                meta["resourceVersion"] = cluster._bump()
        elif "deletionTimestamp" not in meta:
            cluster.remove(resource, obj)

    def garbage_collector(self) -> None:
        """Owner references as the garbage collector follows them: a deleting owner with the
        ``foregroundDeletion`` finalizer goes once its blocking dependents are gone (they are
        deleted in the foreground too); dependents whose owners are all gone are deleted
        (background propagation)."""
        cluster = self.cluster
        for resource in [r for r in cluster.objects if r not in ("pods", "namespaces")]:
            for owner in cluster.items(resource):
                meta = owner["metadata"]
                if "deletionTimestamp" not in meta:
                    continue
                finalizers = list(meta.get("finalizers") or [])
                foreground = "foregroundDeletion" in finalizers
                for dep_resource, dependent in self._dependents(meta["uid"]):
                    self._gc_delete(dep_resource, dependent, foreground=foreground)
                blocking = [
                    d
                    for _, d in self._dependents(meta["uid"])
                    if any(
                        r.get("uid") == meta["uid"] and r.get("blockOwnerDeletion")
                        for r in d["metadata"].get("ownerReferences") or []
                    )
                ]
                if foreground and blocking:
                    continue
                rest = [f for f in finalizers if f != "foregroundDeletion"]
                if not rest:
                    cluster.remove(resource, owner)
                elif rest != finalizers:  # other finalizers hold it: theirs to remove
                    meta["finalizers"] = rest
                    meta["resourceVersion"] = cluster._bump()
        alive = {o["metadata"]["uid"] for objs in cluster.objects.values() for o in objs.values()}
        for resource in ("replicasets", "pods"):
            for obj in cluster.items(resource):
                refs = obj["metadata"].get("ownerReferences") or []
                if refs and not any(r.get("uid") in alive for r in refs):
                    self._gc_delete(resource, obj, foreground=False)

    # ------------------------------------------------------------------ nodes
    def node_lifecycle(self) -> None:
        """The node lifecycle controller's taint for cordoned nodes (TaintNodesByCondition)."""
        cluster = self.cluster
        for node in cluster.items("nodes"):
            spec = node.setdefault("spec", {})
            taints = list(spec.get("taints") or [])
            has = any(
                t.get("key") == UNSCHEDULABLE_TAINT and t.get("effect") == "NoSchedule"
                for t in taints
            )
            if spec.get("unschedulable") and not has:
                taints.append(
                    {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule", "timeAdded": cluster.now()}
                )
            elif not spec.get("unschedulable") and has:
                taints = [t for t in taints if t.get("key") != UNSCHEDULABLE_TAINT]
            else:
                continue
            if taints:
                spec["taints"] = taints
            else:
                spec.pop("taints", None)
            node["metadata"]["resourceVersion"] = cluster._bump()

    # ------------------------------------------------------------------ deployments
    def _owned(
        self, resource: str, owner: dict[str, Any], kind: str, selector: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Objects whose controller is ``owner``; orphans its selector matches are adopted."""
        cluster = self.cluster
        uid = owner["metadata"]["uid"]
        out = []
        for obj in cluster.items(resource, owner["metadata"]["namespace"]):
            meta = obj["metadata"]
            ref = controller_ref(obj)
            if (
                ref is None
                and selector
                and "deletionTimestamp" not in meta
                and "deletionTimestamp" not in owner["metadata"]
                and match_label_selector(selector, meta.get("labels") or {})
            ):
                meta["ownerReferences"] = [
                    *(meta.get("ownerReferences") or []),
                    owner_ref(owner, kind),
                ]
                meta["resourceVersion"] = cluster._bump()
                ref = {"uid": uid}
            if ref is not None and ref.get("uid") == uid:
                out.append(obj)
        return out

    def _owned_pods(self, dep: dict[str, Any]) -> list[dict[str, Any]]:
        uids = {rs["metadata"]["uid"] for rs in self._owned("replicasets", dep, "Deployment", None)}
        return [
            p
            for p in self.cluster.items("pods", dep["metadata"]["namespace"])
            if (controller_ref(p) or {}).get("uid") in uids
        ]

    def deployments(self) -> None:
        for dep in self.cluster.items("deployments"):
            if "deletionTimestamp" in dep["metadata"]:
                continue  # the garbage collector's
            self._reconcile(dep)

    def _reconcile(self, dep: dict[str, Any]) -> None:
        cluster = self.cluster
        spec = dep["spec"]
        want = spec.get("replicas", 1)
        sets = self._owned("replicasets", dep, "Deployment", spec.get("selector"))
        new_rs = next(
            (
                rs
                for rs in sets
                if "deletionTimestamp" not in rs["metadata"]
                and _without_hash(rs["spec"]["template"]) == spec["template"]
            ),
            None,
        )
        old_sets = [rs for rs in sets if rs is not new_rs]
        max_old = max((_revision(rs) for rs in old_sets), default=0)
        surge = _resolve(
            spec.get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", "25%"),
            want,
            round_up=True,
        )
        if new_rs is None:
            new_rs = self._create_replicaset(dep, str(max_old + 1))
            if new_rs is None:
                return
        elif _revision(new_rs) <= max_old:  # a rollback: the old ReplicaSet comes back
            annotations = new_rs["metadata"].setdefault("annotations", {})
            history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
            annotations[REVISION_HISTORY] = ",".join([*history, str(_revision(new_rs))])
            annotations[REVISION] = str(max_old + 1)
            new_rs["metadata"]["resourceVersion"] = cluster._bump()
        # The real controller also copies the revision onto the Deployment's annotations; the
        # stand-in does not, so that re-sending a body stays a no-op (docs/kube-standin.md).
        self._scale_rs(new_rs, want, want, want + surge)
        # Old ReplicaSets keep as many pods as the new one lacks Ready ones, Ready pods of the
        # newest revisions first.
        ready_new = sum(
            1
            for p in self._rs_pods(new_rs)
            if pod_ready(p) and "deletionTimestamp" not in p["metadata"]
        )
        keep_old = max(0, want - ready_new)
        allot: dict[str, int] = {}
        ordered = sorted(old_sets, key=_revision, reverse=True)
        for only_ready in (True, False):
            for rs in ordered:
                live = [p for p in self._rs_pods(rs) if "deletionTimestamp" not in p["metadata"]]
                have = min(len(live), rs["spec"].get("replicas", 0))
                count = sum(1 for p in live if pod_ready(p)) if only_ready else have
                take = min(keep_old, max(0, min(count, have) - allot.get(rs["metadata"]["uid"], 0)))
                allot[rs["metadata"]["uid"]] = allot.get(rs["metadata"]["uid"], 0) + take
                keep_old -= take
        for rs in old_sets:
            self._scale_rs(rs, allot.get(rs["metadata"]["uid"], 0), want, want + surge)
        self._cleanup(dep, old_sets)
        self._deployment_status(dep, new_rs)

    def _rs_pods(self, rs: dict[str, Any]) -> list[dict[str, Any]]:
        uid = rs["metadata"]["uid"]
        return [
            p
            for p in self.cluster.items("pods", rs["metadata"]["namespace"])
            if (controller_ref(p) or {}).get("uid") == uid
        ]

    def _scale_rs(self, rs: dict[str, Any], replicas: int, desired: int, most: int) -> None:
        meta = rs["metadata"]
        annotations = meta.setdefault("annotations", {})
        wanted = {DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(most)}
        if rs["spec"].get("replicas") == replicas and all(
            annotations.get(k) == v for k, v in wanted.items()
        ):
            return
        if rs["spec"].get("replicas") != replicas:
            rs["spec"]["replicas"] = replicas
            meta["generation"] = meta.get("generation", 1) + 1
        annotations.update(wanted)
        meta["resourceVersion"] = self.cluster._bump()

    def _cleanup(self, dep: dict[str, Any], old_sets: list[dict[str, Any]]) -> None:
        """Old ReplicaSets beyond ``revisionHistoryLimit`` go (oldest revisions first)."""
        limit = dep["spec"].get("revisionHistoryLimit", 10)
        idle = [
            rs
            for rs in sorted(old_sets, key=_revision)
            if rs["spec"].get("replicas", 0) == 0
            and not self._rs_pods(rs)
            and "deletionTimestamp" not in rs["metadata"]
        ]
        for rs in idle[: max(0, len(idle) - limit)]:
            self.cluster.remove("replicasets", rs)

    def _create_replicaset(self, dep: dict[str, Any], revision: str) -> dict[str, Any] | None:
        cluster = self.cluster
        spec = dep["spec"]
        hash_ = template_hash(spec["template"])
        name = f"{dep['metadata']['name']}-{hash_}"
        namespace = dep["metadata"]["namespace"]
        if cluster.find("replicasets", namespace, name) is not None:
            return None  # a name collision (collisionCount is not simulated)
        template = json.loads(json.dumps(spec["template"]))
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: hash_}
        selector = json.loads(json.dumps(spec["selector"]))
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: hash_}
        annotations = {
            k: v
            for k, v in (dep["metadata"].get("annotations") or {}).items()
            if k not in _NOT_COPIED
        }
        annotations[REVISION] = revision
        body = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "labels": dict(tmeta["labels"]),
                "annotations": annotations,
                "ownerReferences": [owner_ref(dep, "Deployment")],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
        }
        if spec.get("minReadySeconds"):
            body["spec"]["minReadySeconds"] = spec["minReadySeconds"]
        created = cluster.create(kind_named("replicasets"), namespace, body)
        return cluster.find("replicasets", namespace, created["metadata"]["name"])

    # ------------------------------------------------------------------ replicasets
    def replicasets(self) -> None:
        cluster = self.cluster
        for rs in cluster.items("replicasets"):
            if "deletionTimestamp" in rs["metadata"]:
                continue
            spec = rs["spec"]
            pods = self._owned("pods", rs, "ReplicaSet", spec.get("selector"))
            live = [p for p in pods if "deletionTimestamp" not in p["metadata"]]
            want = spec.get("replicas", 1)
            for _ in range(max(0, want - len(live))):
                live.append(self._create_pod(rs, "ReplicaSet", spec["template"]))
            # Scale down: unready first, then the youngest (controller.ActivePods ordering).
            live.sort(key=lambda p: (pod_ready(p), p["metadata"]["creationTimestamp"]))
            for extra in live[: max(0, len(live) - want)]:
                cluster.delete_pod(extra, grace=None)
            live = live[max(0, len(live) - want) :]
            ready = sum(1 for p in live if pod_ready(p))
            labels = (spec["template"].get("metadata") or {}).get("labels") or {}
            full = sum(
                1
                for p in live
                if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
            )
            status: dict[str, Any] = {"replicas": len(live)}
            counts = {
                "fullyLabeledReplicas": full,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "terminatingReplicas": len(pods) - len(live),
            }
            status.update({k: v for k, v in counts.items() if v})
            status["observedGeneration"] = rs["metadata"]["generation"]
            _write_status(cluster, rs, status)

    def _create_pod(
        self,
        owner: dict[str, Any],
        kind: str,
        template: dict[str, Any],
        *,
        node: str | None = None,
        extra_labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        cluster = self.cluster
        template = json.loads(json.dumps(template))
        meta = template.get("metadata") or {}
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": owner["metadata"]["name"] + "-",
                "labels": {**(meta.get("labels") or {}), **(extra_labels or {})},
                "annotations": dict(meta.get("annotations") or {}),
                "ownerReferences": [owner_ref(owner, kind)],
            },
            "spec": template["spec"],
        }
        if not body["metadata"]["annotations"]:
            del body["metadata"]["annotations"]
        if node is not None:
            body["spec"]["nodeName"] = node
        namespace = owner["metadata"]["namespace"]
        created = cluster.create(kind_named("pods"), namespace, body)
        stored = cluster.find("pods", namespace, created["metadata"]["name"])
        assert stored is not None  # made just now, under the lock
        return stored

    # ------------------------------------------------------------------ daemonsets
    def _daemon_template(self, ds: dict[str, Any]) -> dict[str, Any]:
        template = json.loads(json.dumps(ds["spec"]["template"]))
        tolerations = template["spec"].setdefault("tolerations", [])
        for tol in DAEMON_TOLERATIONS:
            if tol not in tolerations:
                tolerations.append(dict(tol))
        return template

    def _should_run(self, template: dict[str, Any], node: dict[str, Any]) -> bool:
        """nodeShouldRunDaemonPod: the node selector and taints (resources are not checked:
        the pod is bound to its node, as the DaemonSet controller once did)."""
        labels = node["metadata"].get("labels") or {}
        selector = template["spec"].get("nodeSelector") or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            return False
        return _untolerated(node, template["spec"]) is None

    def daemonsets(self) -> None:
        cluster = self.cluster
        nodes = cluster.items("nodes")
        for ds in cluster.items("daemonsets"):
            if "deletionTimestamp" in ds["metadata"]:
                continue
            template = self._daemon_template(ds)
            hash_ = template_hash(ds["spec"]["template"])
            pods = self._owned("pods", ds, "DaemonSet", ds["spec"].get("selector"))
            live = [p for p in pods if "deletionTimestamp" not in p["metadata"]]
            by_node: dict[str, list[dict[str, Any]]] = {}
            for pod in live:
                by_node.setdefault(pod["spec"].get("nodeName", ""), []).append(pod)
            eligible = {n["metadata"]["name"] for n in nodes if self._should_run(template, n)}
            for node_name, on_node in by_node.items():
                doomed = on_node if node_name not in eligible else on_node[1:]
                for pod in doomed:
                    cluster.delete_pod(pod, grace=None)
            # Rolling update (maxUnavailable 1): one out-of-date pod at a time, once the rest
            # are Ready.
            outdated = [
                p
                for n in eligible
                for p in by_node.get(n, [])[:1]
                if (p["metadata"].get("labels") or {}).get("controller-revision-hash") != hash_
            ]
            terminating = [p for p in pods if "deletionTimestamp" in p["metadata"]]
            if (
                outdated
                and not terminating
                and all(pod_ready(p) for n in eligible for p in by_node.get(n, [])[:1])
            ):
                cluster.delete_pod(outdated[0], grace=None)
            busy = {p["spec"].get("nodeName") for p in terminating}
            for node_name in sorted(eligible):
                if not by_node.get(node_name) and node_name not in busy:
                    by_node[node_name] = [
                        self._create_pod(
                            ds,
                            "DaemonSet",
                            template,
                            node=node_name,
                            extra_labels={
                                "controller-revision-hash": hash_,
                                "pod-template-generation": str(ds["metadata"]["generation"]),
                            },
                        )
                    ]
            current = [p for n in eligible for p in by_node.get(n, [])[:1]]
            ready = sum(1 for p in current if pod_ready(p))
            updated = sum(
                1
                for p in current
                if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == hash_
            )
            status: dict[str, Any] = {
                "currentNumberScheduled": len(current),
                "desiredNumberScheduled": len(eligible),
                "numberMisscheduled": sum(len(v) for k, v in by_node.items() if k not in eligible),
                "numberReady": ready,
                "observedGeneration": ds["metadata"]["generation"],
            }
            extra = {
                "updatedNumberScheduled": updated,
                "numberAvailable": ready,
                "numberUnavailable": len(eligible) - ready,
            }
            status.update({k: v for k, v in extra.items() if v})
            _write_status(cluster, ds, status)

    # ------------------------------------------------------------------ static pods
    def add_static_pod(self, node: str, body: dict[str, Any]) -> None:
        """A static pod (a manifest file on ``node``'s kubelet): its mirror pod appears in the
        API, named ``<name>-<node>``, and comes back when deleted while the node is there."""
        meta = body.setdefault("metadata", {})
        namespace = meta.setdefault("namespace", "kube-system")
        name = f"{meta['name']}-{node}"
        self.static_pods[(node, namespace, name)] = body

    def mirror_pods(self) -> None:
        cluster = self.cluster
        for (node_name, namespace, name), body in list(self.static_pods.items()):
            node = cluster.find("nodes", "", node_name)
            if node is None:
                del self.static_pods[(node_name, namespace, name)]
                continue
            if cluster.find("pods", namespace, name) is not None:
                continue
            manifest = json.loads(json.dumps(body))
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
            manifest["metadata"].update(
                name=name,
                annotations={
                    **(manifest["metadata"].get("annotations") or {}),
                    MIRROR: digest,
                    "kubernetes.io/config.hash": digest,
                    "kubernetes.io/config.source": "file",
                    "kubernetes.io/config.seen": cluster.now(),
                },
                ownerReferences=[
                    {k: v for k, v in owner_ref(node, "Node").items() if k != "blockOwnerDeletion"}
                ],
            )
            manifest.setdefault("spec", {})["nodeName"] = node_name
            manifest.setdefault("apiVersion", "v1")
            manifest.setdefault("kind", "Pod")
            cluster.create(kind_named("pods"), namespace, manifest)

    def _deployment_status(self, dep: dict[str, Any], new_rs: dict[str, Any]) -> None:
        cluster = self.cluster
        now_s = cluster.clock()
        now = rfc3339(now_s)
        spec = dep["spec"]
        want = spec.get("replicas", 1)
        owned = self._owned_pods(dep)
        pods = [p for p in owned if "deletionTimestamp" not in p["metadata"]]
        terminating = len(owned) - len(pods)
        new_uid = new_rs["metadata"]["uid"]
        current_hash = (new_rs["metadata"].get("labels") or {}).get(HASH_LABEL, "")
        updated = sum(1 for p in pods if (controller_ref(p) or {}).get("uid") == new_uid)
        ready = sum(1 for p in pods if pod_ready(p))
        available = ready
        counts = {
            "replicas": len(pods),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": max(0, want - available),
            "terminatingReplicas": terminating,
        }
        status: dict[str, Any] = {"observedGeneration": dep["metadata"]["generation"]}
        status.update({k: v for k, v in counts.items() if v})  # integers omitted when 0
        conditions = json.loads(json.dumps(dep.get("status", {}).get("conditions", [])))
        max_unavailable = _resolve(
            spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable", "25%"),
            want,
            round_up=False,
        )
        if available >= want - max_unavailable:
            _set_condition(
                conditions,
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                    "lastUpdateTime": now,
                },
                now,
            )
        else:
            _set_condition(
                conditions,
                {
                    "type": "Available",
                    "status": "False",
                    "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability.",
                    "lastUpdateTime": now,
                },
                now,
            )
        uid = dep["metadata"]["uid"]
        signature = json.dumps([current_hash, counts])
        last = self.progress.get(uid)
        if last is None or last[0] != signature:
            self.progress[uid] = (signature, now_s)
            last = self.progress[uid]
        complete = updated == want and len(pods) == want and available == want
        rs_name = new_rs["metadata"]["name"]
        deadline = spec.get("progressDeadlineSeconds", 600)
        if complete:
            _set_condition(
                conditions,
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": f'ReplicaSet "{rs_name}" has successfully progressed.',
                    "lastUpdateTime": now,
                },
                now,
            )
        elif now_s - last[1] > deadline:
            _set_condition(
                conditions,
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{rs_name}" has timed out progressing.',
                    "lastUpdateTime": now,
                },
                now,
            )
        else:
            _set_condition(
                conditions,
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "ReplicaSetUpdated",
                    "message": f'ReplicaSet "{rs_name}" is progressing.',
                    "lastUpdateTime": rfc3339(last[1]),
                },
                now,
            )
        # lastUpdateTime ticks with the clock only when something changed; keep writes rare.
        for cond in conditions:
            if cond["type"] == "Available":
                cond["lastUpdateTime"] = cond["lastTransitionTime"]
        status["conditions"] = conditions
        _write_status(cluster, dep, status)

    # ------------------------------------------------------------------ scheduler
    def node_usage(self, node_name: str) -> tuple[float, float, int]:
        cpu = mem = 0.0
        count = 0
        for pod in self.cluster.items("pods"):
            if pod["spec"].get("nodeName") == node_name and pod.get("status", {}).get(
                "phase"
            ) not in ("Succeeded", "Failed"):
                c, m = pod_requests(pod)
                cpu, mem, count = cpu + c, mem + m, count + 1
        return cpu, mem, count

    def fits(self, node: dict[str, Any], pod: dict[str, Any]) -> str | None:
        """None when ``pod`` fits on ``node``, else the reason it does not."""
        if node["spec"].get("unschedulable"):
            return "node(s) were unschedulable"
        if not any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        ):
            return "node(s) were not ready"
        taint = _untolerated(node, pod["spec"])
        if taint is not None:
            return f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
        # The NodeAffinity filter's spec.nodeSelector half (K/pkg/scheduler/framework/plugins/
        # nodeaffinity/node_affinity.go, ErrReasonPod).
        labels = node["metadata"].get("labels") or {}
        wanted = pod["spec"].get("nodeSelector") or {}
        if any(labels.get(key) != value for key, value in wanted.items()):
            return "node(s) didn't match Pod's node affinity/selector"
        allocatable = node.get("status", {}).get("allocatable", {})
        cpu, mem, count = self.node_usage(node["metadata"]["name"])
        want_cpu, want_mem = pod_requests(pod)
        if cpu + want_cpu > quantity(allocatable.get("cpu", "4")) + 1e-9:
            return "Insufficient cpu"
        if mem + want_mem > quantity(allocatable.get("memory", "8Gi")):
            return "Insufficient memory"
        if count + 1 > quantity(allocatable.get("pods", "110")):
            return "Too many pods"
        return None

    def scheduler(self) -> None:
        cluster = self.cluster
        nodes = cluster.items("nodes")
        now = cluster.now()
        for pod in cluster.items("pods"):
            if pod["spec"].get("nodeName") or "deletionTimestamp" in pod["metadata"]:
                continue
            reasons: dict[str, int] = {}
            candidates = []
            for node in nodes:
                why = self.fits(node, pod)
                if why is None:
                    candidates.append(node)
                else:
                    reasons[why] = reasons.get(why, 0) + 1
            conditions = pod["status"].setdefault("conditions", [])
            if not candidates:
                detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
                message = f"0/{len(nodes)} nodes are available: {detail}."
                before = json.dumps(conditions)
                _set_condition(
                    conditions,
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                    },
                    now,
                )
                if json.dumps(conditions) != before:
                    pod["metadata"]["resourceVersion"] = cluster._bump()
                continue
            node = min(
                candidates,
                key=lambda n: (
                    self.node_usage(n["metadata"]["name"])[0]
                    / max(quantity(n["status"]["allocatable"].get("cpu", "4")), 1e-9),
                    n["metadata"]["name"],
                ),
            )
            pod["spec"]["nodeName"] = node["metadata"]["name"]
            _set_condition(conditions, {"type": "PodScheduled", "status": "True"}, now)
            for cond in conditions:
                cond.pop("reason", None) if cond["type"] == "PodScheduled" else None
                cond.pop("message", None) if cond["type"] == "PodScheduled" else None
            pod["status"]["hostIP"] = _node_ip(node)
            pod["status"]["hostIPs"] = [{"ip": _node_ip(node)}]
            pod["metadata"]["resourceVersion"] = cluster._bump()
            cluster.pod_clock.setdefault(pod["metadata"]["uid"], {})["scheduled"] = cluster.clock()

    # ------------------------------------------------------------------ kubelet
    def kubelet(self) -> None:
        cluster = self.cluster
        now_s = cluster.clock()
        for pod in cluster.items("pods"):
            meta = pod["metadata"]
            timings = cluster.pod_clock.setdefault(meta["uid"], {})
            if "deletionTimestamp" in meta:
                if now_s - timings.get("terminating", now_s) >= self._stop_seconds(pod):
                    cluster.remove("pods", pod)
                continue
            node_name = pod["spec"].get("nodeName")
            if not node_name:
                continue
            if "scheduled" not in timings:
                # Bound by spec.nodeName at creation (the scheduler leaves it): the node's
                # kubelet admits it, if the node exists.
                node = cluster.find("nodes", "", node_name)
                if node is None:
                    continue
                timings["scheduled"] = now_s
                conditions = pod["status"].setdefault("conditions", [])
                _set_condition(
                    conditions, {"type": "PodScheduled", "status": "True"}, cluster.now()
                )
                pod["status"]["hostIP"] = _node_ip(node)
                pod["status"]["hostIPs"] = [{"ip": _node_ip(node)}]
                pod["metadata"]["resourceVersion"] = cluster._bump()
            status = self._pod_status(pod, now_s - timings["scheduled"], timings)
            _write_status(cluster, pod, status)

    def _stop_seconds(self, pod: dict[str, Any]) -> float:
        """How long a terminating pod takes to go: its containers exit on SIGTERM (after their
        behaviour's ``exit_after``), or are killed at the end of the grace period."""
        cluster = self.cluster
        grace = pod["metadata"].get("deletionGracePeriodSeconds", 30) * cluster.time_scale
        behaviours = cluster.pod_behaviours.get(pod["metadata"]["uid"]) or [
            cluster.behaviour_for(c["image"], pod) for c in pod["spec"]["containers"]
        ]
        exits = [
            cluster.termination_seconds if b.exit_after is None else b.exit_after
            for b in behaviours
        ]
        return min(grace, max(exits, default=0.0))

    def _ready_at(self, container: dict[str, Any], behaviour: Behaviour) -> float:
        """Seconds after scheduling at which a serving container passes its readiness probe:
        the first probe after ``initialDelaySeconds`` (probes every ``periodSeconds``), then
        ``successThreshold - 1`` more; with no probe, once started. Scaled by time_scale."""
        started = 0.05
        if behaviour.ready_after is not None:
            return behaviour.ready_after
        probe = container.get("readinessProbe")
        if not probe:
            return started
        period = max(1, int(probe.get("periodSeconds", 10)))
        delay = int(probe.get("initialDelaySeconds", 0))
        first = math.ceil(delay / period) * period
        extra = (max(1, int(probe.get("successThreshold", 1))) - 1) * period
        return started + (first + extra) * self.cluster.time_scale

    def _pod_status(
        self, pod: dict[str, Any], age: float, timings: dict[str, float]
    ) -> dict[str, Any]:
        cluster = self.cluster
        now = cluster.now()
        status = json.loads(json.dumps(pod["status"]))
        containers = pod["spec"]["containers"]
        # A pod keeps the behaviour its images had when it was scheduled.
        fixed = cluster.pod_behaviours.setdefault(
            pod["metadata"]["uid"], [cluster.behaviour_for(c["image"], pod) for c in containers]
        )
        behaviours = fixed
        conditions = status.setdefault("conditions", [])
        status.setdefault("startTime", rfc3339(timings["scheduled"]))
        _set_condition(conditions, {"type": "Initialized", "status": "True"}, now)
        statuses = []
        all_ready = True
        phase = "Running"
        for container, behaviour in zip(containers, behaviours, strict=True):
            previous = next(
                (s for s in status.get("containerStatuses", []) if s["name"] == container["name"]),
                {},
            )
            entry = {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }
            started_at = rfc3339(timings["scheduled"] + 0.05)
            if behaviour.kind == "imagepull":
                reason = "ErrImagePull" if int(age / 0.5) % 2 == 0 else "ImagePullBackOff"
                entry["state"] = {
                    "waiting": {
                        "reason": reason,
                        "message": f'Back-off pulling image "{container["image"]}"',
                    }
                }
                phase = "Pending"
            elif behaviour.kind in ("crashloop", "oom"):
                restarts = int(age / 0.5)
                code, why = (137, "OOMKilled") if behaviour.kind == "oom" else (1, "Error")
                entry.update(imageID=_image_id(container["image"]), restartCount=restarts)
                entry["state"] = (
                    {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": "back-off restarting failed container",
                        }
                    }
                    if restarts
                    else {"running": {"startedAt": started_at}}
                )
                if restarts:
                    entry["lastState"] = {
                        "terminated": {
                            "exitCode": code,
                            "reason": why,
                            "startedAt": started_at,
                            "finishedAt": now,
                        }
                    }
                if restarts != previous.get("restartCount", 0) and previous:
                    entry["restartCount"] = restarts
            else:
                entry.update(
                    imageID=_image_id(container["image"]),
                    started=True,
                    state={"running": {"startedAt": started_at}},
                )
                entry["ready"] = (
                    behaviour.kind == "ready"
                    and age >= self._ready_at(container, behaviour)
                    and (cluster.ready_check is None or cluster.ready_check(pod))
                )
            all_ready = all_ready and entry["ready"]
            statuses.append(entry)
        status["phase"] = phase
        status["containerStatuses"] = statuses
        if "podIP" not in status and phase == "Running":
            # A hostNetwork pod (aws-node, kube-proxy) has its node's IP.
            host = status.get("hostIP")
            ip = host if pod["spec"].get("hostNetwork") and host else cluster.pod_ip()
            status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
        unready = [s["name"] for s in statuses if not s["ready"]]
        for cond_type in ("ContainersReady", "Ready"):
            if all_ready:
                cond = {"type": cond_type, "status": "True"}
            else:
                cond = {
                    "type": cond_type,
                    "status": "False",
                    "reason": "ContainersNotReady",
                    "message": f"containers with unready status: [{' '.join(unready)}]",
                }
            before = {c["type"]: c for c in conditions}.get(cond_type)
            if before and before.get("status") == "True" and all_ready:
                continue
            if before and cond["status"] == "True":
                before.pop("reason", None)
                before.pop("message", None)
            _set_condition(conditions, cond, now)
        return status

    # ------------------------------------------------------------------ PDBs
    def disruption_budgets(self) -> None:
        cluster = self.cluster
        for pdb in cluster.items("poddisruptionbudgets"):
            ns = pdb["metadata"]["namespace"]
            pods = [
                p
                for p in cluster.items("pods", ns)
                if "deletionTimestamp" not in p["metadata"]
                and match_label_selector(
                    pdb["spec"].get("selector"), p["metadata"].get("labels") or {}
                )
            ]
            expected = len(pods)
            healthy = sum(1 for p in pods if pod_ready(p))
            spec = pdb["spec"]
            if "minAvailable" in spec:
                desired = _resolve(spec["minAvailable"], expected, round_up=True)
            elif "maxUnavailable" in spec:
                desired = max(
                    0, expected - _resolve(spec["maxUnavailable"], expected, round_up=True)
                )
            else:
                desired = expected
            old = pdb.get("status", {})
            disrupted = old.get("disruptedPods") or {}
            # A pod evicted moments ago still counts as disrupted until it is gone.
            disrupted = {
                n: t for n, t in disrupted.items() if cluster.find("pods", ns, n) is not None
            }
            allowed = max(
                0,
                healthy
                - desired
                - len([n for n in disrupted if any(p["metadata"]["name"] == n for p in pods)]),
            )
            status: dict[str, Any] = {
                "observedGeneration": pdb["metadata"]["generation"],
                "disruptionsAllowed": allowed,
                "currentHealthy": healthy,
                "desiredHealthy": desired,
                "expectedPods": expected,
            }
            if disrupted:
                status["disruptedPods"] = disrupted
            now = cluster.now()
            conditions = json.loads(json.dumps(old.get("conditions", [])))
            _set_condition(
                conditions,
                {
                    "type": "DisruptionAllowed",
                    "status": "True" if allowed > 0 else "False",
                    "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
                    "message": "",
                    "observedGeneration": pdb["metadata"]["generation"],
                },
                now,
            )
            status["conditions"] = conditions
            _write_status(cluster, pdb, status)

    # ------------------------------------------------------------------ EndpointSlices
    def endpoint_slices(self) -> None:
        cluster = self.cluster
        kind = kind_named("endpointslices")
        wanted: set[tuple[str, str]] = set()
        for svc in cluster.items("services"):
            selector = svc["spec"].get("selector")
            if not selector:
                continue
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            slice_name = f"{name}-gl"
            wanted.add((ns, slice_name))
            endpoints = []
            for pod in cluster.items("pods", ns):
                labels = pod["metadata"].get("labels") or {}
                if any(labels.get(k) != v for k, v in selector.items()):
                    continue
                ip = pod.get("status", {}).get("podIP")
                if not ip:
                    continue
                terminating = "deletionTimestamp" in pod["metadata"]
                ready = pod_ready(pod) and not terminating
                endpoint: dict[str, Any] = {
                    "addresses": [ip],
                    "conditions": {
                        "ready": ready,
                        "serving": pod_ready(pod),
                        "terminating": terminating,
                    },
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": ns,
                        "name": pod["metadata"]["name"],
                        "uid": pod["metadata"]["uid"],
                    },
                }
                if pod["spec"].get("nodeName"):
                    endpoint["nodeName"] = pod["spec"]["nodeName"]
                endpoints.append(endpoint)
            ports = [
                {
                    "name": p.get("name", ""),
                    "port": p.get("targetPort", p["port"]),
                    "protocol": p.get("protocol", "TCP"),
                }
                for p in svc["spec"].get("ports", [])
                if isinstance(p.get("targetPort", p["port"]), int)
            ]
            body = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": slice_name,
                    "namespace": ns,
                    "labels": {
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    },
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            }
            existing = cluster.find("endpointslices", ns, slice_name)
            if (
                existing is not None
                and existing.get("endpoints") == endpoints
                and existing.get("ports") == ports
            ):
                continue
            if existing is None:
                cluster.create(kind, ns, body)
            else:
                body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                cluster.replace(kind, ns, slice_name, body)
        for es in cluster.items("endpointslices"):
            key = (es["metadata"]["namespace"], es["metadata"]["name"])
            if key not in wanted and es["metadata"]["name"].endswith("-gl"):
                cluster.remove("endpointslices", es)


def _resolve(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        fraction = float(value[:-1]) / 100 * total
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(value)


def _node_ip(node: dict[str, Any]) -> str:
    for address in node.get("status", {}).get("addresses", []):
        if address.get("type") == "InternalIP":
            return str(address["address"])
    return "127.0.0.1"


def _image_id(image: str) -> str:
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()
