"""``greenlight demo``: the main job end to end in the full local sandbox.

The default (``--scenario main``): moto, the Kubernetes stand-in with pods as local processes,
and two real HAProxy instances with TLS reloaded through the SSM document; v1 deployed, steady
HTTPS load through both instances, a healthy v2 promoted, a crash-looping v3 rolled back; a
summary table, and a last line of ``key=value`` pairs. It exits non-zero if any request failed or
anything did not happen as it should. ``--scenario NAME`` runs one scenario of
:mod:`greenlight_sandbox.scenarios` (``all``: every one in turn) after the same set-up;
``--scenario rollout`` shows the rollout function's event handling alone (no fleet).

The functions' own log lines go to ``.greenlight/demo.log``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import statistics
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


def run_rollout() -> int:
    """The rollout function's event handling alone; 0 when every step did what it should."""
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


# ---------------------------------------------------------------------- the full sandbox
SCENARIO_NAMES = (
    "main",
    "all",
    "rollout",
    "healthy",
    "crashloop",
    "never-ready",
    "failing-health",
    "watch-revert",
    "supersede",
    "manual",
    "resume",
    "analysis-errors",
    "analysis-slow",
    "analysis-watch",
    "night",
    "github",
)


def run(scenario: str = "main") -> int:
    """Run the demo; 0 when no request failed and every step did what it should."""
    if scenario not in SCENARIO_NAMES:
        raise SystemExit(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIO_NAMES)}")
    if scenario == "rollout":
        return run_rollout()
    import sys

    from .sandbox import STATE_DIR, share_function_logs

    STATE_DIR.mkdir(exist_ok=True)
    out = sys.stdout
    log_path = STATE_DIR / "demo.log"
    with log_path.open("w") as log:
        sys.stdout = sys.stderr = log
        share_function_logs()  # into the log file
        try:
            return _run_full(scenario, out, log_path)
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


def _run_full(scenario: str, out: Any, log_path: Any) -> int:
    from . import scenarios as sc
    from .fullstack import FullSandbox

    def say(message: str) -> None:
        print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=out, flush=True)

    if scenario == "main":
        plan = [
            lambda st: sc.healthy(st, "v2"),
            lambda st: sc.crashloop(st, "v3"),
            lambda st: sc.github(st, "blog-v1"),
        ]
    elif scenario == "all":
        plan = list(sc.SCENARIOS.values())
    else:
        plan = [sc.SCENARIOS[scenario]]
    say(
        "starting the sandbox: moto, the Kubernetes stand-in (3 nodes; pods are local "
        "processes), 2 HAProxy instances with TLS reloaded through the SSM document"
    )
    started = time.monotonic()
    results = []
    with FullSandbox() as sandbox:
        stage = sc.Stage(sandbox, say=say)
        say(f"sandbox up in {time.monotonic() - started:.1f} s; functions log to {log_path}")
        kubeconfig = sandbox.kube.write_viewer_kubeconfig(log_path.parent / "demo.kubeconfig")
        say(f"watch it with kubectl: KUBECONFIG={kubeconfig} kubectl get pods -A -w")
        first = stage.deploy_first("v1")
        say(f"v1 ({first.version}) is live on {first.colour}")
        stage.start_load()
        say("steady HTTPS load through both HAProxy instances (keep-alive and new connections)")
        time.sleep(2)
        for step in plan:
            results.append(step(stage))
        time.sleep(2)
        stats = stage.stop_load()
        labels = {p.version: p.label for p in stage.pushes}
        told = [s for p in stage.pushes for s in stage.told(p, timeout=5)]
    return _summary(scenario, results, stats, labels, out, told=told)


def told_counts(told: list[Any]) -> tuple[int, int]:
    """(GitHub statuses, other notifications) among the deliveries ``told`` that were made."""
    made = [s for s in told if s.state != "failed"]
    statuses = sum(1 for s in made if s.target in ("github-status", "github-deployment"))
    return statuses, len(made) - statuses


def _summary(
    scenario: str,
    results: list[Any],
    stats: list[Any],
    labels: dict[str, str],
    out: Any,
    *,
    told: list[Any],
) -> int:
    from .load import LoadStats

    total = LoadStats()
    for s in stats:
        total.requests += s.requests
        total.failed += s.failed
        total.errors.update(s.errors)
        total.versions.update(s.versions)
        total.latencies.extend(s.latencies)
    promoted = sum(r.promoted for r in results)
    rolled_back = sum(r.rolled_back for r in results)
    flips = [f for r in results for f in r.flips]
    unmet = [f"{r.name}: {what}" for r in results for what in r.unmet]

    def p(*cells: Any) -> None:
        print(*cells, file=out)

    p()
    p(f"{'scenario':16} {'result':8} {'promoted':>8} {'rolled back':>11}")
    for r in results:
        p(f"{r.name:16} {'ok' if r.ok else 'UNMET':8} {r.promoted:>8} {r.rolled_back:>11}")
    p()
    p(f"{'requests':>10} {'failed':>7} {'p50 ms':>7} {'p99 ms':>7}")
    p(
        f"{total.requests:>10} {total.failed:>7} {total.percentile(50) * 1000:>7.1f} "
        f"{total.percentile(99) * 1000:>7.1f}"
    )
    if total.errors:
        p(f"errors: {dict(total.errors)}")
    p()
    p("versions served over time (seconds since the load started), per HAProxy instance:")
    for n, s in enumerate(stats, start=1):
        spans: dict[str, list[float]] = {}
        for t, version in s.timeline:
            spans.setdefault(version, [t, t])[1] = t
        shown = [
            f"{labels.get(v, v)} from {first:.1f} s ({s.versions[v]} requests)"
            for v, (first, _) in sorted(spans.items(), key=lambda kv: kv[1][0])
        ]
        p(f"  edge-{n}: " + "; ".join(shown))
    if flips:
        p()
        p("promotion timing (green = the new version):")
        for proof, switch in flips:
            p(
                f"  Deployment available -> gate's decision {proof:.2f} s; decision -> every "
                f"instance serving green {switch:.2f} s; total {proof + switch:.2f} s"
            )
    statuses, notifications = told_counts(told)
    p()
    p(
        f"told: {statuses} GitHub statuses (commit and deployment), {notifications} "
        "notifications (CodeCommit comments, SNS and Slack messages)"
    )
    for what in unmet:
        p(f"UNMET: {what}")
    p()
    switch = statistics.median(f[1] for f in flips) if flips else 0.0
    total_flip = statistics.median(sum(f) for f in flips) if flips else 0.0
    p(
        f"scenario={scenario} requests={total.requests} failed_requests={total.failed} "
        f"p50_ms={total.percentile(50) * 1000:.1f} p99_ms={total.percentile(99) * 1000:.1f} "
        f"promoted={promoted} rolled_back={rolled_back} "
        f"decision_to_fleet_s={switch:.2f} ready_to_fleet_s={total_flip:.2f} "
        + "".join(f"{key}={value} " for r in results for key, value in r.figures.items())
        + f"statuses={statuses} notifications={notifications} "
        + f"unexpected={len(unmet)}"
    )
    return 1 if total.failed or unmet else 0
