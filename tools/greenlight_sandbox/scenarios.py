"""The end-to-end scenarios, run in a :class:`FullSandbox` under steady HTTPS load.

A :class:`Stage` is a running full sandbox where the app ``shop`` is live (v1) and load runs
through every HAProxy instance. Each scenario drives it only with the events an AWS account
would see (CodeCommit pushes to the rollout function, manual invokes of the gate function),
plus the faults a real cluster can have (a crash-looping image, a health endpoint that fails),
and returns a :class:`ScenarioResult`. ``greenlight demo`` and ``tests/integration/test_e2e.py``
run the same scenarios.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .fullstack import HTTPS_PORT, FullSandbox
from .functions import ROOT
from .kube.cluster import image_tag
from .load import Load, LoadStats
from .resources import BUCKET, CONFIG_KEY, push_image

APP = "shop"
REPOSITORY = "shop-web"
LIVE_HOST = "shop.sandbox.test"
PREVIEW_HOST = "preview.shop.sandbox.test"
# Every pod answers its real requests this much later (not its health path): a response time
# HAProxy measures in whole milliseconds, so that "three times slower" means something.
BASE_DELAY_MS = 10.0
# ... and in the analysis scenarios, every pod (the live ones too): the sandbox's machine adds
# its own forwarding time to every request (10 to 60 ms measured, with the loads and the pods on
# two shared cores), the same for both colours; a delay well above it keeps "three times slower"
# a ratio HAProxy can see.
ANALYSIS_DELAY_MS = 50.0
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop-web"
TERMINAL = ("live", "settled", "failed", "rolled_back", "aborted", "superseded")


def commit_of(label: str) -> str:
    """A stable 40-hex commit id for a label (the demo's commits are made up)."""
    return (uuid.uuid5(uuid.NAMESPACE_URL, label).hex + uuid.uuid5(uuid.NAMESPACE_DNS, label).hex)[
        :40
    ]


@dataclass
class Push:
    label: str
    commit: str
    rollout_id: str
    colour: str
    app: str = APP

    @property
    def version(self) -> str:
        return self.commit[:12]  # the image tag ("{short}") that the pods serve as X-Version


@dataclass
class ScenarioResult:
    name: str
    expectations: list[tuple[str, bool]] = field(default_factory=list)
    promoted: int = 0
    rolled_back: int = 0
    figures: dict[str, int] = field(default_factory=dict)  # for the summary's last line
    # Per measured promotion: (Deployment available -> the gate's promotion decision,
    # that decision -> every HAProxy instance serving the new version), in seconds.
    flips: list[tuple[float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def expect(self, what: str, ok: bool) -> None:
        self.expectations.append((what, ok))

    @property
    def ok(self) -> bool:
        return all(ok for _, ok in self.expectations)

    @property
    def unmet(self) -> list[str]:
        return [what for what, ok in self.expectations if not ok]


class Stage:
    """A full sandbox with ``shop`` live and steady HTTPS load through every instance."""

    def __init__(self, sandbox: FullSandbox, *, say: Callable[[str], None] | None = None):
        self.sandbox = sandbox
        self.say = say or (lambda message: None)
        self.loads: list[Load] = []  # the live host's: no request of theirs may fail
        self.preview_loads: list[Load] = []  # the preview host's: a bad candidate fails some
        self._last_commit = "0" * 40
        self._clock = datetime.now(UTC).replace(microsecond=0)
        self.pushes: list[Push] = []
        self._last_github: dict[str, str] = {}
        # Every phase change the scenarios followed, with its reason: what a failed
        # expectation is read against.
        self.journal: list[str] = []

    # ------------------------------------------------------------------ set-up
    def deploy_first(self, label: str = "v1") -> Push:
        """The app's first rollout, before any traffic: promoted onto the fleet."""
        push = self.push(label)
        record = self.follow(push, ("live", "failed", "rolled_back"))
        if record.phase.value != "live":
            raise RuntimeError(f"the first rollout did not go live: {record.reason}")
        return push

    def start_load(self, *, max_seconds: float = 900) -> None:
        self.loads = [
            Load(
                instance.bind_address,
                HTTPS_PORT,
                LIVE_HOST,
                keepalive_workers=1,
                new_connection_workers=1,
                max_seconds=max_seconds,
                pause=0.01,
            ).start()
            for instance in self.sandbox.instances.values()
        ]

    def stop_load(self) -> list[LoadStats]:
        return [load.stop() for load in self.loads]

    def start_preview_load(self, *, max_seconds: float = 300, workers: int = 1) -> None:
        """Traffic on the preview host through every instance, so that a gated candidate has
        real requests for the gate's analysis to judge: the live load's shape (as many
        keep-alive workers as new-connection ones, the same pause), ``workers`` of each. Its
        failures are the candidate's (or no candidate's): they never count against the live
        host's."""
        self.preview_loads = [
            Load(
                instance.bind_address,
                HTTPS_PORT,
                PREVIEW_HOST,
                keepalive_workers=workers,
                new_connection_workers=workers,
                max_seconds=max_seconds,
                pause=0.01,
            ).start()
            for instance in self.sandbox.instances.values()
        ]

    def stop_preview_load(self) -> list[LoadStats]:
        stats = [load.stop() for load in self.preview_loads]
        self.preview_loads = []
        return stats

    def failed_requests(self) -> int:
        return sum(load.stats.failed for load in self.loads)

    # ------------------------------------------------------------------ actions
    def push(
        self,
        label: str,
        *,
        behaviour: str = "ready",
        fault: int | None = None,
        error_ratio: float = 0.0,
        delay_ms: float = BASE_DELAY_MS,
    ) -> Push:
        """CI pushed the image; a developer pushes the commit to CodeCommit ``shop-web/main``.
        Its pods fail ``error_ratio`` of their real requests and answer each ``delay_ms``
        later."""
        commit = commit_of(label)
        tag = commit[:12]
        self.sandbox.kube.set_behaviour(
            f"{IMAGE}:{tag}",
            behaviour,
            ready_after=0.3,
            error_ratio=error_ratio,
            delay_ms=delay_ms,
        )
        if fault is not None:
            self.sandbox.inject_fault(tag, fault)
        push_image(self.sandbox.session(), REPOSITORY, tag)
        event = json.loads((ROOT / "events" / "codecommit-push.json").read_text())
        event = copy.deepcopy(event)
        event["id"] = str(uuid.uuid4())
        at = self._clock + timedelta(seconds=10 * (len(self.pushes) + 1))
        event["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        event["detail"]["commitId"] = commit
        event["detail"]["oldCommitId"] = self._last_commit
        result = self.sandbox.invoke("rollout", event)
        if result.get("status") != "started":
            raise RuntimeError(f"push {label}: the rollout function answered {result}")
        self._last_commit = commit
        self.say(
            f"push {label} ({tag}, {behaviour}{f', health answers {fault}' if fault else ''}): "
            f"rollout {result['rollout_id']} -> {result['colour']} slot"
        )
        push = Push(label, commit, result["rollout_id"], result["colour"])
        self.pushes.append(push)
        return push

    def push_github(self, label: str, *, app: str = "blog", repository: str = "acme/blog") -> Push:
        """A developer pushes ``label``'s commit to GitHub ``repository``/main: the delivery,
        signed with the webhook's secret, goes to the github-webhook function, the FIFO queue
        and the rollout function, as in AWS. Returns once the rollout is accepted."""
        from .cli import sign_event

        commit = commit_of(label)
        event = json.loads((ROOT / "events" / "github-push.json").read_text())
        body = json.loads(event["body"])
        at = self._clock + timedelta(seconds=10 * (len(self.pushes) + 1))
        body["before"] = self._last_github.get(repository, "0" * 40)
        body["after"] = commit
        body["repository"]["full_name"] = repository
        body["repository"]["name"] = repository.rsplit("/", 1)[-1]
        body["repository"]["pushed_at"] = int(at.timestamp())
        body["head_commit"] = {"id": commit, "message": label, "timestamp": at.isoformat()}
        body["commits"] = [{"id": commit, "message": label}]
        event["body"] = json.dumps(body)
        event["headers"]["x-github-delivery"] = str(uuid.uuid4())
        env = self.sandbox.env
        secret = (
            self.sandbox.session()
            .client("secretsmanager", endpoint_url=self.sandbox.moto_url)
            .get_secret_value(SecretId=env["GREENLIGHT_WEBHOOK_SECRET"])["SecretString"]
        )
        answer = self.sandbox.invoke("github-webhook", sign_event(event, secret))
        if answer.get("statusCode") != 202 or "queued" not in answer.get("body", ""):
            raise RuntimeError(f"push {label}: the webhook answered {answer}")
        self._last_github[repository] = commit
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the pump hands the queued push to the rollout
            state = self.sandbox.app_state(app)
            if state.commit == commit and state.rollout_id:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"push {label}: no rollout of {app} accepted it within 30 s")
        record = self.sandbox.rollout(app, state.rollout_id)
        self.say(
            f"push {label} to GitHub {repository} ({commit[:12]}): webhook 202, queued, "
            f"rollout {state.rollout_id} -> {record.colour.value} slot"
        )
        push = Push(label, commit, state.rollout_id, record.colour.value, app=app)
        self.pushes.append(push)
        return push

    def gate(self, action: str, reason: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.sandbox.invoke(
            "gate", {"action": action, "app": APP, "reason": reason}
        )
        self.say(f"manual {action}: {answer.get('status')} ({answer.get('detail', '')})")
        return answer

    def follow(
        self, push: Push, phases: tuple[str, ...], *, timeout: float = 90, measure: bool = False
    ) -> Any:
        """Wait for ``push`` to reach one of ``phases``, saying each phase it passes. With
        ``measure``, ``self.last_flip`` holds (seconds from its Deployment being available to
        the gate's promotion decision, seconds from that decision to every instance serving its
        version), or None."""
        self.last_flip: tuple[float, float] | None = None
        marks: dict[str, float] = {}

        def tick(record: Any) -> None:
            if measure and "ready" not in marks and self._available(push):
                marks["ready"] = time.monotonic()

        def changed(record: Any) -> None:
            detail = f": {record.reason}" if record.reason else ""
            for judged in (record.gating_analysis, record.watch_analysis):
                if judged and judged.get("reason"):
                    detail += f" [{judged['reason']}]"
            # On the live load's clock (its failures' times), when it runs.
            at = time.monotonic() - self.loads[0].started if self.loads else 0.0
            self.journal.append(f"{at:.2f} {push.label} {record.phase.value}{detail}")
            self.say(f"  {push.label} {record.phase.value}{detail}")

        # The record is read four times a second (each read is a request to the table the
        # functions use); the Deployment, in process, every tick.
        record = self.sandbox.wait_phase(
            push.app,
            push.rollout_id,
            phases,
            timeout=timeout,
            on_change=changed,
            on_tick=tick,
            read_every=0.25,
        )
        if measure and "ready" in marks and record.phase.value in ("watching", "live"):
            served = self._served_everywhere(push.version, timeout=20)
            decided = self._decided(push)
            if served is not None and decided is not None:
                self.last_flip = (decided - marks["ready"], served - decided)
        return record

    def _decided(self, push: Push) -> float | None:
        """When the gate decided to promote ``push`` (its move to ``promoting``, as the rollout's
        history records it), on the monotonic clock; None if it never did."""
        wall_minus_monotonic = time.time() - time.monotonic()
        for move in self.sandbox.moves(push.app, push.rollout_id):
            if move.get("phase") == "promoting":
                return int(move["at"]) / 1000 - wall_minus_monotonic
        return None

    def told(self, push: Push, *, timeout: float = 15) -> list[Any]:
        """What the notify function sent for ``push`` (``store.notify.Sent``s), once it has
        handled every phase change the rollout has made so far (or ``timeout`` passed)."""
        from greenlight.store.notify import NotifyStore

        ddb = self.sandbox.session().client("dynamodb", endpoint_url=self.sandbox.moto_url)
        store = NotifyStore(ddb, self.sandbox.env["GREENLIGHT_TABLE"])
        deadline = time.monotonic() + timeout
        sent: list[Any] = []
        while time.monotonic() < deadline:
            found = store.load(push.app, push.rollout_id)
            sent = list(found.sent) if found else []
            moves = len(self.sandbox.moves(push.app, push.rollout_id))
            if found and moves and f"{push.rollout_id}/{moves - 1}" in found.handled:
                break
            time.sleep(0.1)
        return sent

    def say_told(self, push: Push) -> list[Any]:
        """Say what was sent for ``push``: each target's states, in order."""
        sent = self.told(push)
        by_target: dict[str, list[str]] = {}
        for s in sent:
            by_target.setdefault(s.target, []).append(s.state)
        said = "; ".join(f"{target} {' -> '.join(states)}" for target, states in by_target.items())
        self.say(f"  {push.label} told: {said or 'nothing'}")
        return sent

    # ------------------------------------------------------------------ observations
    def _available(self, push: Push) -> bool:
        dep = self.sandbox.kube.cluster.find("deployments", APP, f"{APP}-{push.colour}")
        if dep is None:
            return False
        template = dep["spec"]["template"]  # pinned by digest: the tag it was pinned from
        image = image_tag(template, template["spec"]["containers"][0]["image"])
        status = dep.get("status", {})
        want = dep["spec"].get("replicas", 1)
        return bool(
            image.endswith(":" + push.version)
            and status.get("observedGeneration") == dep["metadata"]["generation"]
            and status.get("updatedReplicas", 0) == want
            and status.get("availableReplicas", 0) == want
        )

    def _served_everywhere(self, version: str, *, timeout: float) -> float | None:
        """When every instance's load first saw ``version`` (monotonic), or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            firsts = []
            for load in self.loads:
                seen = [t for t, v in list(load.stats.timeline) if v == version]
                if not seen:
                    break
                firsts.append(load.started + seen[0])
            else:
                return max(firsts) if firsts else None
            time.sleep(0.05)
        return None

    def live_response_ms(self, *, seconds: float = 3.0) -> float:
        """The live colour's mean response time as HAProxy measures it on every instance over
        the next ``seconds`` (the gate's analysis of its counters, through its counters port)."""
        from greenlight.deadline import Deadline
        from greenlight.gate.analysis import baseline, window

        live = self.sandbox.app_state(APP).live_colour.value
        port = self.sandbox.gate.deps.edge_counters
        assert port is not None
        colours = ["blue", "green"]
        base = baseline(port(APP, colours, deadline=Deadline.within(60)), APP, live)
        time.sleep(seconds)
        now = port(APP, colours, deadline=Deadline.within(60))
        return window(base, now, APP, live)[0].response_ms or ANALYSIS_DELAY_MS

    def request_fault(self, version: str, error_ratio: float, delay_ms: float) -> None:
        """Every pod of ``version`` now fails ``error_ratio`` of its real requests, each
        ``delay_ms`` late (what the data plane's ``inject_request_fault`` does)."""
        plane = self.sandbox.kube.data_plane
        assert plane is not None
        plane.inject_request_fault(version, error_ratio, delay_ms)

    def tolerate(self, version: str) -> None:
        """``version`` is made to fail on purpose: its own HTTP errors on the live host do not
        count as failed requests (load.py); anything else still does."""
        for load in self.loads:
            load.stats.tolerated.add(version)

    def tolerated_failures(self, version: str) -> int:
        return sum(load.stats.tolerated_failures[version] for load in self.loads)

    def live_version(self) -> str | None:
        state = self.sandbox.app_state(APP)
        image = state.live_image or ""
        return image.rsplit(":", 1)[-1] if ":" in image else None


# ---------------------------------------------------------------------- scenarios
def healthy(stage: Stage, label: str = "v2") -> ScenarioResult:
    """A healthy commit: gated, promoted, watched, live; the previous colour kept warm."""
    result = ScenarioResult("healthy")
    push = stage.push(label)
    record = stage.follow(push, TERMINAL, measure=True)
    result.expect(f"{label} live", record.phase.value == "live")
    result.expect(f"{label} served", stage.live_version() == push.version)
    if stage.last_flip is not None:
        result.flips.append(stage.last_flip)
        proof, switch = stage.last_flip
        stage.say(
            f"  {label}: Deployment available -> promotion decision {proof:.2f} s, "
            f"-> every instance serving it {switch:.2f} s more"
        )
    result.promoted += int(record.phase.value == "live")
    stage.say_told(push)
    return result


def github(stage: Stage, label: str = "blog-v1") -> ScenarioResult:
    """A commit pushed to GitHub (the blog app): the signed delivery through the webhook and the
    queue, the gate, live; GitHub gets the commit status and the deployment's statuses."""
    result = ScenarioResult("github")
    push = stage.push_github(label)
    record = stage.follow(push, TERMINAL)
    result.expect(f"{label} live", record.phase.value == "live")
    result.promoted += int(record.phase.value == "live")
    sent = stage.say_told(push)
    context = f"greenlight/{push.app}"
    status = stage.sandbox.github.statuses("acme/blog", push.commit).get(context, {})
    result.expect("GitHub commit status success", status.get("state") == "success")
    deployments = [
        d for d in stage.sandbox.github.deployments("acme/blog") if d.get("sha") == push.commit
    ]
    states = [s["state"] for d in deployments for s in d.get("statuses", [])]
    result.expect("one GitHub deployment for the rollout", len(deployments) == 1)
    result.expect("its deployment status success", states[-1:] == ["success"])
    result.expect("nothing failed to send", all(s.state != "failed" for s in sent))
    return result


def _rolled_back(
    stage: Stage, name: str, label: str, *, reason: tuple[str, ...], **push_args: Any
) -> ScenarioResult:
    result = ScenarioResult(name)
    before = stage.live_version()
    push = stage.push(label, **push_args)
    record = stage.follow(push, TERMINAL)
    result.expect(f"{label} rolled back", record.phase.value == "rolled_back")
    result.expect(
        f"rolled back because: {' or '.join(reason)} (got {record.reason!r})",
        any(r in (record.reason or "") for r in reason),
    )
    result.expect("what was live stays live", stage.live_version() == before)
    result.rolled_back += int(record.phase.value == "rolled_back")
    stage.say_told(push)
    return result


def crashloop(stage: Stage, label: str = "v3") -> ScenarioResult:
    """A commit whose container crash-loops: rolled back as soon as the gate sees it."""
    return _rolled_back(
        stage, "crashloop", label, reason=("CrashLoopBackOff",), behaviour="crashloop"
    )


def never_ready(stage: Stage, label: str = "never-ready") -> ScenarioResult:
    """A commit whose pods never become Ready: rolled back at the ready deadline."""
    # The gate's own deadline or the Deployment's progress deadline, whichever comes first.
    return _rolled_back(
        stage,
        "never-ready",
        label,
        reason=("not ready within", "progress deadline"),
        behaviour="never-ready",
    )


def failing_health(stage: Stage, label: str = "failing-health") -> ScenarioResult:
    """Ready in Kubernetes (its health redirects: 302 counts for a kubelet) but failing the
    gate's HTTPS checks through the preview host: rolled back."""
    return _rolled_back(stage, "failing-health", label, reason=("health check failed",), fault=302)


def watch_revert(stage: Stage, label: str = "watch-revert") -> ScenarioResult:
    """Promoted, then its health fails inside the watch window: HAProxy sends live traffic to
    the warm previous colour at once, and the gate switches back to it."""
    result = ScenarioResult("watch-revert")
    before = stage.live_version()
    push = stage.push(label)
    record = stage.follow(push, ("watching", *TERMINAL))
    result.expect(f"{label} promoted", record.phase.value == "watching")
    result.promoted += int(record.phase.value == "watching")
    stage.say(f"  {label} breaks: its health endpoint answers 500")
    stage.sandbox.inject_fault(push.version, 500)
    record = stage.follow(push, TERMINAL)
    result.expect(f"{label} reverted", record.phase.value == "rolled_back")
    result.expect(
        "reverted for failing after promotion", "after promotion" in (record.reason or "")
    )
    result.expect("the previous version is live again", stage.live_version() == before)
    result.rolled_back += int(record.phase.value == "rolled_back")
    return result


def _analysed(
    stage: Stage,
    name: str,
    label: str,
    *,
    reason: tuple[str, ...],
    bad: Callable[[float], dict[str, Any]],
) -> ScenarioResult:
    """Under load on the preview host, first a healthy candidate: judged from the edge's
    counters, promoted. Then one healthy on its health path but bad on its real requests
    (``bad(healthy_ms)``: its push's arguments, from the healthy candidate's mean response time
    at its gate, under the same load): rolled back before promotion, with the figures. Every pod
    answers ANALYSIS_DELAY_MS late (what is live too, from now on)."""
    live_version = stage.live_version()
    assert live_version is not None
    stage.request_fault(live_version, 0.0, ANALYSIS_DELAY_MS)
    # The live load's shape: the candidate's pods take as many requests at once as what is
    # live (with more, it queues more on the sandbox's two cores, and looks slower than it is).
    stage.start_preview_load()
    try:
        healthy_push = stage.push(f"{label}-fixed", delay_ms=ANALYSIS_DELAY_MS)
        fixed = stage.follow(healthy_push, TERMINAL)
        judged = fixed.gating_analysis or {}
        # What a candidate's request takes at the gate, preview load and all: the machine's
        # share grows once a candidate's pods take that load (58 ms before, 95 at the gate, was
        # measured), so a "three times slower" taken from before would be barely two.
        healthy_ms = float(judged.get("response_ms") or stage.live_response_ms())
        push_args = bad(healthy_ms)
        said = (
            f"a healthy candidate answers in {healthy_ms:.0f} ms at its gate; {label}: {push_args}"
        )
        stage.journal.append(said)
        stage.say(f"  {said}")
        result = _rolled_back(stage, name, label, reason=reason, **push_args)
        record = stage.sandbox.rollout(APP, stage.pushes[-1].rollout_id)
        result.expect(
            "rolled back by the analysis, before promotion",
            (record.reason or "").startswith("analysis: "),
        )
        result.expect(f"{label}-fixed live", fixed.phase.value == "live")
        result.expect("its version still served", stage.live_version() == healthy_push.version)
        result.expect(
            f"{label}-fixed judged at the gate (got {judged.get('reason')})",
            judged.get("outcome") == "pass",
        )
        result.promoted += int(fixed.phase.value == "live")
    finally:
        previewed = stage.stop_preview_load()
    result.figures = {"preview_requests": sum(s.requests for s in previewed)}
    result.expect("the preview host had traffic", result.figures["preview_requests"] > 0)
    return result


def analysis_errors(stage: Stage, label: str = "analysis-errors") -> ScenarioResult:
    """A candidate that answers its health path but fails 10% of its real requests (HTTP
    500): rolled back before promotion, on the edge's own counters."""
    return _analysed(
        stage,
        "analysis-errors",
        label,
        reason=("max_error_ratio",),
        bad=lambda healthy_ms: {"error_ratio": 0.1, "delay_ms": ANALYSIS_DELAY_MS},
    )


def analysis_slow(stage: Stage, label: str = "analysis-slow") -> ScenarioResult:
    """A candidate three times slower than a healthy one, as HAProxy measures them at the gate
    under the same load: rolled back before promotion. A healthy candidate answers in
    ANALYSIS_DELAY_MS plus what the sandbox's machine adds to every request (the same for what
    is live, and for the slow one); the slow one answers in three times that: its delay is
    3 x healthy - the machine's part = 2 x healthy + ANALYSIS_DELAY_MS."""
    return _analysed(
        stage,
        "analysis-slow",
        label,
        reason=("max_response_ratio",),
        bad=lambda healthy_ms: {"delay_ms": round(2 * healthy_ms + ANALYSIS_DELAY_MS)},
    )


def analysis_watch(stage: Stage, label: str = "analysis-watch") -> ScenarioResult:
    """A candidate that passes the analysis at the gate (healthy under the preview load), then
    fails 10% of its real requests right after its promotion: the watch window's analysis of
    the live host's traffic reverts it, with the figures. The only failed requests on the live
    host are the candidate's own 500s: none answered by (or meant for) the previous version, no
    connection-level failure."""
    result = ScenarioResult("analysis-watch")
    before = stage.live_version()
    stage.start_preview_load()
    try:
        push = stage.push(label)
        record = stage.follow(push, ("watching", *TERMINAL))
    finally:
        stage.stop_preview_load()
    result.expect(f"{label} promoted", record.phase.value == "watching")
    result.promoted += int(record.phase.value == "watching")
    judged = record.gating_analysis or {}
    result.expect(
        f"{label} passed the analysis at the gate (got {judged.get('reason')})",
        judged.get("outcome") == "pass",
    )
    stage.say(f"  {label} breaks: 10% of its real requests answer 500")
    stage.tolerate(push.version)
    stage.request_fault(push.version, 0.1, BASE_DELAY_MS)
    record = stage.follow(push, TERMINAL)
    why = record.reason or ""
    result.expect(f"{label} reverted", record.phase.value == "rolled_back")
    result.expect(
        f"reverted by the watch window's analysis, with the figures (got {why!r})",
        why.startswith("failed after promotion: analysis: ") and "max_error_ratio" in why,
    )
    result.expect("the previous version is live again", stage.live_version() == before)
    result.rolled_back += int(record.phase.value == "rolled_back")
    failed = stage.tolerated_failures(push.version)
    result.figures = {"candidate_500s_on_the_live_host": failed}
    result.expect("the live host saw the candidate's 500s", failed > 0)
    return result


def supersede(stage: Stage) -> ScenarioResult:
    """A newer commit arrives while one is at the gate: the older one stops, the newer one
    goes live."""
    result = ScenarioResult("supersede")
    slow = stage.push("slow", behaviour="never-ready")
    stage.follow(slow, ("gating",))
    time.sleep(1.5)
    fresh = stage.push("fresh")
    record = stage.follow(slow, TERMINAL)
    result.expect("the older rollout superseded", record.phase.value == "superseded")
    record = stage.follow(fresh, TERMINAL)
    result.expect("the newer rollout live", record.phase.value == "live")
    result.expect("the newer version served", stage.live_version() == fresh.version)
    result.promoted += int(record.phase.value == "live")
    return result


def manual(stage: Stage) -> ScenarioResult:
    """Manual approval: a healthy candidate waits for a promote; then a manual rollback (instant:
    the previous colour is warm); then an abort at the gate."""
    result = ScenarioResult("manual")
    before = stage.live_version()
    with manual_approval(stage.sandbox):
        push = stage.push("approved")
        record = stage.follow(push, ("awaiting_approval", *TERMINAL))
        result.expect("waits for a promote", record.phase.value == "awaiting_approval")
        stage.gate("promote", "release manager approved")
        record = stage.follow(push, ("live", "failed", "rolled_back"))
        result.expect("promoted by hand", record.phase.value == "live")
        result.promoted += int(record.phase.value == "live")
        result.expect("the approved version served", stage.live_version() == push.version)
        stage.gate("rollback", "customer reports")
        record = stage.follow(push, TERMINAL)
        result.expect("rolled back by hand", record.phase.value == "rolled_back")
        result.expect("the previous version live again", stage.live_version() == before)
        result.rolled_back += int(record.phase.value == "rolled_back")
        doomed = stage.push("aborted")
        stage.follow(doomed, ("gating", "awaiting_approval", *TERMINAL))
        stage.gate("abort", "wrong branch merged")
        record = stage.follow(doomed, TERMINAL)
        result.expect("aborted by hand", record.phase.value == "aborted")
    return result


def resume(stage: Stage, label: str = "resumed") -> ScenarioResult:
    """The gate's Lambda dies after recording the new live colour, before the fleet has it: the
    safety-net sweep resumes the rollout under a new chain of checks, and it goes live."""
    result = ScenarioResult("resume")
    stage.sandbox.kill_at_next_push("promote")
    push = stage.push(label)
    record = stage.follow(push, TERMINAL, timeout=120)
    result.expect("resumed and live", record.phase.value == "live")
    result.expect("its version served", stage.live_version() == push.version)
    result.promoted += int(record.phase.value == "live")
    return result


class manual_approval:
    """The apps file with ``shop.manual_approval: true`` while inside."""

    def __init__(self, sandbox: FullSandbox) -> None:
        self.sandbox = sandbox
        self.original = b""

    def _s3(self) -> Any:
        return self.sandbox.session().client("s3", endpoint_url=self.sandbox.moto_url)

    def _put(self, body: bytes) -> None:
        self._s3().put_object(
            Bucket=BUCKET, Key=CONFIG_KEY, Body=body, ServerSideEncryption="AES256"
        )

    def __enter__(self) -> manual_approval:
        import yaml

        self.original = self._s3().get_object(Bucket=BUCKET, Key=CONFIG_KEY)["Body"].read()
        apps = yaml.safe_load(self.original)
        apps["apps"][APP]["manual_approval"] = True
        self._put(yaml.safe_dump(apps).encode())
        return self

    def __exit__(self, *exc: object) -> None:
        self._put(self.original)


def night(stage: Stage) -> ScenarioResult:
    """The night function shrinks the worker group to its night size (nodes out of HAProxy,
    drained one pod at a time under the shop's PDB, instances terminated) and restores it,
    under load."""
    result = ScenarioResult("night")
    sandbox = stage.sandbox
    before = len(sandbox.kube.cluster.items("nodes"))
    plan = sandbox.invoke("night", {"action": "plan"})
    stage.say(f"night plan: remove {', '.join(plan.get('would_remove', [])) or 'nothing'}")
    shrunk = sandbox.invoke("night", {"action": "shrink"}, timeout=600)
    removed = shrunk.get("removed", [])
    stage.say(f"night shrink: {shrunk.get('status')}, removed {', '.join(removed) or 'none'}")
    result.expect("shrunk", shrunk.get("status") == "shrunk")
    result.expect("at least one node removed", len(removed) >= 1)
    sandbox.kube.wait_for(lambda: len(sandbox.kube.cluster.items("nodes")) == before - len(removed))
    pending = _pending(sandbox)
    result.expect("no pod left pending at night", pending == 0)
    time.sleep(2)  # a moment at the night size, under load
    restored = sandbox.invoke("night", {"action": "restore"}, timeout=600)
    stage.say(
        f"morning restore: {restored.get('status')}, {restored.get('ready_nodes')} nodes Ready"
    )
    result.expect("restored", restored.get("status") == "restored")
    after = len(sandbox.kube.cluster.items("nodes"))
    result.expect("every node back", after == before)
    pending = max(pending, _pending(sandbox))
    result.figures = {
        "pending_pods": pending,
        "nodes_removed": len(removed),
        "nodes_restored": after - (before - len(removed)),
    }
    return result


def _pending(sandbox: FullSandbox) -> int:
    return sum(
        1
        for pod in sandbox.kube.cluster.items("pods")
        if pod.get("status", {}).get("phase") == "Pending"
    )


SCENARIOS: dict[str, Callable[[Stage], ScenarioResult]] = {
    "healthy": healthy,
    "crashloop": crashloop,
    "never-ready": never_ready,
    "failing-health": failing_health,
    "watch-revert": watch_revert,
    "supersede": supersede,
    "manual": manual,
    "resume": resume,
    "analysis-errors": analysis_errors,
    "analysis-slow": analysis_slow,
    "analysis-watch": analysis_watch,
    "night": night,
    "github": github,
}
