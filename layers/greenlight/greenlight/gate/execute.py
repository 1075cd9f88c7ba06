"""The gate's executor: one check of one rollout, doing the I/O of ``decide.py``'s steps.

A check gathers what its rollout's phase needs (the record and the app's state; the candidate's
Deployment and pods while it is gated; the fleet's last reload while it is promoting), asks
:func:`~.decide.decide` for a step, and carries it out. Steps that only gather more (a probe,
the preview route, the ready mark, the move to ``promoting``) ask again at once. A ``wait`` may
look again within the same invocation, close to a verdict: for up to ``health.successes + 1``
health intervals and never past the Lambda deadline; meanwhile the rollout's ``last_check_at``
is refreshed once an interval, so the sweep never takes a long check for a stuck chain.
Everything else ends the check, with the next one to queue when the chain goes on.

Every step is safe to repeat: a Lambda that dies mid-check leaves a phase the next check (or
the sweep's new chain) resumes from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from ..cluster.names import deployments, slot_name
from ..cluster.rest import KubeRest
from ..cluster.slots import scale_down
from ..colour import Colour
from ..deadline import Deadline
from ..edgepush import (
    EdgeCounters,
    EdgePush,
    FleetStatus,
    PushStatus,
    held_by,
    not_up_reason,
    pinned,
    published,
    taken,
    unsettled,
)
from ..errors import PermanentError, TemporaryError
from ..lifecycle import GATED, Actor, Phase
from ..store.fleet import FleetState
from ..store.rollouts import Rollout, RolloutStore
from .analysis import Outcome, analyse, baseline, unread
from .analysis import Verdict as Analysed
from .decide import (
    PIN_LOOK_SECONDS,
    Counts,
    Kind,
    Look,
    Policy,
    Status,
    Step,
    awaiting,
    decide,
    live_switch,
    promotion,
    retirable,
    retire_push,
    unpushed,
    warm_left,
    watch_windows,
)
from .observe import observe
from .probe import Prober, ProbeResult

if TYPE_CHECKING:
    from ..appconfig import App, AppsFile
    from ..store.pin import Pin

    class AppsLoader(Protocol):
        def load(self) -> AppsFile: ...

    class FleetLogReader(Protocol):
        def state(self) -> FleetState | None: ...

    class PinReader(Protocol):
        def get(self) -> Pin | None: ...


logger = Logger(child=True)
# A push refreshes the rollout's last_check_at first unless this check wrote it this recently:
# the sweep leaves a chain alone for PUSH_MAX_SECONDS and more after its last look
# (decide.stuck), so a look written seconds ago is as good as one written now.
FRESH_LOOK_MS = 5_000
MAX_STEPS = 10_000  # a check's steps are bounded by its deadline; this, by a number too
# Steps that gather more and decide again (a wait may look again within the invocation).
_GATHERING = frozenset(
    {
        Kind.PROBE,
        Kind.ANALYSE,
        Kind.PUSH_PREVIEW,
        Kind.MARK_READY,
        Kind.START_PROMOTION,
        Kind.WAIT,
    }
)


class Check(NamedTuple):
    app: str
    rollout_id: str
    attempt: int = 0
    successes: int = 0
    failures: int = 0
    chain: str = ""


class GateResult(NamedTuple):
    status: Status
    detail: str
    phase: str | None = None
    next_check: Check | None = None
    delay_seconds: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "detail": self.detail,
            "phase": self.phase,
            "next_check_in": self.delay_seconds if self.next_check else None,
        }


@dataclass
class GateDeps:
    apps: AppsLoader
    store: RolloutStore
    kube: KubeRest
    prober: Prober
    edge_push: EdgePush
    fleet: FleetLogReader
    clock_ms: Callable[[], int]
    deploy_deadline_seconds: int = 2400
    promote_deadline_seconds: int = 900
    sleep: Callable[[float], None] = time.sleep
    # The edge's counters (the gate's analysis); None: never read, every analysis "unread".
    edge_counters: EdgeCounters | None = None
    # The edge pin (store/pin.py ``EdgePin``), read before anything is scaled down; None:
    # never pinned.
    pin: PinReader | None = None

    def policy(self, app: App) -> Policy:
        return Policy.of(
            app,
            deploy_deadline=self.deploy_deadline_seconds,
            promote_deadline=self.promote_deadline_seconds,
        )


def app_named(apps: AppsFile, name: str) -> App:
    for app in apps.apps:
        if app.name == name:
            return app
    raise PermanentError(f"app {name!r} is not in the apps file")


# A check's counters read runs beside its probe (both take a round trip; the verdict needs both).
_READS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gate-counters")


class Gate:
    """One check of a rollout (or one manual act on it)."""

    def __init__(self, deps: GateDeps, deadline: Deadline | None = None) -> None:
        self.deps = deps
        self.store = deps.store
        self.deadline = deadline or Deadline.within(30)
        self._lingered = 0.0
        self._beat_ms = 0  # when this check last refreshed the rollout's last_check_at
        self._counted_ms = 0  # time spent reading counters since the last linger
        self._reading: Future[dict[str, Any]] | None = None  # started beside the last probe
        # Why a push of this check was refused because the edge is pinned to a release (""
        # if none was): then nothing is scaled away, since the pinned release may route to
        # either colour.
        self._pinned = ""

    # ------------------------------------------------------------------ the check
    def check(self, check: Check) -> GateResult:
        rollout = self.store.rollout(check.app, check.rollout_id)
        if rollout is None:
            return GateResult(Status.ENDED, f"no rollout {check.rollout_id} for app {check.app}")
        app = app_named(self.deps.apps.load(), check.app)
        return self.run(app, self._gather(app, rollout, check, reread=False), check)

    def run(self, app: App, look: Look, check: Check) -> GateResult:
        """Decide and act until a step ends the check."""
        policy = self.deps.policy(app)
        for _ in range(MAX_STEPS):
            step = decide(look, policy)
            following = self._follow(app, look, step, check)
            if isinstance(following, GateResult):
                return following
            look = following
        return self._wait(app, look, Step(Kind.WAIT, "too many steps in one check"), check)

    def _follow(self, app: App, look: Look, step: Step, check: Check) -> Look | GateResult:
        """A step that gathers more: the look that follows; any other step: its result."""
        rollout = look.rollout
        if rollout is None or step.kind not in _GATHERING:
            return self._act(app, look, step, check)
        if step.kind is Kind.WAIT:
            return self._look_again(app, look, rollout, step, check)
        gathering: dict[Kind, Callable[[], Look | GateResult]] = {
            Kind.PROBE: lambda: look._replace(probe=self._probe(app, rollout)),
            Kind.PUSH_PREVIEW: lambda: self._push_preview(app, look, rollout),  # or its end
            Kind.ANALYSE: lambda: self._analysed(app, look, rollout),
            Kind.MARK_READY: lambda: look._replace(rollout=self._mark_ready(app, rollout)),
            Kind.START_PROMOTION: lambda: self._start_promotion(app, look, rollout, step.detail),
        }
        return gathering[step.kind]()

    def _look_again(
        self, app: App, look: Look, rollout: Rollout, step: Step, check: Check
    ) -> Look | GateResult:
        """A wait: within this invocation when it may (the look after it), else its result."""
        if step.look_again is None or not self._linger(app, rollout, step):
            return self._wait(app, look, step, check)
        # What the store holds was read at this check's start; a look again refreshes what the
        # cluster and the fleet say, and the time.
        counts = Counts(step.counts.successes, step.counts.failures)
        again = self._observe(app, rollout, look._replace(counts=counts, probe=None, analysis=None))
        return again._replace(now_ms=self.deps.clock_ms(), lingered=True)

    def _gather(self, app: App, rollout: Rollout, check: Check, *, reread: bool = True) -> Look:
        """What ``rollout``'s phase needs to be decided on, read now."""
        found = self.store.rollout(rollout.app, rollout.rollout_id) if reread else rollout
        fresh = found or rollout
        look = Look(
            chain=check.chain,
            rollout=fresh,
            state=self.store.state(rollout.app),
            now_ms=self.deps.clock_ms(),
            counts=Counts(check.successes, check.failures),
            attempt=check.attempt,
        )
        return self._observe(app, fresh, look)

    def _observe(self, app: App, rollout: Rollout, look: Look) -> Look:
        """``look`` with what the cluster (gated) or the fleet (promoting) says now."""
        if rollout.phase in GATED:
            return look._replace(observation=observe(self.deps.kube, app, rollout))
        if rollout.phase is Phase.PROMOTING:
            fleet = self.deps.fleet.state()
            degraded = fleet["status"] if fleet is not None and fleet["degraded"] else None
            return look._replace(fleet_degraded=degraded)
        if rollout.phase is Phase.LIVE:  # its retirement waits while the edge is pinned
            return look._replace(pinned=self._pin_holds() or None)
        return look

    def _linger(self, app: App, rollout: Rollout, step: Step) -> bool:
        """Sleep ``step.look_again`` within this invocation if its budget allows."""
        seconds = step.look_again or 0.0
        # The counters read since the last look took part of the interval already.
        seconds, self._counted_ms = max(0.0, seconds - self._counted_ms / 1000), 0
        budget = (app.health.successes + 1) * app.health.interval_seconds
        if self._lingered + seconds > budget or self.deadline.remaining() < seconds + 10:
            return False
        self._look(rollout, unless_within_ms=app.health.interval_seconds * 1000)  # an interval
        self.deps.sleep(seconds)
        self._lingered += seconds
        return True

    # ------------------------------------------------------------------ the steps
    def _act(self, app: App, look: Look, step: Step, check: Check) -> GateResult:
        rollout = look.rollout
        if step.kind is Kind.END or rollout is None:
            phase = rollout.phase.value if rollout else None
            return GateResult(Status.ENDED, step.detail, phase)
        if step.kind is Kind.SUPERSEDE:
            self.store.move(rollout, Phase.SUPERSEDED, by=Actor.GATE, why=step.detail)
            return GateResult(Status.SUPERSEDED, step.detail, Phase.SUPERSEDED.value)
        if step.kind is Kind.AWAIT_APPROVAL:
            moved = self.store.move(
                rollout,
                Phase.AWAITING_APPROVAL,
                by=Actor.GATE,
                why=step.detail,
                sets=_judged("gating_analysis", look.analysis),
            )
            after = look._replace(rollout=moved or rollout)
            return self._wait(app, after, awaiting(self.deps.policy(app)), check)
        actions: dict[Kind, Callable[[], GateResult]] = {
            Kind.PROMOTE: lambda: self._promote(app, look, rollout, check),
            Kind.ROLL_BACK: lambda: self.roll_back(app, rollout, step.detail, phase=step.phase),
            Kind.REVERT: lambda: self.revert(app, rollout, step.detail, check=check),
            Kind.FAIL_PROMOTION: lambda: self._fail_promotion(
                app, look, rollout, step.detail, check=check
            ),
            Kind.MARK_LIVE: lambda: self._mark_live(app, look, rollout, step.detail),
            Kind.RETIRE: lambda: self._retire(app, look, rollout, step.detail, check),
        }
        return actions[step.kind]()

    def _wait(self, app: App, look: Look, step: Step, check: Check) -> GateResult:
        rollout = look.rollout
        nxt = Check(
            app.name,
            check.rollout_id,
            check.attempt + 1,
            step.counts.successes,
            step.counts.failures,
        )
        phase = rollout.phase.value if rollout else None
        return GateResult(step.status, step.detail, phase, nxt, int(step.next_in))

    def _push_preview(self, app: App, look: Look, rollout: Rollout) -> Look | GateResult:
        """Route the preview host to the candidate on the fleet (once). An edge pinned to a
        release cannot route it: the candidate is rolled back, with the pin's reason."""
        pushed, fleet_status = self._push(f"preview {app.name} {rollout.rollout_id}", rollout)
        if self._pinned:
            why = f"the preview route cannot reach the candidate: {self._pinned}"
            return self.roll_back(app, rollout, why)
        if not pushed:
            logger.info(
                "preview route not on the fleet yet",
                extra={"app": app.name, "rollout": rollout.rollout_id, "fleet": fleet_status},
            )
            return look._replace(preview_tried=True)
        return look._replace(rollout=self.store.update(rollout, {"preview_pushed": True}))

    def _start_promotion(self, app: App, look: Look, rollout: Rollout, why: str) -> Look:
        """The move to ``promoting``. With the fleet not degraded and the live colour to
        switch, the live colour switches in the same write (``RolloutStore.promote``): the
        look that follows has the rollout and the state as written, and the promotion's push
        comes next with nothing more to read or write. A degraded fleet: the move alone (the
        promotion waits for the fleet in ``promoting``, the live colour unchanged)."""
        # The move is this check's look at the rollout too: the push that follows need not
        # refresh last_check_at first.
        now = self.deps.clock_ms()
        sets = _judged("gating_analysis", look.analysis) | {"last_check_at": now}
        fleet = self.deps.fleet.state()
        degraded = fleet["status"] if fleet is not None and fleet["degraded"] else None
        again = Check(app.name, rollout.rollout_id, chain=look.chain)
        if degraded is None and promotion(rollout, look.state).switch:
            done = self.store.promote(
                rollout,
                by=Actor.GATE,
                why=why,
                sets=sets,
                switch=lambda state: live_switch(rollout, state),
            )
            if done is None:  # superseded, or someone else moved it: look again
                return self._gather(app, rollout, again)
            self._beat_ms = now
            promoted, state = done
            return Look(chain=look.chain, rollout=promoted, state=state, now_ms=now)
        moved = self.store.move(rollout, Phase.PROMOTING, by=Actor.GATE, why=why, sets=sets)
        if moved is None:  # someone else moved it: look again at what it is now
            return self._gather(app, rollout, again)
        self._beat_ms = now
        return self._gather(app, moved, again, reread=False)

    def promote_now(self, app: App, rollout: Rollout, why: str, *, chain: str) -> GateResult:
        """A manual promote: the move to ``promoting``, then the promotion."""
        state = self.store.state(app.name)
        if state.rollout_id != rollout.rollout_id:
            return GateResult(Status.SUPERSEDED, f"superseded by {state.rollout_id}")
        moved = self.store.move(rollout, Phase.PROMOTING, by=Actor.MANUAL, why=why)
        if moved is None:
            return GateResult(Status.ENDED, "the rollout is no longer being gated")
        check = Check(app.name, rollout.rollout_id, chain=moved.chain)
        return self.run(app, self._gather(app, moved, check), check)

    def _promote(self, app: App, look: Look, rollout: Rollout, check: Check) -> GateResult:
        plan = promotion(rollout, look.state)
        if plan.previous is not None:
            rollout = self.store.update(rollout, plan.previous)
        if plan.switch and not self.store.set_live(rollout, backup=plan.backup):
            why = "a newer rollout arrived before promotion"
            self.store.move(rollout, Phase.SUPERSEDED, by=Actor.GATE, why=why)
            return GateResult(Status.SUPERSEDED, why, Phase.SUPERSEDED.value)
        # The function first confirms the candidate's servers UP on every instance.
        promote = {"app": app.name, "colour": rollout.colour.value}
        answer = self._edge(f"promote {app.name} {rollout.rollout_id}", rollout, promote)
        pushed, fleet_status = taken(answer)
        if refused := pinned(answer):  # settled: the live colour back in the table, no push
            why = f"the promotion was refused: {refused}"
            state = self.store.state(app.name)
            return self._fail_promotion(app, look._replace(state=state), rollout, why, push=False)
        own = f"{app.name}-{rollout.colour.value}"
        if unsettled(answer) or (fleet_status == FleetStatus.NOT_UP and not held_by(answer, own)):
            # Not run, or its outcome unknown (busy, throttled, timed out), or held only by
            # another app's backend not UP: the app is live in the table, so any push publishes
            # it. The rollout stays promoting and the next check pushes again (its deadline
            # fails the promotion if it never settles).
            if down := not_up_reason(answer):
                fleet_status = f"{fleet_status}: held by another backend, not {own}: {down}"
            why = f"the promotion's push did not settle ({fleet_status}); pushed again next check"
            logger.warning(why, extra={"app": app.name, "answer": answer})
            nxt = Check(app.name, rollout.rollout_id, check.attempt + 1)
            return GateResult(
                Status.WAITING, why, Phase.PROMOTING.value, nxt, app.health.interval_seconds
            )
        if not pushed:
            why = f"the HAProxy fleet did not apply the promotion ({fleet_status})"
            if down := not_up_reason(answer, own):
                why = f"{why}: {down}"
            return self._fail_promotion(
                app, look._replace(state=self.store.state(app.name)), rollout, why
            )
        windows = watch_windows(self.deps.clock_ms(), self.deps.policy(app))
        why = f"live on {rollout.colour.value}; fleet {fleet_status}"
        sets: dict[str, Any] = {**windows, **published(answer), **self._baseline(app, rollout)}
        self.store.move(rollout, Phase.WATCHING, by=Actor.GATE, why=why, sets=sets)
        nxt = Check(app.name, rollout.rollout_id, check.attempt + 1)
        detail = f"{rollout.colour.value} is live (fleet {fleet_status})"
        judged = rollout.gating_analysis or {}
        if judged.get("outcome") in (Outcome.TOO_LITTLE, Outcome.UNREAD):
            detail += f"; {judged.get('reason')}"  # said, not taken as a pass
        return GateResult(
            Status.PROMOTED, detail, Phase.WATCHING.value, nxt, app.health.interval_seconds
        )

    def _fail_promotion(
        self,
        app: App,
        look: Look,
        rollout: Rollout,
        why: str,
        *,
        push: bool = True,
        check: Check | None = None,
    ) -> GateResult:
        """A promotion that did not happen: what was live before is live again (if the switch
        was made; pushed unless ``push`` is False), and the candidate goes once the edge took
        the revert push (:meth:`_push_revert`; a revert that waits for the edge is pushed again
        here by the next check)."""
        again = rollout.reverting is not None
        if look.state.live_rollout_id == rollout.rollout_id or again:
            previous = (
                rollout.previous_colour or rollout.colour.other
                if again
                else self.store.restore_live(rollout)
            )
            if previous is not None and push:
                pushed = f"revert {app.name}: the fleet did not take the promotion"
                said = f"{previous.value} stays live"
                return self._push_revert(
                    app,
                    rollout,
                    why,
                    previous,
                    phase=Phase.FAILED,
                    pushed=pushed,
                    said=said,
                    check=check,
                )
        return self._end(app, rollout, Phase.FAILED, why)

    def _push_revert(
        self,
        app: App,
        rollout: Rollout,
        reason: str,
        previous: Colour,
        *,
        phase: Phase,
        pushed: str,
        said: str,
        by: Actor = Actor.GATE,
        check: Check | None = None,
    ) -> GateResult:
        """Push the revert (``previous`` is live in the table again), naming ``restore``: the
        edge does not hold this app's moves on the UP check. Taken (or refused as pinned: the
        pin keeps the candidate running, ``_end``): the rollout ends in ``phase`` and its
        candidate goes. Not taken: the candidate is left running and the rollout waits, its
        revert pushed again by the next check (``reverting``), until its phase's deadline;
        past it, it ends saying that the edge did not take the revert, candidate left running."""
        restore = {"app": app.name, "colour": previous.value}
        answer = self._edge(pushed, rollout, restore=restore)
        ok, fleet_status = taken(answer)
        if ok or self._pinned:
            return self._end(app, rollout, phase, f"{reason}; {said} (fleet {fleet_status})", by=by)
        if down := not_up_reason(answer):
            fleet_status = f"{fleet_status}: {down}"
        step = unpushed(
            rollout,
            self.deps.policy(app),
            self.deps.clock_ms(),
            what=f"revert to {previous.value}",
            fleet_status=fleet_status,
            left=f"{rollout.colour.value} left running ({previous.value} is live in the table)",
            every=app.health.interval_seconds,
        )
        logger.warning(
            "revert not taken by the edge",
            extra={"app": app.name, "rollout": rollout.rollout_id, "answer": answer},
        )
        if step.kind is Kind.WAIT:
            if rollout.reverting is None:
                self.store.update(rollout, {"reverting": reason})
            attempt = check.attempt + 1 if check is not None else 0
            nxt = Check(app.name, rollout.rollout_id, attempt)
            detail = f"{reason}; {previous.value} is live in the table; {step.detail}"
            return GateResult(step.status, detail, rollout.phase.value, nxt, int(step.next_in))
        why = f"{reason}; {step.detail}"
        self.store.move(rollout, phase, by=by, why=why)  # nothing scaled away
        logger.warning(
            "rollout ended", extra={"app": app.name, "rollout": rollout.rollout_id, "why": why}
        )
        return GateResult(Status(phase.value), why, phase.value)

    def _mark_live(self, app: App, look: Look, rollout: Rollout, why: str) -> GateResult:
        sets = _judged("watch_analysis", look.analysis)
        live = self.store.move(rollout, Phase.LIVE, by=Actor.GATE, why=why, sets=sets) or rollout
        nxt = Check(app.name, rollout.rollout_id)
        delay = warm_left(live, self.deps.clock_ms())
        return GateResult(Status.LIVE, f"live; {why}", Phase.LIVE.value, nxt, delay)

    def _retire(self, app: App, look: Look, rollout: Rollout, why: str, check: Check) -> GateResult:
        """The warm window is over: the backup off the live route, then the previous colour
        scaled to zero, unless a newer rollout has written its candidate there. The pin is
        read first: while the edge is pinned (its release may route to the previous colour),
        nothing changes and the check waits; past the live phase's deadline the rollout
        settles with the previous colour left running."""
        other = rollout.colour.other
        kept = self._pin_holds()
        if kept:
            waiting = decide(look._replace(pinned=kept), self.deps.policy(app))
            if waiting.kind is Kind.WAIT:  # within the live phase's deadline
                return self._wait(app, look, waiting, check)
        if retire_push(rollout, look.state) and (
            look.state.backup_colour is None or self.store.drop_backup(rollout)
        ):
            answer = self._edge(
                f"retire {app.name} {rollout.rollout_id}: warm window over", rollout
            )
            pushed, fleet_status = taken(answer)
            if not pushed and not self._pinned:  # the backup may still be on the live route
                step = unpushed(
                    rollout,
                    self.deps.policy(app),
                    self.deps.clock_ms(),
                    what="retirement push (the backup off the live route)",
                    fleet_status=fleet_status,
                    left=f"{other.value} left running",
                    every=PIN_LOOK_SECONDS,
                )
                if step.kind is Kind.WAIT:  # the next check pushes again (backup_colour gone)
                    return self._wait(app, look, step, check)
                self.store.move(rollout, Phase.SETTLED, by=Actor.GATE, why=f"{why}; {step.detail}")
                return GateResult(Status.RETIRED, step.detail, Phase.SETTLED.value)
        kept = kept or self._pinned
        scaled = (
            not kept
            and look.state.live_colour is rollout.colour
            and scale_down(
                self.deps.kube,
                app.namespace,
                slot_name(app, other),
                holds=lambda owner: retirable(owner, rollout),
            )
        )
        self.store.move(rollout, Phase.SETTLED, by=Actor.GATE, why=why)
        if scaled:
            detail = f"{other.value} scaled to zero after the warm window"
        else:
            detail = f"{other.value} left as it is (none, or a newer rollout holds the slot)"
        if kept:
            detail = f"{other.value} left running: {kept}"
        return GateResult(Status.RETIRED, detail, Phase.SETTLED.value)

    # ------------------------------------------------------------------ endings
    def roll_back(
        self,
        app: App,
        rollout: Rollout,
        reason: str,
        *,
        phase: Phase | None = None,
        by: Actor = Actor.GATE,
    ) -> GateResult:
        """The candidate never took traffic: scale it away; live stays untouched."""
        return self._end(app, rollout, phase or Phase.ROLLED_BACK, reason, by=by)

    def revert(
        self,
        app: App,
        rollout: Rollout,
        reason: str,
        *,
        by: Actor = Actor.GATE,
        check: Check | None = None,
    ) -> GateResult:
        """After promotion: the previous colour is live again, then the candidate goes once
        the edge took the push (:meth:`_push_revert`; a revert still waiting for the edge is
        pushed again by the next check). With nothing live before it (an app's first rollout)
        it stays live, marked failed."""
        if not self.has_previous(app, rollout):
            why = f"{reason}; nothing was live before it, so it stays live"
            return self._end(app, rollout, Phase.FAILED, why, by=by)
        if rollout.reverting is not None:  # put back already: only the push again
            previous: Colour | None = rollout.previous_colour or rollout.colour.other
        else:
            previous = self.store.restore_live(rollout)
        if previous is None:  # a newer rollout took its warm slot: nothing to go back to
            why = f"{reason}; not reverted: a newer rollout has taken the previous colour's slot"
            return GateResult(Status.ENDED, why, rollout.phase.value)
        pushed = f"revert {app.name} {rollout.rollout_id}: {reason}"
        return self._push_revert(
            app,
            rollout,
            reason,
            previous,
            phase=Phase.ROLLED_BACK,
            pushed=pushed,
            said=f"{previous.value} is live again",
            by=by,
            check=check,
        )

    def has_previous(self, app: App, rollout: Rollout) -> bool:
        """Whether the colour that was live before ``rollout`` has a Deployment to go back to
        (an app's first rollout has none)."""
        previous = rollout.previous_colour or rollout.colour.other
        found = self.deps.kube.read(deployments(app.namespace, slot_name(app, previous)))
        return found is not None

    def _end(
        self, app: App, rollout: Rollout, phase: Phase, reason: str, *, by: Actor = Actor.GATE
    ) -> GateResult:
        """``rollout`` ends in ``phase``; its candidate is scaled away unless it is live, or
        the edge is pinned (the pinned release may route to it: then it is left running, and
        the reason says so)."""
        scaling = self.store.state(app.name).live_colour is not rollout.colour
        kept = self._pin_holds() if scaling else ""
        if kept:
            said = "" if kept in reason else f": {kept}"
            reason = f"{reason}; {rollout.colour.value} left running{said}"
        moved = self.store.move(rollout, phase, by=by, why=reason)
        if moved is not None and scaling and not kept:
            self._scale_away(app, rollout.colour, rollout)
        logger.warning(
            "rollout ended", extra={"app": app.name, "rollout": rollout.rollout_id, "why": reason}
        )
        return GateResult(Status(phase.value), reason, phase.value)

    def _scale_away(self, app: App, colour: Colour, rollout: Rollout) -> None:
        scale_down(
            self.deps.kube,
            app.namespace,
            slot_name(app, colour),
            holds=lambda owner: owner in (None, rollout.rollout_id),
        )

    def _pin_holds(self) -> str:
        """Why nothing may be scaled down now: the edge is pinned to a release (a push of this
        check was refused as pinned, or the pin is there: the release may route to either
        colour), or the pin could not be read; "" when nothing holds."""
        if self._pinned or self.deps.pin is None:
            return self._pinned
        try:
            found = self.deps.pin.get()
        except (ClientError, BotoCoreError) as exc:
            logger.warning("edge pin not read", extra={"error": str(exc)})
            return f"the edge pin could not be read ({str(exc)[:200]})"
        return found.refusal() if found is not None else ""

    # ------------------------------------------------------------------ edges
    def _push(self, reason: str, rollout: Rollout) -> tuple[bool, str]:
        """Push the edge (the haproxy function); (whether the fleet took it, fleet status)."""
        return taken(self._edge(reason, rollout))

    def _edge(
        self,
        reason: str,
        rollout: Rollout,
        promote: dict[str, str] | None = None,
        *,
        restore: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The haproxy function's answer to a push within this check's deadline. The rollout's
        ``last_check_at`` is refreshed before and after (a push may take minutes; the sweep
        leaves a chain alone for longer than the longest push: ``decide.stuck``). A push that
        raised (its outcome unknown) answers ``failed``, one of the unsettled answers. The
        refresh before is left out when this check wrote it within :data:`FRESH_LOOK_MS`."""
        self._look(rollout, unless_within_ms=FRESH_LOOK_MS)
        try:
            if promote is not None:
                answer = self.deps.edge_push(reason, deadline=self.deadline, promote=promote)
            elif restore is not None:
                answer = self.deps.edge_push(reason, deadline=self.deadline, restore=restore)
            else:
                answer = self.deps.edge_push(reason, deadline=self.deadline)
            self._pinned = self._pinned or pinned(answer)
            return answer
        except (ClientError, BotoCoreError, TemporaryError) as exc:
            logger.warning("edge push failed", extra={"why": reason, "error": str(exc)})
            return {"status": PushStatus.FAILED.value, "error": str(exc)[:500]}
        finally:
            self._look(rollout)

    def _look(self, rollout: Rollout, *, unless_within_ms: int = 0) -> None:
        """Refresh the rollout's ``last_check_at`` (the sweep leaves a chain it sees looked
        at alone), unless this check wrote it within ``unless_within_ms``."""
        now = self.deps.clock_ms()
        if unless_within_ms and now - self._beat_ms < unless_within_ms:
            return
        self.store.touch(rollout.app, rollout.rollout_id, now)
        self._beat_ms = now

    # ------------------------------------------------------------------ analysis
    def _counters(self, app: App, rollout: Rollout) -> dict[str, Any]:
        """The edge's counters for the candidate's colour and the other one, or why not (an
        answer :func:`.analysis.unread` explains). Never raises: a read that failed does not
        block the gate, the health checks decide alone."""
        if self.deps.edge_counters is None:
            return {"status": "unavailable", "error": "the gate has no counters port"}
        began = self.deps.clock_ms()
        colours = [rollout.colour.value, rollout.colour.other.value]
        try:
            return self.deps.edge_counters(app.name, colours, deadline=self.deadline)
        except (ClientError, BotoCoreError, TemporaryError, PermanentError) as exc:
            logger.warning("counters not read", extra={"app": app.name, "error": str(exc)})
            return {"status": "failed", "error": str(exc)[:300]}
        finally:
            self._counted_ms += max(0, self.deps.clock_ms() - began)

    def _analyse(self, app: App, rollout: Rollout) -> Analysed:
        """The verdict on the candidate's traffic since its baseline (ready, or promoted)."""
        thresholds = self.deps.policy(app).analysis
        if thresholds is None:  # decide asks only when the app's analysis is on
            return Analysed(Outcome.UNREAD, "analysis: off")
        since = "since promotion" if rollout.phase is Phase.WATCHING else "since ready"
        reading, self._reading = self._reading, None
        verdict = analyse(
            rollout.analysis_baseline,
            reading.result() if reading is not None else self._counters(app, rollout),
            thresholds,
            app=app.name,
            colour=rollout.colour.value,
            # The ratio only side by side: in the watch the previous colour serves nothing.
            live_colour=None if rollout.phase is Phase.WATCHING else rollout.colour.other.value,
            since=since,
        )
        logger.info(
            "analysis",
            extra={
                "app": app.name,
                "rollout": rollout.rollout_id,
                "verdict": verdict.to_dict(),
                "notes": list(verdict.notes),
            },
        )
        return verdict

    def _analysed(self, app: App, look: Look, rollout: Rollout) -> Look:
        """``look`` with the analysis of the candidate's counters; a read that became the
        baseline (there was none), or the baseline with the instances it lacked merged in, is
        stored on the rollout first."""
        verdict = self._analyse(app, rollout)
        if verdict.baseline is not None:
            rollout = self.store.update(rollout, {"analysis_baseline": verdict.baseline})
        return look._replace(rollout=rollout, analysis=verdict)

    def _baseline(self, app: App, rollout: Rollout) -> dict[str, Any]:
        """``{"analysis_baseline": ...}``: the candidate's counters now, what its analysis is
        measured from; None when the app's analysis is off or the read failed (then the first
        read that succeeds becomes it: :func:`.analysis.analyse`), never an earlier phase's."""
        if self.deps.policy(app).analysis is None:
            return {"analysis_baseline": None}
        sample = self._counters(app, rollout)
        problem = unread(sample)
        if problem is not None:
            logger.warning("no analysis baseline", extra={"app": app.name, "why": problem})
            return {"analysis_baseline": None}
        return {"analysis_baseline": baseline(sample, app.name, rollout.colour.value)}

    def _mark_ready(self, app: App, rollout: Rollout) -> Rollout:
        """The candidate first seen ready: when, and its counters' baseline."""
        sets = {"ready_at": self.deps.clock_ms(), **self._baseline(app, rollout)}
        return self.store.update(rollout, sets)

    def _probe(self, app: App, rollout: Rollout) -> ProbeResult:
        """An HTTPS check through the preview host; with the app's analysis on, the counters
        are read at the same time (the ANALYSE step that follows a counted probe uses them)."""
        if self.deps.policy(app).analysis is not None:
            self._reading = _READS.submit(self._counters, app, rollout)
        health = app.health
        return self.deps.prober.check(
            app.hosts.preview, health.path, health.expect_status, health.timeout_seconds
        )


def _judged(field: str, verdict: Analysed | None) -> dict[str, Any]:
    """``{field: the verdict}`` for the rollout record, when there is one."""
    return {field: verdict.to_dict()} if verdict is not None else {}
