"""A manual rollout's image (the app's own repository, an ASCII tag or a digest) and the
reference a candidate runs (pinned to the digest ECR returned)."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenlight.appconfig import parse_apps
from greenlight.colour import Colour
from greenlight.deadline import Deadline
from greenlight.errors import EventError
from greenlight.rollout.decide import ecr_tag, resolve
from greenlight.rollout.images import image_digest, pinned, wait_for_image
from greenlight.rollout.workload import candidate_deployment
from greenlight.triggers import Ignored, ManualRollout, from_manual, image_parts
from greenlight_sandbox import resources

ROOT = Path(__file__).resolve().parents[2]
APPS = parse_apps((ROOT / "config/sandbox-apps.yaml").read_text(), origin="sandbox")
SHOP_REPO = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop-web"
DIGEST = "sha256:" + "0123456789abcdef" * 4
T0 = 1_795_684_502_000


def manual(image: str, app: str = "shop") -> dict[str, object]:
    return {"action": "rollout", "app": app, "image": image}


def resolved_image(image: str, app: str = "shop") -> tuple[str, str]:
    trigger = from_manual(manual(image, app), now_ms=T0, request_id="r")
    assert isinstance(trigger, ManualRollout)
    resolved = resolve(trigger, APPS)
    assert not isinstance(resolved, Ignored)
    return resolved.image, resolved.version


def test_the_apps_own_repository_with_a_tag_or_a_digest_is_accepted():
    assert resolved_image(f"{SHOP_REPO}:v3") == (f"{SHOP_REPO}:v3", "v3")
    assert resolved_image(f"{SHOP_REPO}@{DIGEST}") == (
        f"{SHOP_REPO}@{DIGEST}",
        DIGEST.removeprefix("sha256:"),
    )
    tag = "A" + "b_.-" * 31 + "xyz"  # 128 characters, the longest tag
    assert resolved_image(f"{SHOP_REPO}:{tag}")[0] == f"{SHOP_REPO}:{tag}"
    assert resolved_image("ghcr.io/acme/blog:sha-1", app="blog")[1] == "sha-1"


def test_another_repository_is_refused_naming_the_apps_own():
    trigger = from_manual(manual("ghcr.io/evil/shop-web:v3"), now_ms=T0, request_id="r")
    assert isinstance(trigger, ManualRollout)
    with pytest.raises(EventError, match=r"payload.image: app 'shop' deploys images of") as exc:
        resolve(trigger, APPS)
    assert SHOP_REPO in str(exc.value)
    # The blog's repository is not the shop's either, nor a prefix of it.
    for image in ("ghcr.io/acme/blog:v1", f"{SHOP_REPO}-evil:v3", f"{SHOP_REPO}/x:v3"):
        trigger = from_manual(manual(image), now_ms=T0, request_id="r")
        assert isinstance(trigger, ManualRollout)
        with pytest.raises(EventError, match=r"^payload\.image"):
            resolve(trigger, APPS)


@pytest.mark.parametrize(
    "image",
    [
        f"{SHOP_REPO}:v\u0663",  # ARABIC-INDIC DIGIT THREE: \w matches it
        f"{SHOP_REPO}:\u00e9t\u00e9",
        f"{SHOP_REPO}:v3\n",  # "$" would accept the trailing newline
        f"{SHOP_REPO}:v3\n; rm -rf /",
        f"{SHOP_REPO}:" + "a" * 129,  # one past the longest tag
        f"{SHOP_REPO}:.v3",  # a tag starts with a letter, digit or "_"
        f"{SHOP_REPO}:",
        SHOP_REPO,  # no tag
        f"{SHOP_REPO}@sha256:" + "0" * 63,  # a digest is 64 hex digits
        f"{SHOP_REPO}@{DIGEST}\n",
        f"{SHOP_REPO}@sha256:" + "A" * 64,  # lower-case hex
        f"{SHOP_REPO}@md5:" + "0" * 32,
        f"{SHOP_REPO}:v3@{DIGEST}",
        f"{SHOP_REPO.upper()}:v3",
    ],
)
def test_a_malformed_image_is_refused_naming_the_field(image):
    with pytest.raises(EventError, match=r"^payload\.image: expected"):
        from_manual(manual(image), now_ms=T0, request_id="r")


def test_image_parts_splits_tags_and_digests_and_a_registry_port():
    assert image_parts("registry:5000/team/web:v1", "x") == ("registry:5000/team/web", "v1")
    assert image_parts(f"registry:5000/web@{DIGEST}", "x") == ("registry:5000/web", DIGEST)
    with pytest.raises(EventError, match=r"^x: "):
        image_parts("registry:5000/web", "x")  # the port is no tag
    with pytest.raises(EventError, match="got int"):
        image_parts(5, "x")


def test_the_ecr_wait_is_for_the_tag_or_the_digest_of_the_apps_own_images_only():
    shop = APPS.app("shop")
    assert ecr_tag(shop, f"{SHOP_REPO}:v3") == ("shop-web", "v3")
    assert ecr_tag(shop, f"{SHOP_REPO}@{DIGEST}") == ("shop-web", DIGEST)
    assert ecr_tag(shop, f"{SHOP_REPO}-evil:v3") is None  # a prefix is not the repository
    assert ecr_tag(APPS.app("blog"), "ghcr.io/acme/blog:sha-1") is None  # it does not wait


def test_a_checked_image_is_pinned_to_its_digest_and_an_unchecked_one_keeps_its_tag():
    assert pinned(f"{SHOP_REPO}:v3", DIGEST) == f"{SHOP_REPO}@{DIGEST}"
    assert pinned(f"{SHOP_REPO}@{DIGEST}", DIGEST) == f"{SHOP_REPO}@{DIGEST}"
    assert pinned("registry:5000/web:v1", DIGEST) == f"registry:5000/web@{DIGEST}"
    assert pinned("registry:5000/web", DIGEST) == f"registry:5000/web@{DIGEST}"
    assert pinned(f"{SHOP_REPO}:v3", None) == f"{SHOP_REPO}:v3"
    assert pinned(f"{SHOP_REPO}:v3", "") == f"{SHOP_REPO}:v3"
    assert pinned(f"{SHOP_REPO}:v3", "sha256:nothex") == f"{SHOP_REPO}:v3"


def test_the_candidate_runs_the_pinned_image_and_keeps_the_tag_for_people():
    app = APPS.app("shop")
    body = candidate_deployment(
        app,
        colour=Colour.GREEN,
        image=f"{SHOP_REPO}@{DIGEST}",
        tag=f"{SHOP_REPO}:v3",
        version="v3",
        rollout_id="r1",
        live=None,
    )
    template = body["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == f"{SHOP_REPO}@{DIGEST}"
    assert body["metadata"]["annotations"]["greenlight.io/image"] == f"{SHOP_REPO}:v3"
    assert template["metadata"]["annotations"]["greenlight.io/image"] == f"{SHOP_REPO}:v3"


def test_ecr_answers_the_digest_of_a_tag_and_of_a_digest(aws):
    aws.client("ecr").create_repository(repositoryName="shop-web")
    resources.push_image(aws, "shop-web", "v3")
    found = image_digest(aws.client("ecr"), repository="shop-web", tag="v3")
    assert found is not None and found.startswith("sha256:") and len(found) == 71
    assert image_digest(aws.client("ecr"), repository="shop-web", tag=found) == found
    assert image_digest(aws.client("ecr"), repository="shop-web", tag="v4") is None
    waited = wait_for_image(
        aws.client("ecr"),
        repository="shop-web",
        tag="v4",
        deadline=Deadline.within(0.05),
        sleep=lambda _: None,
    )
    assert waited is None
