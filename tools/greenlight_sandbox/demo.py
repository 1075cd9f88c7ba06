"""``greenlight demo``: the main job end to end in an in-process sandbox.

Today (rollout scenario): a CodeCommit push and a signed GitHub push each become a candidate
("green") Deployment that the simulated cluster brings up; a replayed delivery and an older push
change nothing. The health gate, HAProxy and promotion join this demo as they are built.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from .functions import ROOT
from .resources import push_image
from .sandbox import Sandbox, deliver_rollout_queue

SHOP_REPO = "shop-web"


def _say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def _event(name: str) -> Any:
    return json.loads((ROOT / "events" / name).read_text())


def _commit(label: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, label).hex + uuid.uuid5(uuid.NAMESPACE_DNS, label).hex[:8]


def _codecommit(commit: str, *, at: datetime, previous: str | None = None) -> dict[str, Any]:
    event = copy.deepcopy(_event("codecommit-push.json"))
    event["id"] = str(uuid.uuid4())
    event["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    event["detail"]["commitId"] = commit
    if previous:
        event["detail"]["oldCommitId"] = previous
    return event


def _github(commit: str, *, delivery: str, pushed_at: int, secret: str) -> dict[str, Any]:
    from greenlight.webhook import sign

    event = copy.deepcopy(_event("github-push.json"))
    body = json.loads(event["body"])
    body["after"] = commit
    body["head_commit"]["id"] = commit
    body["repository"]["pushed_at"] = pushed_at
    event["body"] = json.dumps(body)
    event["headers"]["x-github-delivery"] = delivery
    event["headers"]["x-hub-signature-256"] = sign(event["body"].encode(), secret)
    return event


def _quiet_invoke(name: str, event: Any) -> Any:
    from .functions import invoke

    with contextlib.redirect_stdout(io.StringIO()):
        return invoke(name, event)


def _wait_ready(sandbox: Sandbox, ns: str, name: str, timeout: float = 30.0) -> float:
    started = time.monotonic()

    def ready() -> bool:
        dep = sandbox.kube.cluster.find("deployments", ns, name)
        if dep is None:
            return False
        status = dep.get("status", {})
        want = dep["spec"].get("replicas", 1)
        return bool(
            status.get("observedGeneration") == dep["metadata"]["generation"]
            and status.get("updatedReplicas", 0) == want
            and status.get("availableReplicas", 0) == want
        )

    if not sandbox.kube.wait_for(ready, timeout=timeout):
        raise RuntimeError(f"{ns}/{name} did not become available within {timeout:.0f} s")
    return time.monotonic() - started


def _table(sandbox: Sandbox) -> list[str]:
    rows = [f"{'app':6} {'slot':12} {'image':64} {'ready':>5} {'nodePort':>8}"]
    for dep in sandbox.kube.cluster.items("deployments"):
        meta = dep["metadata"]
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        svc = sandbox.kube.cluster.find("services", meta["namespace"], meta["name"]) or {}
        port = (svc.get("spec", {}).get("ports") or [{}])[0].get("nodePort", "-")
        ready = f"{dep.get('status', {}).get('readyReplicas', 0)}/{dep['spec']['replicas']}"
        rows.append(f"{meta['namespace']:6} {meta['name']:12} {image:64} {ready:>5} {port:>8}")
    return rows


def run(scenario: str = "rollout") -> int:
    """Run the demo; 0 when every step did what it should."""
    if scenario != "rollout":
        raise SystemExit(f"unknown scenario {scenario!r}")
    _say("starting the sandbox: moto server + Kubernetes stand-in (3 workers)")
    expectations: list[tuple[str, bool]] = []
    with Sandbox(ready_after=1.0) as sandbox, sandbox.activate():
        session = sandbox.session()
        now = datetime.now(UTC).replace(microsecond=0)
        v1 = _commit("shop-v1")
        _say(
            f"CI pushed image {SHOP_REPO}:{v1[:12]} to ECR; developer pushes {v1[:12]} to "
            "CodeCommit shop-web/main"
        )
        push_image(session, SHOP_REPO, v1[:12])
        result = _quiet_invoke("rollout", _codecommit(v1, at=now))
        _say(f"rollout: {result['status']} -> {result['colour']} slot, {result['image']}")
        started = int(result["status"] == "started")
        expectations.append(("shop rollout started", result["status"] == "started"))
        seconds = _wait_ready(sandbox, "shop", "shop-green")
        _say(f"shop-green available after {seconds:.1f} s (simulated pods Ready)")

        secret = session.client("secretsmanager").get_secret_value(
            SecretId=sandbox.env["GREENLIGHT_WEBHOOK_SECRET"]
        )["SecretString"]
        blog = _commit("blog-v1")
        delivery = str(uuid.uuid4())
        webhook_event = _github(
            blog, delivery=delivery, pushed_at=int(now.timestamp()), secret=secret
        )
        answer = _quiet_invoke("github-webhook", webhook_event)
        _say(
            f"GitHub push acme/blog@{blog[:12]}: webhook answered {answer['statusCode']} "
            f"{json.loads(answer['body'])['status']}"
        )
        with contextlib.redirect_stdout(io.StringIO()):
            batches = deliver_rollout_queue(sandbox.env)
        blog_green = sandbox.kube.cluster.find("deployments", "blog", "blog-green")
        started += int(blog_green is not None)
        expectations.append(
            (
                "blog push queued and handled",
                answer["statusCode"] == 202
                and batches == [{"batchItemFailures": []}]
                and blog_green is not None,
            )
        )
        seconds = _wait_ready(sandbox, "blog", "blog-green")
        _say(f"blog-green available after {seconds:.1f} s")

        replay = _quiet_invoke("github-webhook", webhook_event)
        with contextlib.redirect_stdout(io.StringIO()):
            deliver_rollout_queue(sandbox.env)
        generation = sandbox.kube.cluster.find("deployments", "blog", "blog-green")["metadata"][
            "generation"
        ]
        _say(
            f"GitHub redelivers {delivery[:8]}: webhook {replay['statusCode']}, "
            f"blog-green generation still {generation}"
        )
        duplicates = int(generation == 1)
        expectations.append(("replayed delivery changed nothing", generation == 1))

        older = _commit("shop-v0")
        stale = _quiet_invoke("rollout", _codecommit(older, at=now.replace(year=now.year - 1)))
        _say(f"a late, older CodeCommit push {older[:12]}: {stale['status']} ({stale['detail']})")
        stale_ignored = int(stale["status"] == "ignored")
        expectations.append(("older push ignored", stale["status"] == "ignored"))

        print()
        for row in _table(sandbox):
            print(row)
        print()
        green_ready = sum(
            1
            for dep in sandbox.kube.cluster.items("deployments")
            if dep["metadata"]["name"].endswith("-green")
            and dep.get("status", {}).get("availableReplicas", 0) == dep["spec"]["replicas"]
        )
    failed = [name for name, ok in expectations if not ok]
    for name in failed:
        _say(f"UNEXPECTED: {name}")
    print(
        f"scenario=rollout rollouts_started={started} green_ready={green_ready} "
        f"duplicates_ignored={duplicates} stale_ignored={stale_ignored} "
        f"unexpected={len(failed)}"
    )
    return 1 if failed else 0
