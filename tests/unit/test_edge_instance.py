"""An HAProxy instance's hardening: who HAProxy runs as, its systemd unit, its stats page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from greenlight.appconfig import parse_apps
from greenlight.edge.render import render
from greenlight.edge.snapshot import parse_snapshot
from greenlight.errors import ConfigError
from greenlight_sandbox.fleet import apps_for_local_edge

ROOT = Path(__file__).resolve().parents[2]
USER_DATA = ROOT / "docs" / "edge" / "user-data.sh"
SNAPSHOT = ROOT / "events" / "cluster-snapshot.json"
SANDBOX_APPS = ROOT / "config" / "sandbox-apps.yaml"


def unit_text() -> str:
    """The greenlight-haproxy unit, as user-data.sh writes it."""
    return USER_DATA.read_text().split("<<'UNIT'\n", 1)[1].split("\nUNIT\n", 1)[0] + "\n"


def unit_directives() -> dict[str, list[str]]:
    """Each directive of the unit and its values."""
    found: dict[str, list[str]] = {}
    for raw in unit_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def config(mutate=None) -> str:
    data = json.loads(SNAPSHOT.read_text())
    if mutate:
        mutate(data)
    return render(parse_snapshot(json.dumps(data)))["haproxy.cfg"].decode()


def section(text: str, header: str) -> list[str]:
    body = text.split(f"\n{header}\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in body.splitlines() if not line.strip().startswith("#")]


# ---------------------------------------------------------------- HAProxy's own user
def test_the_workers_drop_to_haproxy_by_default():
    glob = section(config(), "global")
    assert "user haproxy" in glob and "group haproxy" in glob


def test_the_user_and_group_come_from_the_apps_file():
    text = SANDBOX_APPS.read_text().replace(
        "  stats_user: admin\n", "  stats_user: admin\n  user: edge\n  group: edge-group\n"
    )
    edge = parse_apps(text).edge
    assert edge is not None and (edge.user, edge.group) == ("edge", "edge-group")
    assert parse_apps(SANDBOX_APPS.read_text()).edge.user == "haproxy"  # type: ignore[union-attr]
    glob = section(config(lambda d: d["edge"].update(user="edge", group="edge-group")), "global")
    assert "user edge" in glob and "group edge-group" in glob


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("user", "root", "must not be root"),
        ("group", "root", "must not be root"),
        ("user", "ha proxy", "a Unix name: a-z or _"),
        ("group", "$(id)", "a Unix name: a-z or _"),
    ],
)
def test_root_or_a_bad_name_is_refused_with_its_field(field, value, expected):
    text = SANDBOX_APPS.read_text().replace(
        "  stats_user: admin\n", f"  stats_user: admin\n  {field}: {json.dumps(value)}\n"
    )
    with pytest.raises(ConfigError, match=rf"edge\.{field}: .*{re.escape(expected)}"):
        parse_apps(text)
    data = json.loads(SNAPSHOT.read_text())
    data["edge"][field] = value
    with pytest.raises(ConfigError, match=rf"edge\.{field}"):
        parse_snapshot(json.dumps(data))


def test_the_sandbox_renders_a_user_its_haproxy_can_drop_to():
    original = SANDBOX_APPS.read_bytes()
    assert apps_for_local_edge(original, ("haproxy", "haproxy")) == original  # root, as in prod
    edge = parse_apps(apps_for_local_edge(original, ("dev", "staff")).decode()).edge
    assert edge is not None and (edge.user, edge.group) == ("dev", "staff")
    data = yaml.safe_load(original)
    data["edge"]["user"] = "svc"  # a file that names its own keeps it
    kept = parse_apps(apps_for_local_edge(yaml.safe_dump(data).encode(), ("dev", "staff")).decode())
    assert kept.edge is not None and (kept.edge.user, kept.edge.group) == ("svc", "staff")


# ---------------------------------------------------------------- the systemd unit
def test_the_unit_is_hardened():
    unit = unit_directives()
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
        "SystemCallFilter": "@system-service",
        "UMask": "0077",
        "AmbientCapabilities": "",
    }
    for key, value in expected.items():
        assert unit.get(key) == [value], key
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "User" not in unit  # the master starts as root; the config's user/group drop
    assert "MemoryDenyWriteExecute" not in unit  # PCRE2's JIT needs writable code


def test_the_unit_keeps_only_the_capabilities_a_root_master_that_drops_needs():
    # Bind :80/:443; setuid/setgid/setgroups in each worker; signal workers that no longer
    # share its uid (tests/integration/test_fleet_apply.py starts HAProxy with this set).
    (caps,) = unit_directives()["CapabilityBoundingSet"]
    assert sorted(caps.split()) == ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETGID", "CAP_SETUID"]


def test_what_haproxy_writes_is_writable_and_nothing_else():
    unit = unit_directives()
    (start,) = unit["ExecStart"]
    args = start.split()
    written = {Path(args[args.index(flag) + 1]).parent for flag in ("-S", "-p")}
    runtime = {Path("/run") / name for name in unit["RuntimeDirectory"]}
    writable = {Path(p) for value in unit["ReadWritePaths"] for p in value.split()}
    assert written <= runtime and written <= writable
    assert writable == runtime  # the state file is written by the apply document, not HAProxy


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path):
    unit = tmp_path / "greenlight-haproxy.service"
    unit.write_text(unit_text())
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    # ExecStart names /usr/sbin/haproxy: only a machine without it may complain, about that.
    problems = [
        line
        for line in (verified.stdout + verified.stderr).splitlines()
        if line.strip() and "/usr/sbin/haproxy" not in line
    ]
    assert not problems, problems


# ---------------------------------------------------------------- the stats page
def test_the_stats_page_binds_loopback_or_the_management_address_over_tls():
    text = config()
    stats = section(text, "listen stats")
    (bind,) = [line for line in stats if line.startswith("bind ")]
    assert bind == 'bind "${GREENLIGHT_STATS_ADDRESS-127.0.0.1}:8404" ssl crt default.pem'
    assert "stats hide-version" in stats
    assert "GREENLIGHT_BIND_ADDRESS" not in "\n".join(stats)  # never the public listeners' "*"


def test_the_stats_page_serves_the_default_certificate():
    def second_first(data):
        data["certificates"].insert(0, {"name": "edge", "file": "edge.pem", "hosts": []})

    (bind,) = [line for line in section(config(second_first), "listen stats") if "bind" in line]
    assert bind.endswith(" ssl crt edge.pem")
