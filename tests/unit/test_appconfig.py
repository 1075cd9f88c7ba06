from pathlib import Path

import pytest

from greenlight.appconfig import parse_apps
from greenlight.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_APPS = (ROOT / "config" / "sandbox-apps.yaml").read_text()
MINIMAL = """
version: 1
apps:
  shop:
    source: {provider: codecommit, repository: shop-web}
    image: {repository: registry.example.com/shop}
    hosts: {live: [shop.example.com], preview: preview.shop.example.com}
"""


def test_sandbox_apps_file_is_valid_and_resolves_sources():
    apps = parse_apps(SANDBOX_APPS)
    shop = apps.app_for(provider="codecommit", repository="shop-web", branch="main")
    assert shop is not None and shop.name == "shop" and shop.namespace == "shop"
    assert apps.app_for(provider="codecommit", repository="shop-web", branch="dev") is None
    assert apps.app_for(provider="github", repository="shop-web", branch="main") is None
    assert apps.app("blog").hosts.live == ["blog.sandbox.test", "www.blog.sandbox.test"]


def test_defaults_are_documented_values():
    app = parse_apps(MINIMAL).app("shop")
    assert app.source.branch == "main"
    assert (app.replicas, app.container, app.container_port, app.service_port) == (
        2,
        "app",
        8080,
        80,
    )
    assert (app.health.path, app.health.expect_status, app.health.successes) == ("/healthz", 200, 3)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("{commit}", "registry.example.com/shop:" + "a" * 40),
        ("{short}", "registry.example.com/shop:" + "a" * 12),
        ("{branch}-{short}", "registry.example.com/shop:feature-x-" + "a" * 12),
    ],
)
def test_image_reference_follows_the_tag_rule(rule, expected):
    text = MINIMAL.replace(
        "{repository: registry.example.com/shop}",
        f'{{repository: registry.example.com/shop, tag: "{rule}"}}',
    )
    image = parse_apps(text).app("shop").image
    assert image.reference(commit="a" * 40, branch="feature/x") == expected


def test_ecr_repository_name_is_derived_only_for_ecr_images():
    apps = parse_apps(SANDBOX_APPS)
    assert apps.app("shop").image.ecr_repository_name == "shop-web"
    assert apps.app("blog").image.ecr_repository_name is None


@pytest.mark.parametrize(
    ("change", "field", "value", "expected"),
    [
        (("replicas: 2", "replicas: -1"), "apps.shop.replicas", "-1", "greater than or equal to 1"),
        (('tag: "{short}"', 'tag: "{sha}"'), "apps.shop.image.tag", "'{sha}'", "unknown field"),
        (
            ('tag: "{short}"', 'tag: "latest"'),
            "apps.shop.image.tag",
            "'latest'",
            "must contain {commit} or {short}",
        ),
        (
            ("provider: codecommit", "provider: gitlab"),
            "apps.shop.source.provider",
            "'gitlab'",
            "'codecommit' or 'github'",
        ),
        (
            ("container_port: 8080", "container_port: 99999"),
            "apps.shop.container_port",
            "99999",
            "less than or equal to 65535",
        ),
        (
            ("namespace: shop", "namespace: Shop_NS"),
            "apps.shop.namespace",
            "'Shop_NS'",
            "should match pattern",
        ),
    ],
)
def test_bad_values_name_field_value_and_expectation(change, field, value, expected):
    text = SANDBOX_APPS.replace(*change, 1)
    assert text != SANDBOX_APPS
    with pytest.raises(ConfigError) as caught:
        parse_apps(text, origin="s3://b/config/apps.yaml")
    message = str(caught.value)
    assert message.startswith("s3://b/config/apps.yaml is invalid: ")
    assert f"{field}: got {value}; expected:" in message
    assert expected in message


def test_unknown_keys_are_refused():
    with pytest.raises(ConfigError, match=r"apps\.shop\.replica: got 3; expected: Extra inputs"):
        parse_apps(MINIMAL.replace("image:", "replica: 3\n    image:"))


def test_two_apps_cannot_share_a_source_or_a_host():
    twice = MINIMAL + MINIMAL.split("apps:\n", 1)[1].replace("shop:", "shop2:", 1)
    with pytest.raises(ConfigError, match="already used by app 'shop'"):
        parse_apps(twice)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\napps: [", "not valid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("version: 2\napps: {}", "version: got 2"),
    ],
)
def test_unreadable_files_fail_clearly(text, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_apps(text)


def test_preview_host_must_differ_from_live_hosts():
    text = MINIMAL.replace("preview: preview.shop.example.com", "preview: shop.example.com")
    with pytest.raises(ConfigError, match="also a live host"):
        parse_apps(text)


def test_image_reference_refuses_a_short_commit():
    app = parse_apps(MINIMAL).app("shop")
    with pytest.raises(ConfigError, match="40 lowercase hex"):
        app.image.reference(commit="abc123", branch="main")
