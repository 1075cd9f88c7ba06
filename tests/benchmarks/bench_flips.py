"""Blue/green flips under load in the full sandbox (``make bench``): the gate and the fleet's
runtime switch against the reload switch and two controls, in one run.

Steady HTTPS load through the sandbox's HAProxy instances (Python clients on each, keep-alive
and a new TLS connection per request, which see which version answers; and wrk opening a new
TLS connection per request on the first), while:

1. **Greenlight**: 2 x FLIPS commits pushed one after the other (CodeCommit events), each gated,
   promoted through the haproxy function and the SSM document on both instances, watched and
   live; taking turns, one flip with the runtime switch (``Mode=switch``: the hosts map
   replaced through HAProxy's admin socket, no reload) and one with the reload switch
   (``GREENLIGHT_EDGE_RUNTIME_SWITCH=false``: ``Mode=apply``, canary then the rest, each a
   seamless reload), so that both see the same machine at the same time. Per flip: Deployment
   available -> the gate's promotion decision, that decision -> every instance serving the new
   version, and the overhead beyond the configured proof (available -> every instance, less
   the ``health.successes`` passes ``health.interval_seconds`` apart). Failed requests are
   counted per method, by when they failed.
2. **Control: switch before green is ready**: CONTROL_FLIPS times, the other colour, scaled to
   zero, gets a new image and its replicas back, and the live colour moves to it at once (the
   same haproxy push and reload) without waiting for its pods: what the gate prevents.
3. **Control: plain -sf reload**: a third HAProxy in front of the same cluster, configured like
   the fleet but without master-worker, flipping its live route between the two colours FLIPS
   times with ``haproxy -sf``: what the reload method prevents.

Prints requests and failed requests for each, and the flip timings. Goals: 0 failed requests for
Greenlight; the gate's decision -> every instance serving green <= 0.5 s median; the overhead
beyond the proof <= 1 s median.

wrk runs with ``wrk_status.lua``: per second, its answers by status. Its non-2xx answers and the
Python clients' failed requests are placed in the flips' windows (wrk_timeline.py): each flip's
switch (the gate's decision -> every instance serving), its proof (available -> decision), the
rest of the flip, or outside any flip; and printed per method and window, by status. wrk's own
error counters (connect, read, write, timeout) stay totals: wrk has no hook to time them.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reload import PlainHaproxy, control_config, parse, under_load
from flip_steps import Recorder, Steps, split
from flip_steps import report as steps_report
from wrk_timeline import SCRIPT, FlipWindows, Placed, WrkTimeline, parse_timeline, place, report

from greenlight_sandbox import scenarios
from greenlight_sandbox.fullstack import HTTPS_PORT, FullSandbox
from greenlight_sandbox.load import Load

ROOT = Path(__file__).resolve().parents[2]
FLIPS = int(os.environ.get("GREENLIGHT_BENCH_FLIPS", "10"))  # per method: 20 in all
# Each load's bound: every client of a phase runs until the phase stops it, or this long.
WRK_SECONDS = 3600
CONTROL_FLIPS = int(os.environ.get("GREENLIGHT_BENCH_CONTROL_FLIPS", "2"))


class Traffic:
    """Python clients on every address (they see which version answers) and, on the first,
    wrk opening a new TLS connection for every request (the rate at which a reload's accept
    races show), with wrk_status.lua: its answers by second and status."""

    def __init__(self, addresses: list[str]) -> None:
        self.loads = [
            Load(
                a,
                HTTPS_PORT,
                scenarios.LIVE_HOST,
                keepalive_workers=2,
                new_connection_workers=2,
                max_seconds=WRK_SECONDS,  # as long as wrk (the default stops them at 300 s)
            ).start()
            for a in addresses
        ]
        host = f"Host: {scenarios.LIVE_HOST}"
        url = f"https://{addresses[0]}:{HTTPS_PORT}/"
        self.wrk = subprocess.Popen(
            [
                "wrk",
                "-s",
                str(SCRIPT),
                "-t1",
                "-c4",
                "-d",
                f"{WRK_SECONDS}s",
                "--timeout",
                "5s",
                "-H",
                host,
                "-H",
                "Connection: close",
                url,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        # wrk's answers by second, once stopped (None with why when its lines are missing).
        self.timeline: WrkTimeline | None = None
        self.timeline_error = ""

    def stop(self) -> tuple[int, int, dict[str, int]]:
        stats = [load.stop() for load in self.loads]
        self.wrk.send_signal(signal.SIGINT)
        text, _ = self.wrk.communicate(timeout=30)
        requests, failed, detail = parse(text)
        try:
            self.timeline = parse_timeline(text)
        except ValueError as e:
            self.timeline_error = str(e)
        if self.timeline is not None and (codes := self.timeline.status_totals()):
            detail += " (" + ", ".join(f"{c} x{n}" for c, n in sorted(codes.items())) + ")"
        errors: dict[str, int] = {}
        for s in stats:
            for k, v in s.errors.items():
                errors[k] = errors.get(k, 0) + v
        if failed:
            errors[f"wrk: {detail}"] = failed
        return (
            sum(s.requests for s in stats) + requests,
            sum(s.failed for s in stats) + failed,
            errors,
        )


METHODS = ("runtime switch", "reload switch")


def use_switch(stage: scenarios.Stage, method: str) -> None:
    """The haproxy function's fleet runs from now on: the runtime switch, or every push a
    reload (what ``GREENLIGHT_EDGE_RUNTIME_SWITCH=false`` sets)."""
    edge = stage.sandbox.edge
    assert edge.settings.fleet is not None
    fleet = replace(edge.settings.fleet, runtime_switch=method == METHODS[0])
    edge.settings = replace(edge.settings, fleet=fleet)


class TimedStage(scenarios.Stage):
    """A stage that keeps when every instance served the last measured flip's version (the
    end of its switch window, on the Python clients' monotonic clock)."""

    served_at: float | None = None

    def _served_everywhere(self, version: str, *, timeout: float) -> float | None:
        self.served_at = super()._served_everywhere(version, timeout=timeout)
        return self.served_at


class Flips:
    """Each method's flips (proof, switch) and the windows they ran in."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.flips: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
        self.steps: dict[str, list[Steps]] = {m: [] for m in METHODS}
        self.windows: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
        self.placed_windows: list[FlipWindows] = []  # every flip's, with its proof and switch
        self.unmet = 0

    def add(
        self,
        method: str,
        flip: tuple[float, float],
        measured: list[tuple[float, float]],
        served: float | None,
    ) -> None:
        """A flip's windows: its proof and switch from its measure, (proof, switch) seconds
        ending when every instance served its version."""
        self.windows[method].append(flip)
        windows = FlipWindows(method, flip)
        if measured and served is not None:
            proof, switch = measured[-1]
            decided = served - switch  # the move to promoting, as the history records it
            # The decision itself: the gate's step that starts the promotion, timed in process.
            if (started := self.recorder.decided(decided)) is not None:
                shift = decided - started
                decided = started
                proof, switch = proof - shift, switch + shift
                measured = [*measured[:-1], (proof, switch)]
            windows = replace(windows, proof=(decided - proof, decided), switch=(decided, served))
            events = self.recorder.between(decided - 1, served + 1)
            if (steps := split(events, decided, served)) is not None:
                self.steps[method].append(steps)
        self.flips[method].extend(measured)
        self.recorder.forget_before(flip[1])
        self.placed_windows.append(windows)

    def failed(self, loads: list[Load], method: str) -> int:
        """The Python clients' failed requests while ``method``'s flips ran."""
        return sum(
            1
            for load in loads
            for at, _, _ in load.stats.failures
            if any(a <= load.started + at <= b for a, b in self.windows[method])
        )


def greenlight(
    stage: TimedStage, recorder: Recorder
) -> tuple[tuple[int, int, dict[str, int]], Flips, dict, Placed | str]:
    """The flips under load: the load's figures, the flips, the Python clients' failures per
    method, and every failure placed in the flips' windows (or why wrk's could not be)."""
    # The wall clock (wrk's seconds) against the monotonic one (the clients' and the windows').
    wall_minus_monotonic = time.time() - time.monotonic()
    traffic = Traffic([i.bind_address for i in stage.sandbox.instances.values()])
    stage.loads = traffic.loads  # the flips' timings come from what these clients see
    time.sleep(1)
    out = Flips(recorder)
    for n in range(2 * FLIPS):
        method = METHODS[n % 2]
        use_switch(stage, method)
        stage.served_at = None
        started = time.monotonic()
        result = scenarios.healthy(stage, f"flip-{n + 1}")
        out.add(method, (started, time.monotonic()), result.flips, stage.served_at)
        out.unmet += len(result.unmet)
    use_switch(stage, METHODS[0])
    time.sleep(1)
    failed = {m: out.failed(traffic.loads, m) for m in METHODS}
    figures = traffic.stop()
    if traffic.timeline is None:
        return figures, out, failed, traffic.timeline_error
    instants = [load.started + at for load in traffic.loads for at, _, _ in load.stats.failures]
    placed = place(instants, traffic.timeline, out.placed_windows, wall_minus_monotonic)
    return figures, out, failed, placed


def proof_seconds() -> float:
    """The configured proof: ``health.successes`` passes ``health.interval_seconds`` apart
    (the sandbox apps file's shop)."""
    import yaml

    apps = yaml.safe_load((ROOT / "config" / "sandbox-apps.yaml").read_text())["apps"]
    shop = apps[scenarios.APP]
    return float((shop["health"]["successes"] - 1) * shop["health"]["interval_seconds"])


def force_live(store: Any, app: str, colour: Any, version: str, image: str) -> None:
    """The control's switch: the app's live colour written straight into its state item,
    past Greenlight's lifecycle (which would never make an unproven colour live)."""
    store.client.update_item(
        TableName=store.table,
        Key={"pk": {"S": f"app#{app}"}, "sk": {"S": "state"}},
        UpdateExpression="SET live_colour = :c, live_version = :v, live_image = :i "
        "REMOVE backup_colour",
        ExpressionAttributeValues={
            ":c": {"S": colour.value},
            ":v": {"S": version},
            ":i": {"S": image},
        },
    )


def switch_before_ready(
    stage: scenarios.Stage,
) -> tuple[tuple[int, int, dict[str, int]], list[str]]:
    """The other colour gets a new image and the live route moves to it at once; the load's
    figures, and how each push's fleet run ended."""
    sandbox = stage.sandbox
    gate = sandbox.gate
    app = next(a for a in gate.deps.apps.load().apps if a.name == scenarios.APP)
    store = gate.deps.store
    kube = gate.deps.kube
    traffic = Traffic([i.bind_address for i in sandbox.instances.values()])
    pushed: list[str] = []
    time.sleep(1)
    for n in range(CONTROL_FLIPS):
        state = store.state(app.name)
        target = state.live_colour.other
        tag = scenarios.commit_of(f"control-{n}")[:12]
        image = f"{scenarios.IMAGE}:{tag}"
        # A slow starter (10 s to warm up): the switch lands before any of its pods is Ready.
        sandbox.kube.set_behaviour(image, "ready", ready_after=10)
        path = f"/apis/apps/v1/namespaces/{app.namespace}/deployments/{app.name}-{target.value}"
        # Green starts from nothing (as after its warm window), then takes traffic at once.
        kube.patch(
            path,
            {"spec": {"replicas": 0}},
            content_type="application/merge-patch+json",
        )
        sandbox.kube.wait_for(
            lambda target=target: (
                not any(
                    p["metadata"]["labels"].get("greenlight.io/colour") == target.value
                    for p in sandbox.kube.cluster.items("pods", app.namespace)
                )
            ),
            timeout=30,
        )
        kube.patch(
            path,
            {
                "spec": {
                    "replicas": app.replicas,
                    "template": {"spec": {"containers": [{"name": app.container, "image": image}]}},
                }
            },
            content_type="application/strategic-merge-patch+json",
        )
        force_live(store, app.name, target, tag, image)
        # Named as a restore (what a revert's push names): the move is not held by the edge's
        # UP check, which would otherwise keep this control from switching before ready.
        answer = sandbox.invoke(
            "haproxy",
            {
                "action": "push",
                "reason": "control: switch before ready",
                "restore": {"app": app.name, "colour": target.value},
            },
        )
        pushed.append(str((answer.get("fleet") or {}).get("status") or answer.get("status")))
        time.sleep(14)  # green comes up meanwhile; the next switch goes back the other way
    time.sleep(1)
    return traffic.stop(), pushed


def plain_sf(stage: scenarios.Stage, workdir: Path) -> tuple[int, int, dict[str, int]]:
    """A classic HAProxy (no master-worker) flipping its live route with ``-sf``."""
    sandbox = stage.sandbox
    # The gate is done: stop the pump (nothing scales a colour down now), and bring both
    # colours up with a version that is ready, so that both backends serve throughout.
    sandbox.stop_pump()
    gate = sandbox.gate
    app = next(a for a in gate.deps.apps.load().apps if a.name == scenarios.APP)
    kube = gate.deps.kube
    image = f"{scenarios.IMAGE}:{scenarios.commit_of('v1')[:12]}"
    for colour in ("blue", "green"):
        kube.patch(
            f"/apis/apps/v1/namespaces/{app.namespace}/deployments/{app.name}-{colour}",
            {
                "spec": {
                    "replicas": app.replicas,
                    "template": {"spec": {"containers": [{"name": app.container, "image": image}]}},
                }
            },
            content_type="application/strategic-merge-patch+json",
        )

    def both_available() -> bool:
        for colour in ("blue", "green"):
            dep = sandbox.kube.cluster.find("deployments", app.namespace, f"{app.name}-{colour}")
            status = (dep or {}).get("status", {})
            if (
                status.get("availableReplicas") != app.replicas
                or status.get("updatedReplicas") != app.replicas
            ):
                return False
        return True

    sandbox.kube.wait_for(both_available, timeout=60)
    edge = next(iter(sandbox.instances.values()))
    release = edge.root / "current"
    work = workdir / "plain-sf"
    work.mkdir()
    config = control_config((release / "haproxy.cfg").read_text())
    (work / "haproxy.cfg").write_text(config)
    shutil.copy(release / "crt-list", work / "crt-list")
    backends = [
        line.split()[1]
        for line in config.splitlines()
        if line.startswith("backend shop-") and line.split()[1] in ("shop-blue", "shop-green")
    ]
    address = f"127.0.{sandbox.subnet}.30"
    env = os.environ | {
        "GREENLIGHT_RUN_DIR": str(work),
        "GREENLIGHT_STATE_DIR": str(work),
        "GREENLIGHT_CERTS_DIR": str(edge.base / "certs"),
        "GREENLIGHT_BIND_ADDRESS": address,
    }
    (work / "server-state").write_text("1\n")

    def route(backend: str) -> None:
        (work / "hosts.map").write_text(f"{scenarios.LIVE_HOST} {backend}\n")

    route(backends[0])
    plain = PlainHaproxy(work, env).start()
    time.sleep(2)

    def flip(n: int) -> None:
        route(backends[(n + 1) % len(backends)])
        plain.reload()

    figures = under_load(lambda: Traffic([address]), FLIPS, flip, pause=1.5)
    plain.stop()
    return figures


def timings(p: Callable[..., None], flips: Flips, failed: dict[str, int]) -> None:
    """Each method's flip timings, their steps, and the two side by side."""
    proof = proof_seconds()
    medians: dict[str, dict[str, float]] = {}
    for method in METHODS:
        measured = flips.flips[method]
        if not measured:
            continue
        both = [a + b for a, b in measured]
        medians[method] = {
            "ready_decision": statistics.median(a for a, _ in measured),
            "decision_every": statistics.median(b for _, b in measured),
            "decision_max": max(b for _, b in measured),
            "ready_every": statistics.median(both),
            "overhead": statistics.median(t - proof for t in both),
        }
        m = medians[method]
        p(
            f"{method}: {len(measured)} flips, {failed[method]} failed requests (Python clients, "
            f"by when they failed); medians: available -> decision {m['ready_decision']:.2f} s, "
            f"decision -> every instance {m['decision_every']:.2f} s (max "
            f"{m['decision_max']:.2f} s), available -> every instance {m['ready_every']:.2f} s, "
            f"overhead beyond the {proof:.0f} s proof {m['overhead']:.2f} s"
        )
    for method in METHODS:
        p(f"{method}: the gate's decision -> every instance, by step (medians):")
        for line in steps_report(flips.steps[method]):
            p(line)
    if len(medians) == 2:
        runtime, reload = (medians[m] for m in METHODS)
        p(
            "runtime / reload switch, side by side: decision -> every instance "
            f"{runtime['decision_every'] / reload['decision_every']:.2f}, overhead "
            f"{runtime['overhead'] / reload['overhead']:.2f}"
        )


def main() -> int:
    for tool in ("haproxy", "socat", "wrk"):
        if not shutil.which(tool):
            print(f"bench_flips: {tool} is needed (scripts/ensure-haproxy)")
            return 1
    out = sys.stdout
    recorder = Recorder().install()  # before the sandbox loads its functions
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "functions.log", "w") as log:
        sys.stdout = sys.stderr = log  # the functions' own log lines
        try:
            with FullSandbox() as sandbox:
                stage = TimedStage(sandbox)
                stage.deploy_first("v1")
                ours, flips, failed, placed = greenlight(stage, recorder)
                before_ready, control_pushes = switch_before_ready(stage)
                sf = plain_sf(stage, Path(tmp))
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__

    def p(*cells: object) -> None:
        print(*cells, file=out)

    p("Blue/green flips under HTTPS load in the full sandbox (2 HAProxy instances), one run:")
    p(f"{'method':52} {'flips':>5} {'requests':>9} {'failed':>7}  errors")
    for label, count, (requests, lost, errors) in (
        ("Greenlight: gate + runtime and reload switch in turn", 2 * FLIPS, ours),
        ("control: switch before green is ready", CONTROL_FLIPS, before_ready),
        ("control: plain -sf reload", FLIPS, sf),
    ):
        p(f"{label:52} {count:>5} {requests:>9} {lost:>7}  {errors or ''}")
    p(f"control: switch before green is ready: its pushes' fleet runs: {control_pushes}")
    timings(p, flips, failed)
    if isinstance(placed, str):
        p(f"wrk's answers could not be placed in time: {placed}")
    else:
        timed = sum(1 for w in flips.placed_windows if w.switch is not None)
        p(
            f"{timed} of {len(flips.placed_windows)} flips with a proof and a switch window "
            "(an unmeasured flip's whole window counts as the rest of the flip)"
        )
        for line in report(placed, METHODS):
            p(line)
    p(f"{flips.unmet} expectations unmet")
    p(
        "goals: 0 failed requests for Greenlight; decision -> every instance <= 0.5 s median; "
        "overhead beyond the proof <= 1 s median"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
