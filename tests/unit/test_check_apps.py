"""``greenlight check-apps FILE``: the functions' rules, offline, with every problem by field."""

from __future__ import annotations

import pytest

from greenlight_sandbox.cli import main
from tests.unit.test_appconfig import SANDBOX_APPS
from tests.unit.test_validate import BILLION_LAUGHS


@pytest.fixture(autouse=True)
def _no_namespaces_in_env(monkeypatch):
    monkeypatch.delenv("GREENLIGHT_APP_NAMESPACES", raising=False)


def check(tmp_path, text: str | bytes, *options: str) -> int:
    path = tmp_path / "apps.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return main(["check-apps", str(path), *options])


def test_a_valid_file_exits_0(tmp_path, capsys):
    assert check(tmp_path, SANDBOX_APPS, "--namespaces", "shop,blog") == 0
    out = capsys.readouterr().out
    assert out == f"{tmp_path / 'apps.yaml'}: valid (2 apps: shop, blog)\n"


def test_every_problem_is_named_by_field_and_exits_1(tmp_path, capsys):
    text = (
        SANDBOX_APPS.replace("path: /healthz", 'path: "/a\\"b"', 1)
        .replace("namespace: blog", "namespace: kube-system")
        .replace("live: [shop.sandbox.test]", "live: [SHOP.sandbox.test]")
        .replace("stats_user: admin", "stats_user: 'admin #x'")
        .replace('stats_password_hash: "$6$', 'stats_password_hash: "plain-hunter2 $6$')
    )
    assert check(tmp_path, text, "--namespaces", "shop,blog") == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{tmp_path / 'apps.yaml'}: invalid, 5 problems"
    fields = [line.strip().split(":", 1)[0] for line in out[1:]]
    assert fields == [
        "apps.shop.health.path",
        "apps.shop.hosts.live.0",
        "apps.blog.namespace",
        "edge.stats_user",
        "edge.stats_password_hash",
    ]
    assert not any("hunter2" in line for line in out)


def test_the_allow_list_comes_from_the_option_or_the_environment(tmp_path, capsys, monkeypatch):
    assert check(tmp_path, SANDBOX_APPS, "--namespaces", "shop") == 1
    assert "apps.blog.namespace: got 'blog'" in capsys.readouterr().out
    monkeypatch.setenv("GREENLIGHT_APP_NAMESPACES", "shop,blog")
    assert check(tmp_path, SANDBOX_APPS) == 0
    monkeypatch.setenv("GREENLIGHT_APP_NAMESPACES", "shop")
    assert check(tmp_path, SANDBOX_APPS) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((), "give the stack's app namespaces with --namespaces a,b"),
        (("--namespaces", "shop,kube-system"), "'kube-system': kube-* namespaces"),
        (("--namespaces", ","), "no namespace"),
    ],
)
def test_without_a_usable_allow_list_it_exits_2(tmp_path, capsys, options, message):
    assert check(tmp_path, SANDBOX_APPS, *options) == 2
    assert message in capsys.readouterr().err


def test_a_missing_file_exits_2(tmp_path, capsys):
    assert main(["check-apps", str(tmp_path / "nope.yaml"), "--namespaces", "shop"]) == 2
    assert "No such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BILLION_LAUGHS, "not valid YAML: line 1, column 4: YAML anchors and aliases"),
        (b"version: 1\napps: \xff\n", "invalid, 1 problem\n  not UTF-8 text (byte 18)"),
        ("version: 1\napps: [", "not valid YAML: line 2"),
    ],
)
def test_unreadable_files_exit_1_with_the_reason(tmp_path, capsys, text, expected):
    assert check(tmp_path, text, "--namespaces", "shop") == 1
    assert expected in capsys.readouterr().out
