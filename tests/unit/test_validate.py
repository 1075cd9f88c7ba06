"""The input rules (greenlight.validate): each accepts what it documents and refuses the rest."""

from __future__ import annotations

import time

import pytest

from greenlight import validate as rules

# The billion laughs: about 340 bytes of nested aliases, 9^9 strings once expanded.
BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/healthz",
        "/a/b/c.json",
        "/-._~!$&'()*+,;=:@",
        "/%20%2F%e9",
        "/health?verbose=1&x=/a?b",
        "/" + "a" * 1023,
    ],
)
def test_http_path_accepts_rfc3986_paths_and_queries(path):
    assert rules.http_path(path) == path


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ('/a"b', "character '\"' at position 3"),
        ("/a#b", "character '#' at position 3"),
        ("/a\\b", "character '\\\\' at position 3"),
        ("/a b", "character ' ' at position 3"),
        ("/a\nb", "character '\\n' at position 3"),
        ("/é", "character 'é' at position 2"),
        ("/a[1]", "character '['"),
        ("/a?b#c", "character '#' at position 5"),
        ("/%zz", "'%' at position 2 must start a %XX escape"),
        ("/%2", "'%' at position 2 must start a %XX escape"),
        ("healthz", "must start with '/'"),
        ("", "must start with '/'"),
        ("/" + "a" * 1024, "at most 1024 characters"),
    ],
)
def test_http_path_refuses_what_haproxy_or_http_would_misread(path, why):
    with pytest.raises(ValueError) as caught:
        rules.http_path(path)
    assert why in str(caught.value)


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (rules.host, ["shop.example.com", "*.shop.example.com", "a-1.b2.io"], []),
        (
            rules.host,
            [],
            [
                "Shop.example.com",
                "shop",
                "shop_x.example.com",
                "-shop.example.com",
                "shop.example.com.",
                "a.*.example.com",
                "shop.example.com\n",
                ("a" * 64) + ".example.com",
                ".".join(["abcdefgh"] * 30),
            ],
        ),
        (rules.dns_label, ["shop", "a", "a-1", "x" * 63], ["Shop", "-a", "a-", "a_b", "x" * 64]),
        (rules.app_namespace, ["shop", "kube", "default"], ["kube-system", "kube-public", "A"]),
        (
            rules.image_repository,
            [
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop-web",
                "ghcr.io/acme/blog",
                "registry:5000/a/b__c",
                "nginx",
            ],
            [
                "ghcr.io/acme/Blog",
                "ghcr.io/acme/blog:latest",
                "ghcr.io/acme/blog@sha256:" + "0" * 64,
                "ghcr.io//blog",
                "ghcr.io/acme/blog\n",
                "ghcr.io/acme/ blog",
            ],
        ),
        (
            rules.tag_rule,
            ["{commit}", "{short}", "sha-{commit}", "{branch}-{short}", "v1.{short}_x"],
            [
                "latest",
                "{sha}",
                "{commit!r}",
                "{commit:>200}",
                "{commit.__class__}",
                "{short} x",
                "{short}\n",
                "{short}/x",
                "-{short}",
                "{short}" + "x" * 120,
                "{short",
            ],
        ),
        (
            rules.git_branch,
            ["main", "feature/x-1", "release/2026.01", "a+b@c"],
            [
                "",
                "a..b",
                "-x",
                "/x",
                "x/",
                "x.lock",
                "a b",
                "a~b",
                "a:b",
                "a\nb",
                "a@{b",
                "é",
            ],
        ),
        (rules.stats_user, ["admin", "ops.team-1"], ["", "ad min", "a#b", 'a"b', "x" * 65]),
        (
            rules.crypt_hash,
            ["$6$salt$abc./XYZ", "$6$rounds=5000$salt$h", "$2b$10$abc", "$y$j9T$salt$hash"],
            ["hunter2", "$1$old$md5", "$6$salt$a b", "$6$salt$a#b", '$6$salt$a"b', "$6$s$\n"],
        ),
        (
            rules.certificate_ref,
            [
                "s3://greenlight-artifacts/certs/shop.pem",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:shop/tls-AbC123",
                "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:x",
            ],
            [
                "s3://b/certs/x.pem",  # bucket names are 3+ characters
                "s3://bucket/certs/x.pem\tevil",
                "s3://bucket/certs/$(reboot).pem",
                "s3://bucket/certs/x y.pem",
                "s3://bucket/",
                "https://example.com/x.pem",
                "arn:aws:secretsmanager:eu-west-1:1234:secret:x",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x;y",
            ],
        ),
        (
            rules.label_selector,
            [
                "",
                "node-role.kubernetes.io/worker",
                "!node.kubernetes.io/exclude",
                "pool=web,zone!=a",
                "tier in (web, api),env notin (dev)",
                "a==b",
            ],
            ["a=b;c", "a=b c", "a in b", "a=$(x)", "a=b\n", "=b", "a in (b"],
        ),
    ],
)
def test_each_rule_accepts_and_refuses(rule, good, bad):
    for value in good:
        assert rule(value) == value
    for value in bad:
        with pytest.raises(ValueError):
            rule(value)


def test_label_keys_and_values():
    assert rules.label_key("node.kubernetes.io/pool") == "node.kubernetes.io/pool"
    assert rules.label_value("") == ""
    for key in ("a b", "/x", "a/b/c", "x" * 64):
        with pytest.raises(ValueError):
            rules.label_key(key)
    for value in ("a b", "-a", "x" * 64):
        with pytest.raises(ValueError):
            rules.label_value(value)


def test_a_crypt_hash_error_never_repeats_the_value():
    with pytest.raises(ValueError) as caught:
        rules.crypt_hash("hunter2-plain-password")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("stats_password_hash", True),
        ("webhook_secret", True),
        ("api_token", True),
        ("ssh_key", True),
        ("replicas", False),
        (0, False),
    ],
)
def test_secret_field_names(name, secret):
    assert rules.is_secret_field(name) is secret


def test_billion_laughs_is_refused_at_the_first_anchor():
    assert len(BILLION_LAUGHS.encode()) < 400
    started = time.monotonic()
    with pytest.raises(rules.YamlRefused, match="anchors and aliases") as caught:
        rules.load_yaml(BILLION_LAUGHS, max_bytes=1024)
    assert (caught.value.line, caught.value.column) == (1, 4)
    assert time.monotonic() - started < 5  # informative only: it is refused, not expanded


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a: &x 1\n", "anchors and aliases"),
        ("a: 1\nb: *x\n", "anchors and aliases"),
        ("base: &b {x: 1}\nc:\n  <<: *b\n", "anchors and aliases"),
        ("a: 1\nb: 2\na: 3\n", "line 3, column 1: duplicate key 'a'"),
        ("[" * 40 + "]" * 40, "nested more than 32 levels deep"),
        ("a: [\n", "line 2"),
        ("x" * 2000, "2000 bytes; at most 1024 bytes"),
        ("é" * 600, "1200 bytes; at most 1024 bytes"),
    ],
)
def test_yaml_refusals(text, why):
    with pytest.raises(rules.YamlRefused) as caught:
        rules.load_yaml(text, max_bytes=1024)
    assert why in str(caught.value)


def test_yaml_errors_never_quote_the_document():
    text = "user:\n  token: sup3r-s3cret-t0ken\n  bad: [unclosed\n"
    with pytest.raises(rules.YamlRefused) as caught:
        rules.load_yaml(text, max_bytes=1024)
    assert "sup3r" not in str(caught.value) and "unclosed" not in str(caught.value)


def test_plain_yaml_still_loads():
    text = "version: 1\napps:\n  shop: {replicas: 2, hosts: [a.example.com]}\n"
    assert rules.load_yaml(text, max_bytes=1024) == {
        "version": 1,
        "apps": {"shop": {"replicas": 2, "hosts": ["a.example.com"]}},
    }
