"""Simulated controllers: Deployments, the scheduler, the kubelet, PDB status, EndpointSlices.

They run in one loop (``tick``) under the cluster lock. Pod behaviour comes from the image (see
``Behaviour``): pods become Ready after a delay, or crash-loop, run out of memory, fail to pull,
or never become Ready. The scheduler respects cordons, node readiness and allocatable capacity.
A Deployment owns its pods through a ReplicaSet reference per pod-template hash (ReplicaSets are
not served; nothing in Greenlight reads them).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from typing import Any

from .cluster import Cluster, pod_ready, rfc3339
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
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return digest[:10]


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


class Controllers:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.progress: dict[str, tuple[str, float]] = {}  # deployment uid -> (signature, since)

    def tick(self) -> None:
        with self.cluster.lock:
            self.deployments()
            self.scheduler()
            self.kubelet()
            self.disruption_budgets()
            self.endpoint_slices()

    # ------------------------------------------------------------------ deployments
    def _owned_pods(self, dep: dict[str, Any]) -> list[dict[str, Any]]:
        uid = dep["metadata"]["uid"]
        return [
            p
            for p in self.cluster.items("pods", dep["metadata"]["namespace"])
            if p["metadata"].get("annotations", {}).get("greenlight.sandbox/deployment-uid") == uid
        ]

    def deployments(self) -> None:
        cluster = self.cluster
        for dep in cluster.items("deployments"):
            meta = dep["metadata"]
            pods = self._owned_pods(dep)
            if "deletionTimestamp" in meta:
                for pod in pods:
                    cluster.delete_pod(pod, grace=None)
                if not self._owned_pods(dep):
                    cluster.remove("deployments", dep)
                continue
            self._reconcile(dep, pods)
        # Garbage collection: pods whose Deployment is gone (background propagation).
        alive = {d["metadata"]["uid"] for d in cluster.items("deployments")}
        for pod in cluster.items("pods"):
            owner = (pod["metadata"].get("annotations") or {}).get(
                "greenlight.sandbox/deployment-uid"
            )
            if owner and owner not in alive:
                cluster.delete_pod(pod, grace=None)

    def _reconcile(self, dep: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        cluster = self.cluster
        spec = dep["spec"]
        want = spec.get("replicas", 1)
        current_hash = template_hash(spec["template"])
        live = [p for p in pods if "deletionTimestamp" not in p["metadata"]]
        new = [p for p in live if p["metadata"]["labels"].get("pod-template-hash") == current_hash]
        old = [p for p in live if p not in new]
        for _ in range(max(0, want - len(new))):
            new.append(self._create_pod(dep, current_hash))
        # Scale down: the youngest (and unready first) go.
        new.sort(key=lambda p: (pod_ready(p), p["metadata"]["creationTimestamp"]), reverse=True)
        for extra in new[want:]:
            cluster.delete_pod(extra, grace=None)
        new = new[:want]
        ready_new = sum(1 for p in new if pod_ready(p))
        keep_old = max(0, want - ready_new)
        for doomed in sorted(old, key=pod_ready)[: max(0, len(old) - keep_old)]:
            cluster.delete_pod(doomed, grace=None)
        self._deployment_status(dep, current_hash)

    def _create_pod(self, dep: dict[str, Any], hash_: str) -> dict[str, Any]:
        cluster = self.cluster
        template = json.loads(json.dumps(dep["spec"]["template"]))
        meta = template.get("metadata") or {}
        rs_name = f"{dep['metadata']['name']}-{hash_}"
        rs_uid = str(uuid.uuid5(uuid.NAMESPACE_URL, dep["metadata"]["uid"] + hash_))
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": rs_name + "-",
                "labels": {**(meta.get("labels") or {}), "pod-template-hash": hash_},
                "annotations": {
                    **(meta.get("annotations") or {}),
                    "greenlight.sandbox/deployment-uid": dep["metadata"]["uid"],
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": rs_name,
                        "uid": rs_uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template["spec"],
        }
        namespace = dep["metadata"]["namespace"]
        created = cluster.create(kind_named("pods"), namespace, body)
        stored = cluster.find("pods", namespace, created["metadata"]["name"])
        assert stored is not None  # made just now, under the lock
        return stored

    def _deployment_status(self, dep: dict[str, Any], current_hash: str) -> None:
        cluster = self.cluster
        now_s = cluster.clock()
        now = rfc3339(now_s)
        spec = dep["spec"]
        want = spec.get("replicas", 1)
        owned = self._owned_pods(dep)
        pods = [p for p in owned if "deletionTimestamp" not in p["metadata"]]
        terminating = len(owned) - len(pods)
        updated = sum(
            1 for p in pods if p["metadata"]["labels"].get("pod-template-hash") == current_hash
        )
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
        rs_name = f"{dep['metadata']['name']}-{current_hash}"
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
                if now_s - timings.get("terminating", now_s) >= min(
                    cluster.termination_seconds, meta.get("deletionGracePeriodSeconds", 30)
                ):
                    cluster.remove("pods", pod)
                continue
            if "scheduled" not in timings or not pod["spec"].get("nodeName"):
                continue
            status = self._pod_status(pod, now_s - timings["scheduled"], timings)
            _write_status(cluster, pod, status)

    def _pod_status(
        self, pod: dict[str, Any], age: float, timings: dict[str, float]
    ) -> dict[str, Any]:
        cluster = self.cluster
        now = cluster.now()
        status = json.loads(json.dumps(pod["status"]))
        containers = pod["spec"]["containers"]
        # A pod keeps the behaviour its images had when it was scheduled.
        fixed = cluster.pod_behaviours.setdefault(
            pod["metadata"]["uid"], [cluster.behaviour_for(c["image"]) for c in containers]
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
                    and age >= behaviour.ready_after
                    and (cluster.ready_check is None or cluster.ready_check(pod))
                )
            all_ready = all_ready and entry["ready"]
            statuses.append(entry)
        status["phase"] = phase
        status["containerStatuses"] = statuses
        if "podIP" not in status and phase == "Running":
            ip = cluster.pod_ip()
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
