"""Draining one node for the night shrink: cordon, evict through ``policy/v1``, wait.

- **Cordon** (``spec.unschedulable: true``), so nothing new lands on the node.
- **Evict** each pod the plan moves, one at a time, through the Eviction API, which enforces
  PodDisruptionBudgets: 200/201 (evicted) and 404 (already gone) are done; 429 (a PDB allows no
  disruption now, or is still being processed) is retried after the server's ``Retry-After`` or
  a back-off (1, 2, 4 ... 10 s) until the deadline; 500 (more than one PDB) and anything else
  stop the drain at once.
- **Wait** until the evicted pods are gone and every pod their controllers own is Ready again
  elsewhere, until the deadline.

If anything fails, the node is uncordoned before :class:`DrainError` is raised, so the node is
as it was (less the pods already evicted, whose replacements run elsewhere) and the caller can
put it back into HAProxy and report why. Nothing here terminates an instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..cluster.rest import MERGE_PATCH, KubeRest
from ..deadline import Deadline
from ..rollout.capacity import is_ready

BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 10.0)


class DrainError(Exception):
    """The drain stopped; the node was uncordoned."""


@dataclass
class Drained:
    node: str
    evicted: list[str] = field(default_factory=list)
    retries: int = 0  # 429 answers met on the way


def cordon(kube: KubeRest, node: str, *, on: bool = True) -> None:
    kube.patch(f"/api/v1/nodes/{node}", {"spec": {"unschedulable": on}}, content_type=MERGE_PATCH)


def _retry_after(exc: Any, attempt: int) -> float:
    header = (getattr(exc, "headers", None) or {}).get("Retry-After")
    if header and str(header).isdigit():
        return float(header)
    return BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]


def evict(
    kube: KubeRest,
    namespace: str,
    name: str,
    *,
    deadline: Deadline,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Evict one pod; the number of 429 answers it took. DrainError when it cannot."""
    from kubernetes.client.exceptions import ApiException

    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    }
    attempt = 0
    while True:
        try:
            kube.create(f"/api/v1/namespaces/{namespace}/pods/{name}/eviction", body)
            return attempt
        except ApiException as exc:
            if exc.status == 404:
                return attempt  # gone already
            if exc.status != 429:
                raise DrainError(
                    f"evicting {namespace}/{name}: HTTP {exc.status}: {_message(exc)}"
                ) from None
            wait = _retry_after(exc, attempt)
            if deadline.remaining() < wait:
                raise DrainError(
                    f"evicting {namespace}/{name}: still refused at the deadline after "
                    f"{attempt + 1} tries: {_message(exc)}"
                ) from None
            attempt += 1
            sleep(wait)


def _message(exc: Any) -> str:
    import json

    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.reason)
    causes = [c.get("message", "") for c in (body.get("details") or {}).get("causes") or []]
    return "; ".join([body.get("message", "") or str(exc.reason), *causes]).strip("; ")


def _settled(kube: KubeRest, evicted: list[str], owners: set[tuple[str, str]]) -> bool:
    for key in evicted:
        namespace, name = key.split("/", 1)
        found = kube.get(f"/api/v1/namespaces/{namespace}/pods").get("items", [])
        if any(p["metadata"]["name"] == name for p in found):
            return False  # still terminating
    for namespace in {ns for ns, _ in owners}:
        for pod in kube.get(f"/api/v1/namespaces/{namespace}/pods").get("items", []):
            refs = pod["metadata"].get("ownerReferences") or []
            if not any((namespace, r.get("uid", "")) in owners for r in refs):
                continue
            if not is_ready(pod) and "deletionTimestamp" not in pod["metadata"]:
                return False
    return True


def drain(
    kube: KubeRest,
    node: str,
    pods: list[str],
    *,
    deadline: Deadline,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = 1.0,
) -> Drained:
    """Cordon ``node``, evict ``pods`` (``namespace/name``), and wait for their replacements."""
    from kubernetes.client.exceptions import ApiException

    result = Drained(node)
    cordon(kube, node)
    try:
        owners: set[tuple[str, str]] = set()
        for key in pods:
            namespace, name = key.split("/", 1)
            try:
                pod = kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
            except ApiException as exc:
                if exc.status == 404:
                    continue  # gone already: nothing to evict
                raise
            owners |= {(namespace, r["uid"]) for r in pod["metadata"].get("ownerReferences") or []}
            result.retries += evict(kube, namespace, name, deadline=deadline, sleep=sleep)
            result.evicted.append(key)
        while not _settled(kube, result.evicted, owners):
            if deadline.remaining() < poll_seconds:
                raise DrainError(
                    f"{node}: the evicted pods' replacements were not Ready by the deadline"
                )
            sleep(poll_seconds)
    except BaseException:
        cordon(kube, node, on=False)
        raise
    return result
