"""The HAProxy config rendered from a snapshot: golden files, determinism, routing."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from greenlight.edge.render import Paths, render
from greenlight.edge.snapshot import parse_snapshot
from greenlight.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "events" / "cluster-snapshot.json"
GOLDEN = ROOT / "tests" / "fixtures" / "golden"


def snapshot_dict():
    return json.loads(SNAPSHOT.read_text())


def test_render_matches_the_golden_files():
    files = render(parse_snapshot(SNAPSHOT.read_bytes()))
    if os.environ.get("GREENLIGHT_UPDATE_GOLDEN") == "1":
        for name, content in files.items():
            (GOLDEN / name).write_bytes(content)
    assert sorted(files) == ["crt-list", "haproxy.cfg", "hosts.map"]
    for name, content in files.items():
        assert content == (GOLDEN / name).read_bytes(), f"{name} differs from its golden file"


def test_same_state_gives_the_same_bytes_whatever_the_order():
    data = snapshot_dict()
    first = render(parse_snapshot(json.dumps(data)))
    rng = random.Random(7)
    for _ in range(5):
        rng.shuffle(data["nodes"])
        rng.shuffle(data["apps"])
        assert render(parse_snapshot(json.dumps(data))) == first


def test_hosts_map_routes_live_and_preview():
    files = render(parse_snapshot(SNAPSHOT.read_bytes()))
    routes = dict(line.split() for line in files["hosts.map"].decode().splitlines())
    assert routes["shop.example.com"] == "shop-blue"  # live
    assert routes["www.shop.example.com"] == "shop-blue"
    assert routes["preview.shop.example.com"] == "shop-green"  # the colour not live
    assert routes["blog.example.com"] == "blog-green"
    assert "preview.blog.example.com" not in routes  # blog has no other colour yet


def test_only_ready_uncordoned_nodes_serve():
    config = render(parse_snapshot(SNAPSHOT.read_bytes()))["haproxy.cfg"].decode()
    assert "10.0.1.11:30080" in config and "10.0.2.12:30080" in config
    assert "10.0.3.13" not in config  # cordoned (draining)
    assert "10.0.1.14" not in config  # not Ready


def test_switching_the_live_colour_changes_only_the_map_and_comments():
    data = snapshot_dict()
    before = render(parse_snapshot(json.dumps(data)))
    data["apps"][0]["live_colour"] = "green"
    after = render(parse_snapshot(json.dumps(data)))
    assert after["hosts.map"] != before["hosts.map"]
    changed = {
        (a, b)
        for a, b in zip(
            before["haproxy.cfg"].decode().splitlines(),
            after["haproxy.cfg"].decode().splitlines(),
            strict=True,
        )
        if a != b
    }
    assert all(a.lstrip().startswith("#") for a, _ in changed)


def test_paths_point_where_the_instance_keeps_its_files():
    files = render(
        parse_snapshot(SNAPSHOT.read_bytes()), Paths(config_dir="/opt/gl", certs_dir="/opt/gl/c")
    )
    config = files["haproxy.cfg"].decode()
    assert "crt-list /opt/gl/crt-list" in config and "map(/opt/gl/hosts.map,no-route)" in config
    assert "presetenv GREENLIGHT_CERTS_DIR /opt/gl/c\n" in config
    assert 'crt-base "${GREENLIGHT_CERTS_DIR}"' in config
    assert files["crt-list"].decode().startswith("default.pem ")


def test_the_fleet_layout_names_its_own_files_relative_to_the_release():
    config = render(parse_snapshot(SNAPSHOT.read_bytes()))["haproxy.cfg"].decode()
    assert "crt-list crt-list " in config and "map(hosts.map,no-route)" in config
    assert 'stats socket "${GREENLIGHT_RUN_DIR}/admin.sock"' in config
    assert 'server-state-file "${GREENLIGHT_STATE_DIR}/server-state"' in config


def test_the_stats_password_is_never_plain():
    data = snapshot_dict()
    config = render(parse_snapshot(json.dumps(data)))["haproxy.cfg"].decode()
    assert f"user admin password {data['edge']['stats']['password_hash']}" in config
    assert "insecure-password" not in config


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["apps"][0].update(live_colour="purple"), "apps.0.live_colour"),
        (lambda d: d["apps"][0]["node_ports"].update(blue=80), "apps.0.node_ports.blue"),
        (
            lambda d: d["apps"][1]["hosts"].update(preview="shop.example.com"),
            "a host is routed to more than one app",
        ),
        (lambda d: d["apps"][0].update(certificate="nope"), "no certificate named 'nope'"),
        (lambda d: d["nodes"][0].update(address="not-an-ip"), "nodes.0.address"),
        (lambda d: d["edge"]["stats"].pop("password_hash"), "edge.stats.password_hash"),
    ],
)
def test_bad_snapshots_fail_with_the_field(mutate, message):
    data = snapshot_dict()
    mutate(data)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_snapshot(json.dumps(data), origin="snap.json")


def test_before_the_first_promotion_only_the_preview_host_routes():
    data = snapshot_dict()
    data["apps"][1]["live_colour"] = "blue"  # blog: only green exists, not yet promoted
    files = render(parse_snapshot(json.dumps(data)))
    routes = dict(line.split() for line in files["hosts.map"].decode().splitlines())
    assert routes["preview.blog.example.com"] == "blog-green"
    assert "blog.example.com" not in routes  # live host: the 404 backend until promotion
