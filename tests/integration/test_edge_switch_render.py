"""Every colour move of the lifecycle renders a config that differs from the one before it in
hosts.map (and comments) alone, so an instance can switch it at runtime without a reload.

The rollout state is written by the real store (moto's DynamoDB) in the order the gate writes
it, the snapshot built from the Kubernetes stand-in, and each render checked by the real HAProxy.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import boto3
import pytest

from greenlight.appconfig import parse_apps
from greenlight.cluster.rest import KubeRest
from greenlight.colour import Colour
from greenlight.edge.delta import map_changes, structural_changes
from greenlight.edge.entry import Prospect
from greenlight.edge.render import render
from greenlight.edge.state import build_snapshot
from greenlight.lifecycle import Actor, Phase
from greenlight.store.rollouts import Rollout, RolloutStore
from greenlight_sandbox import resources
from greenlight_sandbox.render import render_to, self_signed
from tests.conftest import node_port_service

ROOT = Path(__file__).resolve().parents[2]
APPS = parse_apps((ROOT / "config" / "sandbox-apps.yaml").read_text())
T0 = 1_795_684_502_000
LIVE_HOST = "shop.sandbox.test"
PREVIEW_HOST = "preview.shop.sandbox.test"

Files = dict[str, bytes]


@pytest.fixture
def store(aws) -> RolloutStore:
    resources.create_tables(aws)
    ticks = iter(range(T0, T0 + 10**9, 1000))
    return RolloutStore(boto3.client("dynamodb"), resources.TABLE, clock=lambda: next(ticks))


@pytest.fixture
def rest(kube, function_api) -> KubeRest:
    node_port_service(kube, "shop", "shop-blue", node_port=30080)
    node_port_service(kube, "shop", "shop-green", node_port=30081)
    return KubeRest(function_api("haproxy"))


class Edge:
    """What the edge function renders for the app's state as the store has it now."""

    def __init__(self, store: RolloutStore, rest: KubeRest) -> None:
        self.store, self.rest = store, rest

    def render(self) -> Files:
        return render(build_snapshot(self.rest, APPS, {"shop": self.store.state("shop")}))

    def prospect(self, colour: Colour) -> Files:
        states = Prospect("shop", colour).states({"shop": self.store.state("shop")})
        return render(build_snapshot(self.rest, APPS, states))

    def move(self, rollout: Rollout, *phases: Phase) -> Rollout:
        for phase in phases:
            moved = self.store.move(rollout, phase, by=Actor.GATE, why=f"to {phase.value}")
            assert moved is not None, phase
            rollout = moved
        return rollout

    def accept(self, n: int) -> Rollout:
        """A rollout accepted and written into the slot that is not live (deploying)."""
        born = Rollout(
            app="shop",
            rollout_id=f"{T0 + n:013d}-v{n}",
            version=f"v{n}",
            image=f"shop-web:v{n}",
            colour=Colour.GREEN,
            phase=Phase.DEPLOYING,
            sequence=T0 + n,
            source="manual",
        )
        accepted = self.store.accept(born, commit=None, previous=None)
        taken = self.store.take_slot(accepted)
        assert taken is not None
        return taken

    def promote(self, rollout: Rollout) -> Rollout:
        """What the gate does: promoting, then the switch with the old colour warm (the push
        runs here), then watching."""
        rollout = self.move(rollout, Phase.PROMOTING)
        assert self.store.set_live(rollout, backup=rollout.colour.other)
        return rollout


@pytest.fixture
def edge(store, rest) -> Edge:
    return Edge(store, rest)


def routes(files: Files) -> dict[str, str]:
    return dict(line.split() for line in files["hosts.map"].decode().splitlines())


def moved(before: Files, after: Files) -> dict[str, object]:
    return map_changes(before["hosts.map"], after["hosts.map"])


def haproxy_check(files: Files, tmp_path: Path, rest: KubeRest, store: RolloutStore) -> None:
    """The render HAProxy runs is valid, with no warning (tracking servers included)."""
    haproxy = shutil.which("haproxy")
    assert haproxy, "HAProxy is required (scripts/ensure-haproxy installs it)"
    out = tmp_path / f"check-{len(list(tmp_path.iterdir()))}"
    snapshot = build_snapshot(rest, APPS, {"shop": store.state("shop")})
    (out / "certs").mkdir(parents=True)
    for cert in snapshot.certificates:  # the sandbox's default certificate names no host
        self_signed(out / "certs" / cert.file, cert.hosts or ["default.sandbox.test"])
    written = render_to(snapshot, out)
    assert (out / "hosts.map").read_bytes() == files["hosts.map"]
    checked = subprocess.run(
        [haproxy, "-c", "-f", str(written["haproxy.cfg"])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    assert "[WARNING]" not in output and "[ALERT]" not in output, output


def test_a_promotion_and_the_end_of_its_warm_window_change_the_map_only(
    edge, rest, store, tmp_path
):
    v1 = edge.move(edge.accept(1), Phase.GATING)
    gating = edge.render()
    assert routes(gating)[LIVE_HOST] == "shop-blue" and routes(gating)[PREVIEW_HOST] == "shop-green"
    prospect = edge.prospect(Colour.GREEN)

    v1 = edge.promote(v1)
    promoted = edge.render()
    assert prospect == promoted  # the staged prospect is the promotion's config, byte for byte
    assert structural_changes(gating, promoted) == []
    assert moved(gating, promoted) == {
        "added": {},
        "removed": {},
        "changed": {LIVE_HOST: ["shop-blue", "shop-live-green"]},  # blue warm behind green
    }
    haproxy_check(promoted, tmp_path, rest, store)

    v1 = edge.move(v1, Phase.WATCHING)
    watching = edge.render()
    assert structural_changes(promoted, watching) == [] and watching == promoted

    # The end of the watch window takes the candidate's brisk checks away: a reload, at leisure.
    v1 = edge.move(v1, Phase.LIVE)
    live = edge.render()
    assert structural_changes(watching, live) == ["haproxy.cfg"]
    assert moved(watching, live)["changed"] == {PREVIEW_HOST: ["shop-green", "shop-blue"]}

    # The end of the warm window: the gate drops the backup and pushes, then settles.
    assert store.drop_backup(v1)
    dropped = edge.render()
    assert structural_changes(live, dropped) == []
    assert moved(live, dropped)["changed"] == {LIVE_HOST: ["shop-live-green", "shop-green"]}
    haproxy_check(dropped, tmp_path, rest, store)
    edge.move(v1, Phase.SETTLED)
    assert edge.render() == dropped


def test_a_revert_in_the_watch_window_changes_the_map_only(edge, rest, store, tmp_path):
    v1 = edge.promote(edge.move(edge.accept(1), Phase.GATING))  # green live, blue warm
    watching = edge.render()
    edge.move(v1, Phase.WATCHING)
    assert edge.render() == watching

    # The gate's revert: what was live before is live again, pushed before the rollout ends.
    assert store.restore_live(v1) is Colour.BLUE
    reverted = edge.render()
    assert structural_changes(watching, reverted) == []
    assert moved(watching, reverted) == {
        "added": {},
        "removed": {},
        "changed": {LIVE_HOST: ["shop-live-green", "shop-blue"]},
    }
    assert routes(reverted)[PREVIEW_HOST] == "shop-green"
    haproxy_check(reverted, tmp_path, rest, store)
    # Once it has ended, its candidate is checked at the normal pace again (the next push).
    edge.move(store.rollout("shop", v1.rollout_id), Phase.ROLLED_BACK)
    assert structural_changes(reverted, edge.render()) == ["haproxy.cfg"]


def test_a_failed_promotion_is_put_back_by_the_map_only(edge, store):
    v1 = edge.move(edge.accept(1), Phase.GATING)
    gating = edge.render()
    v1 = edge.promote(v1)
    assert structural_changes(gating, edge.render()) == []
    # The fleet did not take it: the gate restores what was live, pushes, then fails it.
    assert store.restore_live(v1) is Colour.BLUE
    restored = edge.render()
    assert structural_changes(gating, restored) == [] and routes(restored) == routes(gating)


def test_a_revert_in_the_warm_window_changes_the_map_only(edge, rest, store, tmp_path):
    v1 = edge.promote(edge.move(edge.accept(1), Phase.GATING))
    v1 = edge.move(v1, Phase.WATCHING, Phase.LIVE)
    live = edge.render()
    assert store.restore_live(v1) is Colour.BLUE
    reverted = edge.render()
    assert structural_changes(live, reverted) == []
    assert moved(live, reverted)["changed"] == {
        LIVE_HOST: ["shop-live-green", "shop-blue"],
        PREVIEW_HOST: ["shop-blue", "shop-green"],
    }
    edge.move(store.rollout("shop", v1.rollout_id), Phase.ROLLED_BACK)
    assert edge.render() == reverted


def test_a_second_promotion_after_a_settled_one_changes_the_map_only(edge, store):
    v1 = edge.promote(edge.move(edge.accept(1), Phase.GATING))
    v1 = edge.move(v1, Phase.WATCHING, Phase.LIVE)
    live = edge.render()
    # A newer candidate takes the warm slot: the backup goes, and the new candidate (blue,
    # the slot that is not live) gets brisk checks: a structural change, before its pods.
    v2 = edge.accept(2)
    assert v2.colour is Colour.BLUE and store.rollout("shop", v1.rollout_id).phase is Phase.SETTLED
    taken = edge.render()
    assert structural_changes(live, taken) == ["haproxy.cfg"]
    assert moved(live, taken)["changed"] == {LIVE_HOST: ["shop-live-green", "shop-green"]}
    v2 = edge.move(v2, Phase.GATING, Phase.AWAITING_APPROVAL)
    awaiting = edge.render()
    assert structural_changes(taken, awaiting) == []
    prospect = edge.prospect(Colour.BLUE)
    edge.promote(v2)
    promoted = edge.render()
    assert prospect == promoted
    assert structural_changes(awaiting, promoted) == []
    assert moved(awaiting, promoted)["changed"] == {LIVE_HOST: ["shop-green", "shop-live-blue"]}
