from pathlib import Path

import pytest

from greenlight.appconfig import MAX_APPS_FILE_BYTES, parse_apps, validate_apps
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
            "a DNS-1123 label",
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


# --- every string that reaches the HAProxy config or a Kubernetes object has a rule ----------

FULL = SANDBOX_APPS.replace(
    "    hosts:\n      live: [shop.sandbox.test]",
    "    tls: {certificate: s3://greenlight-sandbox-artifacts/certs/shop.pem}\n"
    "    hosts:\n      live: [shop.sandbox.test]",
    1,
).replace("night:\n", "night:\n  node_selector: {node.kubernetes.io/pool: workers}\n", 1)


def test_the_full_example_is_valid():
    apps = parse_apps(FULL, namespaces=("shop", "blog"))
    assert apps.app("shop").tls is not None and apps.night is not None


@pytest.mark.parametrize(
    ("change", "field", "why"),
    [
        (("path: /healthz", 'path: "/a\\"b"'), "apps.shop.health.path", "character '\"'"),
        (("path: /healthz", "path: /a#b"), "apps.shop.health.path", "character '#'"),
        (("path: /healthz", "path: '/a\\b'"), "apps.shop.health.path", "character '\\\\'"),
        (("path: /healthz", "path: /a b"), "apps.shop.health.path", "character ' '"),
        (("path: /healthz", "path: healthz"), "apps.shop.health.path", "must start with '/'"),
        (
            ("live: [shop.sandbox.test]", "live: [Shop.sandbox.test]"),
            "apps.shop.hosts.live.0",
            "RFC 1123",
        ),
        (
            ("preview: preview.shop.sandbox.test", "preview: 'preview.shop.sandbox.test #x'"),
            "apps.shop.hosts.preview",
            "RFC 1123",
        ),
        (("namespace: shop", "namespace: kube-system"), "apps.shop.namespace", "kube-*"),
        (("container: web", "container: Web_1"), "apps.shop.container", "DNS-1123 label"),
        (
            ("repository: ghcr.io/acme/blog", "repository: 'ghcr.io/acme/blog:latest'"),
            "apps.blog.image.repository",
            "without tag or digest",
        ),
        (('tag: "{short}"', 'tag: "{short} x"'), "apps.shop.image.tag", "character ' '"),
        (('tag: "{short}"', 'tag: "{short!r}"'), "apps.shop.image.tag", "no conversion"),
        (("branch: main", "branch: 'a..b'"), "apps.shop.source.branch", "git branch"),
        (("stats_user: admin", "stats_user: 'admin x'"), "edge.stats_user", "1 to 64"),
        (
            ("s3://greenlight-sandbox-artifacts/certs/default.pem", "s3://b/x.pem\\tlua.lua"),
            "edge.default_certificate",
            "s3://bucket/key",
        ),
        (
            ("certs/shop.pem", "certs/shop.pem evil"),
            "apps.shop.tls.certificate",
            "s3://bucket/key",
        ),
        (
            ("node_selector: node-role.kubernetes.io/worker", "node_selector: 'a=b;c'"),
            "edge.node_selector",
            "a label selector",
        ),
        (
            ("{node.kubernetes.io/pool: workers}", "{node.kubernetes.io/pool: 'a b'}"),
            "night.node_selector.node.kubernetes.io/pool",
            "a label value",
        ),
    ],
)
def test_each_bad_string_is_refused_by_field(change, field, why):
    text = FULL.replace(*change, 1)
    assert text != FULL
    with pytest.raises(ConfigError) as caught:
        parse_apps(text, origin="apps.yaml", namespaces=("shop", "blog"))
    message = str(caught.value)
    assert f" {field}: " in message, message
    assert why in message, message


def test_every_problem_is_reported_not_just_the_first():
    text = (
        FULL.replace("path: /healthz", "path: /a#b")  # both apps
        .replace("replicas: 2", "replicas: 0", 1)
        .replace("stats_user: admin", "stats_user: 'a b'")
    )
    apps, problems = validate_apps(text, namespaces=("shop", "blog"))
    assert apps is None
    fields = sorted(problem.split(":", 1)[0] for problem in problems)
    assert fields == [
        "apps.blog.health.path",
        "apps.shop.health.path",
        "apps.shop.replicas",
        "edge.stats_user",
    ]


# --- the namespace allow-list ------------------------------------------------------------------


def test_a_listed_namespace_is_accepted():
    apps = parse_apps(SANDBOX_APPS, namespaces=("shop", "blog"))
    assert [app.namespace for app in apps.apps] == ["shop", "blog"]


def test_a_namespace_outside_the_list_is_refused():
    with pytest.raises(ConfigError) as caught:
        parse_apps(SANDBOX_APPS, origin="apps.yaml", namespaces=("shop",))
    message = str(caught.value)
    assert "apps.blog.namespace: got 'blog'; expected:" in message
    assert "not one of the stack's app namespaces" in message and "shop" in message
    assert "apps.shop" not in message


def test_kube_namespaces_are_refused_even_when_listed_or_without_a_list():
    text = SANDBOX_APPS.replace("namespace: shop", "namespace: kube-system", 1)
    for namespaces in (None, ("kube-system", "blog")):
        with pytest.raises(ConfigError, match=r"apps\.shop\.namespace: got 'kube-system'"):
            parse_apps(text, namespaces=namespaces)


def test_the_default_namespace_needs_listing_like_any_other():
    assert parse_apps(MINIMAL).app("shop").namespace == "default"  # no list: offline use
    assert parse_apps(MINIMAL, namespaces=("default",)).app("shop").namespace == "default"
    with pytest.raises(ConfigError, match=r"apps\.shop\.namespace: got 'default'"):
        parse_apps(MINIMAL, namespaces=("shop", "blog"))


# --- the loader: size, anchors and aliases, secrets --------------------------------------------


def test_a_billion_laughs_file_is_refused_with_a_clear_error():
    from tests.unit.test_validate import BILLION_LAUGHS

    with pytest.raises(ConfigError) as caught:
        parse_apps(BILLION_LAUGHS, origin="apps.yaml")
    assert str(caught.value) == (
        "apps.yaml is invalid: not valid YAML: line 1, column 4: "
        "YAML anchors and aliases (&name, *name) are not allowed"
    )


def test_a_file_over_the_size_cap_is_refused_before_parsing():
    text = SANDBOX_APPS + "#" * MAX_APPS_FILE_BYTES
    with pytest.raises(ConfigError, match=f"at most {MAX_APPS_FILE_BYTES} bytes"):
        parse_apps(text)
    assert MAX_APPS_FILE_BYTES == 256 * 1024


@pytest.mark.parametrize(
    ("change", "secret", "field"),
    [
        (
            (
                'stats_password_hash: "$6$greenlightexampl$',
                'stats_password_hash: "hunter2-in-clear ',
            ),
            "hunter2",
            "edge.stats_password_hash",
        ),
        (
            ("stats_user: admin", "stats_user: admin\n  api_token: tok-123-abc"),
            "tok-123",
            "edge.api_token",
        ),
        (
            ("wait_for_ecr: true", "wait_for_ecr: true\n      pull_secret: sec-456-def"),
            "sec-456",
            "apps.shop.image.pull_secret",
        ),
        (("stats_user: admin", "stats_user: admin\n  ssh_key: [k-789]"), "k-789", "edge.ssh_key"),
    ],
)
def test_a_secret_like_field_is_never_echoed(change, secret, field):
    text = SANDBOX_APPS.replace(*change, 1)
    assert text != SANDBOX_APPS
    with pytest.raises(ConfigError) as caught:
        parse_apps(text)
    message = str(caught.value)
    assert f"{field}: " in message, message
    assert secret not in message, message


def test_a_yaml_error_does_not_quote_the_line():
    text = SANDBOX_APPS.replace(
        'stats_password_hash: "$6$', 'stats_password_hash: ["hunter2-in-clear" $6$', 1
    )
    with pytest.raises(ConfigError, match="not valid YAML: line") as caught:
        parse_apps(text)
    assert "hunter2" not in str(caught.value)


def test_sections_are_not_echoed_whole():
    text = SANDBOX_APPS.replace("preview: preview.shop.sandbox.test", "preview: shop.sandbox.test")
    with pytest.raises(ConfigError) as caught:
        parse_apps(text)
    message = str(caught.value)
    assert "apps.shop.hosts: Value error, preview host" in message
    assert "{" not in message


# --- analysis: the gate's thresholds on the edge's counters (docs/gate.md) ---------------------


def test_analysis_defaults_apply_when_the_section_is_absent():
    analysis = parse_apps(MINIMAL).app("shop").analysis
    assert analysis.enabled is True
    assert (analysis.min_requests, analysis.max_error_ratio) == (50, 0.02)
    assert (analysis.max_response_ms, analysis.max_response_ratio) == (None, 2.0)


def test_analysis_thresholds_are_read_and_null_turns_a_ceiling_off():
    text = MINIMAL + (
        "    analysis: {enabled: false, min_requests: 10, max_error_ratio: 0.1,\n"
        "               max_response_ms: 250, max_response_ratio: null}\n"
    )
    analysis = parse_apps(text).app("shop").analysis
    assert analysis.enabled is False and analysis.min_requests == 10
    assert (analysis.max_error_ratio, analysis.max_response_ms) == (0.1, 250)
    assert analysis.max_response_ratio is None


@pytest.mark.parametrize(
    ("section", "field", "expected"),
    [
        ("{min_requests: 0}", "apps.shop.analysis.min_requests: got 0", "greater than or equal"),
        ("{max_error_ratio: 2%}", "apps.shop.analysis.max_error_ratio: got '2%'", "valid number"),
        ("{max_error_ratio: 1.5}", "apps.shop.analysis.max_error_ratio: got 1.5", "less than or"),
        ("{max_error_ratio: .nan}", "apps.shop.analysis.max_error_ratio: got nan", "expected"),
        ("{max_response_ms: 0}", "apps.shop.analysis.max_response_ms: got 0", "greater than"),
        ("{max_response_ratio: 0.5}", "apps.shop.analysis.max_response_ratio: got 0.5", "greater"),
        ("{max_errors: 3}", "apps.shop.analysis.max_errors: got 3", "Extra inputs"),
    ],
)
def test_bad_analysis_thresholds_name_their_field(section, field, expected):
    with pytest.raises(ConfigError) as caught:
        parse_apps(MINIMAL + f"    analysis: {section}\n")
    message = str(caught.value)
    assert field in message and expected in message, message
