"""The health gate: one check of one rollout, then the next check queued.

Each check reads the rollout and the app's state, acts on the rollout's phase, and is safe to
repeat (a Lambda that dies mid-check leaves a phase the next check resumes from):

- ``gating``: observe the candidate (``observe.assess``): failed -> roll back; not ready past
  the app's ``ready_deadline_seconds`` -> roll back; ready -> an HTTP check through the preview
  route. ``health.successes`` consecutive passes promote (or wait for a manual promote when the
  app has ``manual_approval``); ``health.failures`` consecutive failures roll back.
- ``awaiting_approval``: keep observing (a crash still rolls back) until promoted or aborted.
- ``promoting``: no promotion while the last fleet reload left the fleet degraded (it waits);
  live colour := candidate (only while this rollout is the app's newest), HAProxy push confirmed
  on the fleet; a push the fleet did not take reverts the live colour and fails the rollout.
- ``watching``: HTTP checks on a live host until ``promotion.watch_seconds`` have passed;
  ``health.failures`` consecutive failures switch back to the previous colour (still warm).
- ``live``: once ``promotion.warm_seconds`` have passed, the previous colour is scaled to zero,
  unless a newer rollout has taken that slot.

Rolling back scales the candidate to zero and leaves the live colour untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger

from ..cluster.rest import KubeRest, deployments
from ..colour import Colour
from ..deadline import Deadline
from ..edge import checks
from ..edge.invoke import EdgePush, taken
from ..errors import PermanentError
from ..rollout.deploy import read
from ..rollout.records import AppState, Phase, Rollout, RolloutStore
from ..rollout.workload import ROLLOUT_ANNOTATION, slot_name
from .observe import Observation, assess
from .probe import Prober, ProbeResult

if TYPE_CHECKING:
    from ..appconfig import App, AppsFile

logger = Logger(child=True)

GATING_PHASES = (Phase.GATING, Phase.AWAITING_APPROVAL)
# How often a check looks at a candidate that is not ready yet, within its invocation.
WATCH_STEP_SECONDS = 0.25
ENDED = (Phase.LIVE, Phase.FAILED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.SUPERSEDED)


class AppsLoader(Protocol):
    def load(self) -> AppsFile: ...


class FleetState(Protocol):
    def state(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Check:
    app: str
    rollout_id: str
    attempt: int = 0
    successes: int = 0
    failures: int = 0
    chain: str = ""


@dataclass(frozen=True)
class GateResult:
    status: str  # waiting | promoted | live | rolled_back | failed | ended | retired | ...
    detail: str
    phase: str | None = None
    next_check: Check | None = None
    delay_seconds: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "detail": self.detail,
            "phase": self.phase,
            "next_check_in": self.delay_seconds if self.next_check else None,
        }


@dataclass
class GateDeps:
    apps: AppsLoader
    store: RolloutStore
    kube: Callable[[], KubeRest]
    prober: Prober
    edge_push: EdgePush
    fleet: FleetState
    clock_ms: Callable[[], int]
    sleep: Callable[[float], None] = time.sleep


def app_named(apps: AppsFile, name: str) -> App:
    for app in apps.apps:
        if app.name == name:
            return app
    raise PermanentError(f"app {name!r} is not in the apps file")


def _pods(kube: KubeRest, app: App, rollout_id: str) -> list[dict[str, Any]]:
    listed = kube.get(
        f"/api/v1/namespaces/{app.namespace}/pods",
        labelSelector=f"app.kubernetes.io/name={app.name}",
    )
    return [
        p
        for p in listed.get("items", [])
        if (p["metadata"].get("annotations") or {}).get(ROLLOUT_ANNOTATION) == rollout_id
    ]


def observe(kube: KubeRest, app: App, rollout: Rollout) -> Observation:
    deployment = read(kube, deployments(app.namespace, slot_name(app, rollout.colour)))
    if deployment is not None:
        owner = (deployment["metadata"].get("annotations") or {}).get(ROLLOUT_ANNOTATION)
        if owner != rollout.rollout_id:
            return Observation("failed", f"the slot now holds rollout {owner}")
    return assess(
        deployment,
        _pods(kube, app, rollout.rollout_id),
        rollout_id=rollout.rollout_id,
        max_restarts=app.health.max_restarts,
    )


def scale(kube: KubeRest, app: App, colour: Colour, replicas: int) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        kube.patch(
            deployments(app.namespace, slot_name(app, colour)) + "/scale",
            {"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json",
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


class Gate:
    """One check of a rollout. Close to a verdict, a check may look again within the same
    invocation (up to ``health.successes + 1`` health intervals, never past ``deadline``)
    rather than a queue delay away: readiness is seen within ``WATCH_STEP_SECONDS`` and the
    health passes follow one another at the app's interval. While it looks, it refreshes the
    rollout's ``last_check_at`` once an interval, so the sweep never mistakes a long check for a
    stuck chain."""

    def __init__(self, deps: GateDeps, deadline: Deadline | None = None) -> None:
        self.deps = deps
        self.deadline = deadline or Deadline.within(30)
        self._kube: KubeRest | None = None
        self._lingered = 0.0
        self._beat_ms = 0  # when this check last refreshed the rollout's last_check_at

    @property
    def kube(self) -> KubeRest:
        if self._kube is None:
            self._kube = self.deps.kube()
        return self._kube

    # ------------------------------------------------------------------ entry
    def check(self, check: Check) -> GateResult:
        store = self.deps.store
        rollout = store.rollout(check.app, check.rollout_id)
        if rollout is None:
            return GateResult("ended", f"no rollout {check.rollout_id} for app {check.app}")
        if check.chain != rollout.chain:
            # A redelivered or duplicate message: another chain of checks has taken over.
            return GateResult("ended", f"chain {check.chain or '-'} was taken over", None)
        state = store.state(check.app)
        if rollout.phase in ENDED and not (rollout.phase is Phase.LIVE and not rollout.retired):
            return GateResult("ended", f"rollout is {rollout.phase.value}", rollout.phase.value)
        if state.rollout_id != rollout.rollout_id and rollout.phase in (
            Phase.DEPLOYING,
            *GATING_PHASES,
        ):
            store.set_phase(
                check.app,
                rollout.rollout_id,
                Phase.SUPERSEDED,
                note=f"superseded by {state.rollout_id}",
                expect=(Phase.DEPLOYING, *GATING_PHASES),
            )
            return GateResult("superseded", f"superseded by {state.rollout_id}", "superseded")
        app = app_named(self.deps.apps.load(), check.app)
        return self._step(check, app, rollout, state)

    def _step(self, check: Check, app: App, rollout: Rollout, state: AppState) -> GateResult:
        if rollout.phase is Phase.DEPLOYING:
            return self._wait(check, app, "the rollout function has not handed this on yet")
        if rollout.phase in GATING_PHASES:
            return self._gating(check, app, rollout)
        if rollout.phase is Phase.PROMOTING:
            return self._promote(check, app, rollout, state)
        if rollout.phase is Phase.WATCHING:
            return self._watching(check, app, rollout)
        return self._retire(check, app, rollout, state)

    def _linger(self, app: App, rollout: Rollout, seconds: float) -> bool:
        """Sleep ``seconds`` within this invocation if its budget allows; False if not."""
        # One interval to see the candidate ready, then every pass: one invocation, mostly.
        budget = (app.health.successes + 1) * app.health.interval_seconds
        if self._lingered + seconds > budget or self.deadline.remaining() < seconds + 10:
            return False
        now = self.deps.clock_ms()
        if now - self._beat_ms >= app.health.interval_seconds * 1000:  # once an interval
            self.deps.store.update(app.name, rollout.rollout_id, {"last_check_at": now})
            self._beat_ms = now
        self.deps.sleep(seconds)
        self._lingered += seconds
        return True

    # ------------------------------------------------------------------ phases
    def _gating(self, check: Check, app: App, rollout: Rollout) -> GateResult:
        seen = observe(self.kube, app, rollout)
        if seen.verdict == "failed":
            return self.roll_back(app, rollout, seen.reason)
        if not rollout.preview_pushed and seen.verdict == "waiting":
            # The rollout function pushes the preview route before it writes the pods; if the
            # fleet did not take that push, again here while the pods start.
            rollout = self._push_preview(app, rollout) or rollout
        watched = False
        while seen.verdict == "waiting" and self._linger(app, rollout, WATCH_STEP_SECONDS):
            watched = True
            seen = observe(self.kube, app, rollout)
            if seen.verdict == "failed":
                return self.roll_back(app, rollout, seen.reason)
        if seen.verdict == "waiting":
            age = (self.deps.clock_ms() - rollout.created_at) / 1000
            if age > app.health.ready_deadline_seconds:
                return self.roll_back(
                    app,
                    rollout,
                    f"not ready within {app.health.ready_deadline_seconds} s ({seen.reason})",
                )
            # Watched here for a while already: the next check looks again at once.
            return self._wait(check, app, seen.reason, factor=0 if watched else 1)
        if rollout.phase is Phase.AWAITING_APPROVAL:
            return self._wait(check, app, "healthy; waiting for a manual promote", factor=5)
        return self._health(check, app, rollout)

    def _push_preview(self, app: App, rollout: Rollout) -> Rollout | None:
        """Route the preview host to the candidate on the fleet, once; the updated rollout, or
        None if the fleet did not take the push."""
        pushed, fleet_status = self._push(f"preview {app.name} {rollout.rollout_id}")
        if not pushed:
            logger.info(
                "preview route not on the fleet yet",
                extra={"app": app.name, "rollout": rollout.rollout_id, "fleet": fleet_status},
            )
            return None
        self.deps.store.update(app.name, rollout.rollout_id, {"preview_pushed": True})
        return replace(rollout, preview_pushed=True)

    def _health(self, check: Check, app: App, rollout: Rollout) -> GateResult:
        """The candidate is ready: HTTP checks through its preview route (pushed to the fleet
        while the candidate started, or now if the fleet did not take that push)."""
        if not rollout.preview_pushed:
            pushed = self._push_preview(app, rollout)
            if pushed is None:
                return self._wait(check, app, "preview route not on the fleet yet")
            rollout = pushed
        if rollout.ready_at is None:
            now = self.deps.clock_ms()
            self.deps.store.update(app.name, rollout.rollout_id, {"ready_at": now})
            rollout = replace(rollout, ready_at=now)
        passed = self._passes(check, app, rollout)
        if isinstance(passed, GateResult):
            return passed
        if app.manual_approval:
            self.deps.store.set_phase(
                app.name,
                rollout.rollout_id,
                Phase.AWAITING_APPROVAL,
                note=f"healthy ({passed} passes); waiting for a manual promote",
                expect=(Phase.GATING,),
            )
            return self._wait(check, app, "healthy; waiting for a manual promote", factor=5)
        return self.start_promotion(app, rollout, f"healthy: {passed} passes in a row")

    def _passes(self, check: Check, app: App, rollout: Rollout) -> int | GateResult:
        """Probe until ``health.successes`` passes in a row (their count), or what comes of
        not getting there in this invocation: a roll back, or the next check queued."""
        successes, failures = check.successes, check.failures
        grace_until = (rollout.ready_at or 0) + checks.ADMISSION_GRACE_SECONDS * 1000
        while True:
            probe = self._probe(app, app.hosts.preview)
            if not probe.ok and self.deps.clock_ms() < grace_until:
                # HAProxy may not have admitted the candidate's servers yet: not a failure.
                successes, pause, note = 0, checks.FAST_CHECK_MS / 1000, "admitting the candidate"
            else:
                successes = successes + 1 if probe.ok else 0
                failures = 0 if probe.ok else failures + 1
                if failures >= app.health.failures:
                    return self.roll_back(
                        app,
                        rollout,
                        f"health check failed {failures} times in a row: {probe.detail}",
                    )
                if successes >= app.health.successes:
                    return successes
                pause = app.health.interval_seconds
                note = f"{successes}/{app.health.successes} passes"
            if not self._linger(app, rollout, pause):  # else: the next probe, in this invocation
                nxt = Check(app.name, rollout.rollout_id, check.attempt + 1, successes, failures)
                return GateResult(
                    "waiting",
                    f"{probe.detail} ({note})",
                    rollout.phase.value,
                    nxt,
                    app.health.interval_seconds,
                )

    def start_promotion(self, app: App, rollout: Rollout, why: str) -> GateResult:
        state = self.deps.store.state(app.name)
        if state.rollout_id != rollout.rollout_id:
            return GateResult("superseded", f"superseded by {state.rollout_id}")
        moved = self.deps.store.set_phase(
            app.name, rollout.rollout_id, Phase.PROMOTING, note=why, expect=GATING_PHASES
        )
        if not moved:
            return GateResult("ended", "the rollout is no longer being gated")
        return self._promote(Check(app.name, rollout.rollout_id), app, rollout, state)

    def _promote(self, check: Check, app: App, rollout: Rollout, state: AppState) -> GateResult:
        store = self.deps.store
        fleet = self.deps.fleet.state()
        if fleet is not None and fleet.get("degraded"):
            return self._wait(
                check, app, f"the HAProxy fleet is degraded ({fleet.get('status')}); not promoting"
            )
        if rollout.previous_colour is None and state.live_colour is not rollout.colour:
            # What was live, recorded once: a revert (now or in the watch window) goes back to it.
            rollout = replace(
                rollout,
                previous_colour=state.live_colour,
                previous_version=state.live_version or "",
                previous_image=state.live_image or "",
            )
            store.update(
                app.name,
                rollout.rollout_id,
                {
                    "previous_colour": state.live_colour.value,
                    "previous_version": rollout.previous_version or "",
                    "previous_image": rollout.previous_image or "",
                },
            )
        # What was live stays warm behind the new colour: HAProxy sends live traffic to it while
        # every server of the new colour is down, before this gate has even seen the failure.
        # (A colour with no Service, before an app's first promotion, is left out by the render.)
        backup = rollout.previous_colour
        if state.live_colour is not rollout.colour and not store.set_live(
            app.name,
            colour=rollout.colour,
            version=rollout.version,
            image=rollout.image,
            rollout_id=rollout.rollout_id,
            backup=backup,
        ):
            store.set_phase(
                app.name,
                rollout.rollout_id,
                Phase.SUPERSEDED,
                note="superseded before promotion",
                expect=(Phase.PROMOTING,),
            )
            return GateResult("superseded", "a newer rollout arrived before promotion")
        pushed, fleet_status = self._push(f"promote {app.name} {rollout.rollout_id}")
        if not pushed:
            previous = self._restore_previous(app, rollout)
            self._push(f"revert {app.name}: the fleet did not take the promotion")
            return self._end(
                app,
                rollout,
                Phase.FAILED,
                f"the HAProxy fleet did not apply the promotion ({fleet_status}); "
                f"{previous.value} stays live",
                scale_down=rollout.colour,
            )
        now = self.deps.clock_ms()
        store.update(
            app.name,
            rollout.rollout_id,
            {
                "promoted_at": now,
                "watch_until": now + app.promotion.watch_seconds * 1000,
                "warm_until": now + app.promotion.warm_seconds * 1000,
            },
        )
        store.set_phase(
            app.name,
            rollout.rollout_id,
            Phase.WATCHING,
            note=f"live on {rollout.colour.value}; fleet {fleet_status}",
            expect=(Phase.PROMOTING,),
        )
        nxt = Check(app.name, rollout.rollout_id, check.attempt + 1)
        return GateResult(
            "promoted",
            f"{rollout.colour.value} is live (fleet {fleet_status})",
            Phase.WATCHING.value,
            nxt,
            app.health.interval_seconds,
        )

    def _watching(self, check: Check, app: App, rollout: Rollout) -> GateResult:
        # Through the preview host: while a promotion is watched it reaches the new colour
        # alone, where the live hosts would also be answered by the warm backup.
        probe = self._probe(app, app.hosts.preview)
        failures = 0 if probe.ok else check.failures + 1
        if failures >= app.health.failures:
            return self.revert(app, rollout, f"failed after promotion: {probe.detail}")
        now = self.deps.clock_ms()
        if rollout.watch_until is not None and now >= rollout.watch_until and probe.ok:
            self.deps.store.set_phase(
                app.name,
                rollout.rollout_id,
                Phase.LIVE,
                note="watch window passed",
                expect=(Phase.WATCHING,),
            )
            return self._retire_later(app, rollout, "live; watch window passed")
        nxt = Check(app.name, rollout.rollout_id, check.attempt + 1, 0, failures)
        return GateResult(
            "watching", probe.detail, Phase.WATCHING.value, nxt, app.health.interval_seconds
        )

    def _retire_later(self, app: App, rollout: Rollout, detail: str) -> GateResult:
        remaining = max(0, (rollout.warm_until or 0) - self.deps.clock_ms()) // 1000
        nxt = Check(app.name, rollout.rollout_id)
        return GateResult("live", detail, Phase.LIVE.value, nxt, int(min(900, remaining)))

    def _retire(self, check: Check, app: App, rollout: Rollout, state: AppState) -> GateResult:
        if rollout.warm_until is not None and self.deps.clock_ms() < rollout.warm_until:
            return self._retire_later(app, rollout, "the previous colour is kept warm")
        mine = state.live_colour is rollout.colour
        # A newer rollout that failed before writing its candidate (the ECR wait, the capacity
        # check) left the warm slot as it was: it is still ours to scale down.
        untouched = mine and self._slot_image(app, rollout.colour.other) == rollout.previous_image
        if mine and (state.rollout_id == rollout.rollout_id or untouched):
            if state.backup_colour is not None and state.rollout_id == rollout.rollout_id:
                self.deps.store.drop_backup(app.name, rollout.rollout_id)
                self._push(f"retire {app.name} {rollout.rollout_id}: warm window over")
            scale(self.kube, app, rollout.colour.other, 0)
            detail = f"{rollout.colour.other.value} scaled to zero after the warm window"
        else:
            detail = "a newer rollout holds the other slot: left as it is"
        self.deps.store.update(app.name, rollout.rollout_id, {"retired": True})
        return GateResult("retired", detail, Phase.LIVE.value)

    def _slot_image(self, app: App, colour: Colour) -> str | None:
        found = read(self.kube, deployments(app.namespace, slot_name(app, colour)))
        if found is None:
            return None
        containers = found["spec"]["template"]["spec"].get("containers") or []
        named = [c for c in containers if c.get("name") == app.container] or containers[:1]
        return str(named[0].get("image")) if named else None

    # ------------------------------------------------------------------ endings
    def roll_back(
        self, app: App, rollout: Rollout, reason: str, *, phase: Phase | None = None
    ) -> GateResult:
        """The candidate never took traffic: scale it away; live stays untouched."""
        return self._end(
            app, rollout, phase or Phase.ROLLED_BACK, reason, scale_down=rollout.colour
        )

    def revert(self, app: App, rollout: Rollout, reason: str) -> GateResult:
        """After promotion: the previous colour is live again, then the candidate goes. With
        nothing live before it (an app's first rollout) it stays live, marked failed."""
        if not self.has_previous(app, rollout):
            return self._end(
                app,
                rollout,
                Phase.FAILED,
                f"{reason}; nothing was live before it, so it stays live",
                scale_down=rollout.colour,  # live: _end leaves it running
            )
        previous = self._restore_previous(app, rollout)
        _, fleet_status = self._push(f"revert {app.name} {rollout.rollout_id}: {reason}")
        return self._end(
            app,
            rollout,
            Phase.ROLLED_BACK,
            f"{reason}; {previous.value} is live again (fleet {fleet_status})",
            scale_down=rollout.colour,
        )

    def has_previous(self, app: App, rollout: Rollout) -> bool:
        """Whether the colour that was live before ``rollout`` has a Deployment to go back to
        (an app's first rollout has none)."""
        previous = rollout.previous_colour or rollout.colour.other
        return read(self.kube, deployments(app.namespace, slot_name(app, previous))) is not None

    def _restore_previous(self, app: App, rollout: Rollout) -> Colour:
        """Make what was live before ``rollout``'s promotion live again (unconditionally)."""
        previous = rollout.previous_colour or rollout.colour.other
        self.deps.store.set_live(
            app.name,
            colour=previous,
            version=rollout.previous_version or "",
            image=rollout.previous_image or "",
            rollout_id=None,
        )
        return previous

    def _push(self, reason: str) -> tuple[bool, str]:
        """Push the edge (the haproxy function); (whether the fleet took it, fleet status)."""
        return taken(self.deps.edge_push(reason))

    def _end(
        self, app: App, rollout: Rollout, phase: Phase, reason: str, *, scale_down: Colour
    ) -> GateResult:
        ended = self.deps.store.set_phase(
            app.name,
            rollout.rollout_id,
            phase,
            note=reason,
            reason=reason,
            expect=(Phase.DEPLOYING, *GATING_PHASES, Phase.PROMOTING, Phase.WATCHING, Phase.LIVE),
        )
        if ended:
            state = self.deps.store.state(app.name)
            if state.live_colour is not scale_down:
                scale(self.kube, app, scale_down, 0)
        logger.warning(
            "rollout ended", extra={"app": app.name, "rollout": rollout.rollout_id, "why": reason}
        )
        return GateResult(phase.value, reason, phase.value)

    # ------------------------------------------------------------------ helpers
    def _wait(self, check: Check, app: App, detail: str, *, factor: int = 1) -> GateResult:
        nxt = Check(app.name, check.rollout_id, check.attempt + 1, check.successes, check.failures)
        return GateResult("waiting", detail, None, nxt, app.health.interval_seconds * factor)

    def _probe(self, app: App, host: str) -> ProbeResult:
        return self.deps.prober.check(
            host, app.health.path, app.health.expect_status, app.health.timeout_seconds
        )
