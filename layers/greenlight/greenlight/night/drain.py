"""Draining one node for the night shrink: cordon, evict through ``policy/v1``, wait.

- **Cordon** (``spec.unschedulable: true``), so nothing new lands on the node.
- **Evict** each pod the plan moves, one at a time, through the Eviction API, which enforces
  PodDisruptionBudgets (DaemonSet pods and mirror pods are skipped, as ``kubectl drain
  --ignore-daemonsets`` skips them: the DaemonSet controller would put the pod back, and a
  mirror pod is the API's view of a static pod its kubelet runs): 200/201 (evicted) and 404
  (already gone) are done; 429 (a PDB allows no disruption now, or is still being processed)
  is retried after the server's ``Retry-After`` or a back-off (1, 2, 4 ... 10 s) until the
  deadline; 500 (more than one PDB) and anything else stop the drain at once.
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
from typing import TYPE_CHECKING, cast

from ..cluster.errors import KubeError, NotFound, TooManyRequests
from ..cluster.names import MIRROR_ANNOTATION, nodes, pods
from ..cluster.resources import is_ready
from ..cluster.rest import MERGE_PATCH, KubeRest
from ..deadline import Deadline
from ..errors import TemporaryError

if TYPE_CHECKING:
    from ..cluster.bodies import Pod

BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 10.0)


class DrainError(TemporaryError):
    """The drain stopped; the node was uncordoned (a later night may try again)."""


@dataclass
class Drained:
    node: str
    evicted: list[str] = field(default_factory=list)
    retries: int = 0  # 429 answers met on the way


def cordon(kube: KubeRest, node: str, *, on: bool = True) -> None:
    kube.patch(nodes(node), {"spec": {"unschedulable": on}}, content_type=MERGE_PATCH)


def _wait(exc: TooManyRequests, attempt: int) -> float:
    """The server's Retry-After when it gave one, else a back-off."""
    if exc.retry_after is not None:
        return exc.retry_after
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
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    }
    attempt = 0
    while not deadline.expired():
        try:
            kube.create(pods(namespace, name) + "/eviction", body)
            return attempt
        except NotFound:
            return attempt  # gone already
        except TooManyRequests as exc:
            wait = _wait(exc, attempt)
            if deadline.remaining() < wait:
                raise DrainError(
                    f"evicting {namespace}/{name}: still refused at the deadline after "
                    f"{attempt + 1} tries: {exc.message}"
                ) from None
            attempt += 1
            sleep(wait)
        except KubeError as exc:
            detail = "; ".join([exc.message, *exc.causes])
            raise DrainError(f"evicting {namespace}/{name}: HTTP {exc.status}: {detail}") from None
    raise DrainError(f"evicting {namespace}/{name}: the deadline passed")


def stays(pod: Pod) -> bool:
    """A pod a drain leaves on its node (kubectl drain's daemonSetFilter and mirrorPodFilter):
    one a DaemonSet controls, or a mirror pod."""
    meta = pod["metadata"]
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return True
    return any(
        r.get("kind") == "DaemonSet" and r.get("controller")
        for r in meta.get("ownerReferences") or []
    )


def _settled(kube: KubeRest, evicted: list[str], owners: set[tuple[str, str]]) -> bool:
    for key in evicted:
        namespace, name = key.split("/", 1)
        if any(p["metadata"]["name"] == name for p in kube.items(pods(namespace))):
            return False  # still terminating
    for namespace in {ns for ns, _ in owners}:
        for pod in cast("list[Pod]", kube.items(pods(namespace))):
            refs = pod["metadata"].get("ownerReferences") or []
            if not any((namespace, r.get("uid", "")) in owners for r in refs):
                continue
            if not is_ready(pod) and "deletionTimestamp" not in pod["metadata"]:
                return False
    return True


def _evict_all(
    kube: KubeRest,
    keys: list[str],
    result: Drained,
    *,
    deadline: Deadline,
    sleep: Callable[[float], None],
) -> set[tuple[str, str]]:
    """Evict each pod in turn; the (namespace, uid) of their controllers."""
    owners: set[tuple[str, str]] = set()
    for key in keys:
        namespace, name = key.split("/", 1)
        found = kube.read(pods(namespace, name))
        if found is None:
            continue  # gone already: nothing to evict
        pod = cast("Pod", found)
        if stays(pod):
            continue  # its node keeps it (--ignore-daemonsets)
        refs = pod["metadata"].get("ownerReferences") or []
        owners |= {(namespace, r.get("uid", "")) for r in refs}
        result.retries += evict(kube, namespace, name, deadline=deadline, sleep=sleep)
        result.evicted.append(key)
    return owners


def drain(
    kube: KubeRest,
    node: str,
    keys: list[str],
    *,
    deadline: Deadline,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = 1.0,
    result: Drained | None = None,
) -> Drained:
    """Cordon ``node``, evict ``keys`` (``namespace/name``), and wait for their replacements.
    ``result``: where the evictions are recorded as they happen (so a caller still knows them
    when the drain stops with :class:`DrainError`)."""
    result = result or Drained(node)
    cordon(kube, node)
    try:
        owners = _evict_all(kube, keys, result, deadline=deadline, sleep=sleep)
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
