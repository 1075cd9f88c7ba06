"""The rollout function's decisions, pure: which app and image, start, resume or ignore."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenlight.appconfig import parse_apps
from greenlight.colour import Colour
from greenlight.lifecycle import Phase
from greenlight.rollout.decide import RolloutResult, Status, admit, ecr_tag, resolve, resumes
from greenlight.store.rollouts import AppState, Rollout
from greenlight.triggers import CommitPush, Ignored, ManualRollout

ROOT = Path(__file__).resolve().parents[2]
APPS = parse_apps((ROOT / "config/sandbox-apps.yaml").read_text(), origin="sandbox")
COMMIT = "3f9d2a41c0b7e8d9f0a1b2c3d4e5f60718293a4b"
SHOP_IMAGE = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop-web:{COMMIT[:12]}"
T0 = 1_795_684_502_000


def push(repository: str = "shop-web", branch: str = "main") -> CommitPush:
    return CommitPush(
        provider="codecommit",
        repository=repository,
        branch=branch,
        commit=COMMIT,
        previous=None,
        sequence=T0,
        dedupe_id="d-1",
    )


def test_a_push_resolves_to_its_app_and_image():
    resolved = resolve(push(), APPS)
    assert not isinstance(resolved, Ignored)
    assert (resolved.app.name, resolved.image, resolved.version) == ("shop", SHOP_IMAGE, COMMIT)


def test_a_push_no_app_deploys_is_ignored_with_why():
    ignored = resolve(push(branch="feature/x"), APPS)
    assert isinstance(ignored, Ignored) and "branch 'feature/x'" in ignored.reason


def test_a_manual_image_rolls_out_as_it_is():
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop-web:v3"
    manual = ManualRollout(app="shop", commit=None, image=image, sequence=T0, dedupe_id="m")
    resolved = resolve(manual, APPS)
    assert not isinstance(resolved, Ignored)
    assert (resolved.image, resolved.version, resolved.source) == (image, "v3", "manual")


def test_a_new_image_goes_into_the_slot_that_is_not_live():
    resolved = resolve(push(), APPS)
    assert not isinstance(resolved, Ignored)
    rollout = admit(resolved, AppState(app="shop", live_colour=Colour.GREEN))
    assert isinstance(rollout, Rollout)
    assert rollout.colour is Colour.BLUE and rollout.phase is Phase.DEPLOYING
    assert rollout.rollout_id == f"{T0:013d}-{COMMIT[:12]}"


def test_the_image_already_live_is_ignored():
    resolved = resolve(push(), APPS)
    assert not isinstance(resolved, Ignored)
    result = admit(resolved, AppState(app="shop", live_image=SHOP_IMAGE))
    assert isinstance(result, RolloutResult)
    assert result.status is Status.IGNORED and "already live" in result.detail


@pytest.mark.parametrize(
    ("stored", "phase", "resumed"),
    [
        ("same", Phase.DEPLOYING, True),  # a retry of a run that died
        ("same", Phase.GATING, False),  # handed on already
        ("newer", Phase.DEPLOYING, False),  # a newer push is in
    ],
)
def test_a_push_the_store_refuses_resumes_only_its_own_deploying_rollout(stored, phase, resumed):
    resolved = resolve(push(), APPS)
    assert not isinstance(resolved, Ignored)
    rollout = admit(resolved, AppState(app="shop"))
    assert isinstance(rollout, Rollout)
    rid = rollout.rollout_id if stored == "same" else "1795684600000-4a0e3b52d1c8"
    answer = resumes(rollout, AppState(app="shop", rollout_id=rid, phase=phase))
    assert (answer is None) is resumed
    if answer is not None:
        assert answer.status is Status.IGNORED and "not newer than rollout" in answer.detail


def test_only_an_ecr_image_of_an_app_that_waits_is_waited_for():
    shop, blog = APPS.app("shop"), APPS.app("blog")
    assert ecr_tag(shop, SHOP_IMAGE) == ("shop-web", COMMIT[:12])
    assert ecr_tag(shop, "docker.io/other/image:1") is None  # not from its repository
    assert ecr_tag(blog, f"ghcr.io/acme/blog:sha-{COMMIT}") is None  # it does not wait
