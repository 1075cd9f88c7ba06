"""The HAProxy config rendered from a snapshot: golden files, determinism, routing."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenlight.edge.delta import structural_changes
from greenlight.edge.render import Paths, node_subset, render, server_name
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


def _block(config: str, backend: str) -> str:
    return config.split(f"backend {backend}\n", 1)[1].split("\nbackend ", 1)[0]


def _servers(config: str, backend: str) -> list[list[str]]:
    body = _block(config, backend)
    return [line.split() for line in body.splitlines() if line.strip().startswith("server")]


def test_a_warm_backup_colour_backs_up_the_live_route_only():
    data = snapshot_dict()
    shop = data["apps"][0]
    shop["live_colour"], shop["backup_colour"], shop["preview_colour"] = "green", "blue", "green"
    files = render(parse_snapshot(json.dumps(data)))
    routes = dict(line.split() for line in files["hosts.map"].decode().splitlines())
    assert routes["shop.example.com"] == routes["www.shop.example.com"] == "shop-live-green"
    assert routes["preview.shop.example.com"] == "shop-green"  # watched: green alone
    config = files["haproxy.cfg"].decode()
    servers = _servers(config, "shop-live-green")
    green = shop["node_ports"]["green"]
    blue = shop["node_ports"]["blue"]
    primary = [s for s in servers if s[-1] != "backup"]
    backup = [s for s in servers if s[-1] == "backup"]
    assert primary and len(primary) == len(backup)
    # Each follows the same node's server in its colour's backend: no checks of its own.
    assert all(
        s[2].endswith(f":{green}") and s[3:5] == ["track", f"shop-green/{s[1]}"] for s in primary
    )
    assert all(
        s[2].endswith(f":{blue}")
        and s[1].endswith(".blue")
        and s[3:5] == ["track", f"shop-blue/{s[1].removesuffix('.blue')}"]
        for s in backup
    )
    assert "backup" not in _block(config, "shop-green")


def test_both_live_backends_are_always_there_and_check_nothing_themselves():
    data = snapshot_dict()
    shop = data["apps"][0]
    assert shop["live_colour"] == "blue" and "backup_colour" not in shop  # no warm colour
    config = render(parse_snapshot(json.dumps(data)))["haproxy.cfg"].decode()
    for live, other in (("blue", "green"), ("green", "blue")):
        body = _block(config, f"shop-live-{live}")
        assert "check" not in body.replace("checks of its own", "")  # no check, no httpchk
        assert "fastinter" not in body and "inter " not in body
        servers = _servers(config, f"shop-live-{live}")
        own = [s[1] for s in _servers(config, f"shop-{live}")]
        theirs = [s[1] for s in _servers(config, f"shop-{other}")]
        assert [s[1] for s in servers if s[-1] != "backup"] == own
        assert [s[1] for s in servers if s[-1] == "backup"] == [f"{n}.{other}" for n in theirs]
    # blog has one colour only: no live backend of its own.
    assert "backend blog-live-" not in config


def _names(files: dict[str, bytes]) -> dict[str, set[str]]:
    """Server names by the address:port they send to."""
    out: dict[str, set[str]] = {}
    for line in files["haproxy.cfg"].decode().splitlines():
        words = line.split()
        if words[:1] == ["server"]:
            out.setdefault(words[2], set()).add(words[1])
    return out


def test_a_server_is_renamed_when_its_port_or_address_changes_and_only_then():
    data = snapshot_dict()
    before = _names(render(parse_snapshot(json.dumps(data))))
    node = data["nodes"][0]
    green = data["apps"][0]["node_ports"]["green"]
    data["apps"][0]["node_ports"]["green"] = 31999  # green's Service recreated
    node["address"] = "10.0.9.99"  # and the first node got a new InternalIP
    data["apps"][0]["live_colour"] = "green"  # a promotion renames nothing
    after = _names(render(parse_snapshot(json.dumps(data))))
    gone = {f"10.0.1.11:{p}" for p in (30080, 30081, 31000)} | {f"10.0.2.12:{green}"}
    assert set(before) - set(after) == gone
    node = {n["address"]: n["name"] for n in data["nodes"]}
    for target, names in after.items():
        address, port = target.split(":")
        name = server_name(node[address], address, int(port))  # backups: with their colour
        assert names <= {name, f"{name}.blue", f"{name}.green"} and name.startswith(node[address])
        if target in before:  # unchanged address and port: the same names, state carried over
            assert names == before[target]
        else:  # nothing it sends to elsewhere is named alike: no saved state applies to it
            assert not names & {n for old in before.values() for n in old}


def test_a_backup_without_its_service_or_equal_to_live_is_ignored():
    data = snapshot_dict()
    blog = next(a for a in data["apps"] if a["name"] == "blog")  # green only
    blog["backup_colour"] = "blue"
    shop = data["apps"][0]
    shop["backup_colour"] = shop["live_colour"]
    plain = render(parse_snapshot(json.dumps(snapshot_dict())))
    ignored = render(parse_snapshot(json.dumps(data)))
    assert ignored["hosts.map"] == plain["hosts.map"]
    assert structural_changes(plain, ignored) == []  # the snapshot's digest, a comment, differs
    assert "-live-" not in ignored["hosts.map"].decode()


def _default_server(config: str, backend: str) -> str:
    body = config.split(f"backend {backend}\n", 1)[1].split("\nbackend ", 1)[0]
    return next(line for line in body.splitlines() if "default-server" in line)


def test_a_gated_candidate_is_checked_briskly_and_nothing_else_is():
    data = snapshot_dict()
    shop = data["apps"][0]
    candidate = "green" if shop["live_colour"] == "blue" else "blue"
    plain = render(parse_snapshot(json.dumps(data)))
    shop["gating"] = True
    gated = render(parse_snapshot(json.dumps(data)))
    config = gated["haproxy.cfg"].decode()
    assert "fastinter 250ms downinter 250ms" in _default_server(config, f"shop-{candidate}")
    assert "fastinter" not in _default_server(config, f"shop-{shop['live_colour']}")
    assert config.count("fastinter") == 1  # nor the live backends that track the candidate
    assert "fastinter" not in plain["haproxy.cfg"].decode()
    assert gated["hosts.map"] == plain["hosts.map"]  # routing is the same


def test_unset_gating_leaves_the_digest_of_older_snapshots_alone():
    data = snapshot_dict()
    data["apps"][0]["gating"] = False
    assert render(parse_snapshot(json.dumps(data))) == render(
        parse_snapshot(json.dumps(snapshot_dict()))
    )


def test_paths_point_where_the_instance_keeps_its_files():
    files = render(
        parse_snapshot(SNAPSHOT.read_bytes()), Paths(config_dir="/opt/gl", certs_dir="/opt/gl/c")
    )
    config = files["haproxy.cfg"].decode()
    assert "crt-list /opt/gl/crt-list" in config and "map(/opt/gl/hosts.map,no-route)" in config
    assert 'crt-base "/opt/gl/c"' in config
    assert files["crt-list"].decode().startswith("default.pem ")


def test_the_fleet_config_takes_its_directories_from_the_environment_and_sets_none():
    config = render(parse_snapshot(SNAPSHOT.read_bytes()))["haproxy.cfg"].decode()
    assert 'crt-base "${GREENLIGHT_CERTS_DIR}"' in config
    assert 'bind "${GREENLIGHT_BIND_ADDRESS}:443"' in config
    for word in ("setenv", "presetenv", "resetenv", "unsetenv"):
        assert f"{word} " not in config


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


# ---------------------------------------------------------------- node subsets per backend
NODES = [(f"node-{i:03d}", f"10.0.{i // 250}.{i % 250}") for i in range(100)]


def test_a_subset_of_zero_or_more_than_the_nodes_is_every_node():
    assert node_subset("shop", NODES[:5], 0) == NODES[:5]
    assert node_subset("shop", NODES[:5], 20) == NODES[:5]


@given(app=st.text(min_size=1, max_size=20), size=st.integers(1, 30), gone=st.integers(0, 99))
def test_a_node_leaving_moves_only_its_own_place(app, size, gone):
    before = node_subset(app, NODES, size)
    after = node_subset(app, NODES[:gone] + NODES[gone + 1 :], size)
    assert len(before) == len(after) == size and after == sorted(after)
    if NODES[gone] in before:
        assert len(set(before) - set(after)) == 1 and NODES[gone] not in after
    else:
        assert after == before


def test_subsets_spread_the_apps_evenly_over_the_nodes():
    load = {name: 0 for name, _ in NODES}
    for i in range(1000):
        for name, _ in node_subset(f"app{i:04d}", NODES, 20):
            load[name] += 1
    # 1000 apps x 20 = 20,000 places over 100 nodes: 200 each on average.
    assert min(load.values()) > 120 and max(load.values()) < 280


def test_render_puts_at_most_servers_per_backend_servers_in_a_backend():
    data = snapshot_dict()
    data["nodes"] = [{"name": n, "address": a} for n, a in NODES[:50]]
    data["edge"]["servers_per_backend"] = 5
    config = render(parse_snapshot(json.dumps(data)))["haproxy.cfg"].decode()
    blocks = config.split("\nbackend ")[1:]
    counted = {b.split()[0]: b.count("\n    server ") for b in blocks}
    assert counted.pop("no-route") == 0
    live = {name: counted.pop(name) for name in list(counted) if "-live-" in name}
    assert counted and set(counted.values()) == {5}
    assert live and set(live.values()) == {10}  # each colour's 5, then the other's as backups
