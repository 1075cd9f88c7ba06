"""Which files differ between two edge releases, and what moves in the hosts map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from greenlight.edge.delta import (
    LiveMoves,
    declared_backends,
    map_changes,
    newly_live,
    structural_changes,
)
from greenlight.edge.render import backend_name, live_backend_name, render
from greenlight.edge.snapshot import parse_snapshot

SNAPSHOT = Path(__file__).resolve().parents[2] / "events" / "cluster-snapshot.json"

CFG = b"# snapshot aaa\nglobal\n    maxconn 100\n\nbackend a\n    server n1 10.0.0.1:30080\n"
RELEASE = {
    "haproxy.cfg": CFG,
    "hosts.map": b"a.example.com a-blue\n",
    "crt-list": b"default.pem\n",
    "certificates.tsv": b"default.pem\ts3://b/default.pem\n",
}


def test_the_same_release_has_no_structural_change():
    assert structural_changes(RELEASE, dict(RELEASE)) == []


def test_the_hosts_map_comments_and_blank_lines_are_not_structural():
    new = RELEASE | {
        "hosts.map": b"a.example.com a-live-green\n",
        "haproxy.cfg": CFG.replace(b"# snapshot aaa", b"# snapshot bbb")
        .replace(b"\n\n", b"\n\n\n")
        .replace(b"backend a\n", b"backend a\n    # colour green (live)\n"),
    }
    assert structural_changes(RELEASE, new) == []


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("haproxy.cfg", CFG.replace(b"maxconn 100", b"maxconn 200")),
        ("haproxy.cfg", CFG.replace(b"    server", b"  server")),  # as written, not normalised
        ("haproxy.cfg", CFG + b"    server n2 10.0.0.2:30080\n"),
        ("crt-list", b"default.pem\nshop.pem shop.example.com\n"),
        ("certificates.tsv", b"default.pem\ts3://b/other.pem\n"),
    ],
)
def test_any_other_line_that_differs_is_structural(name, content):
    assert structural_changes(RELEASE, RELEASE | {name: content}) == [name]


def test_a_file_in_one_release_only_is_structural_and_names_are_sorted():
    old = {k: v for k, v in RELEASE.items() if k != "certificates.tsv"}
    new = RELEASE | {"crt-list": b"other.pem\n", "hosts.map": b""}
    assert structural_changes(old, new) == ["certificates.tsv", "crt-list"]
    assert structural_changes(new, old) == ["certificates.tsv", "crt-list"]
    # hosts.map present on one side only is still the map's business, never structural.
    assert structural_changes(RELEASE, {k: v for k, v in RELEASE.items() if k != "hosts.map"}) == []


def test_a_comment_marker_after_text_is_part_of_the_line():
    new = RELEASE | {"haproxy.cfg": CFG.replace(b"maxconn 100", b"maxconn 100 # more")}
    assert structural_changes(RELEASE, new) == ["haproxy.cfg"]


def test_a_live_colour_switch_on_a_render_is_map_only():
    data = json.loads(SNAPSHOT.read_text())
    before = render(parse_snapshot(json.dumps(data)))
    data["apps"][0]["live_colour"] = "green"
    after = render(parse_snapshot(json.dumps(data)))
    assert before["haproxy.cfg"] != after["haproxy.cfg"]  # comments (digest, roles) differ
    assert structural_changes(before, after) == []
    data["nodes"].append({"name": "new-node", "address": "10.0.9.9"})
    assert structural_changes(before, render(parse_snapshot(json.dumps(data)))) == ["haproxy.cfg"]


def test_map_changes_lists_added_removed_and_changed_keys():
    old = b"# hosts\na.example.com a-blue\nb.example.com b-green\npreview.a a-green\n"
    new = b"a.example.com a-live-green\n\npreview.a a-green\nc.example.com c-blue\n"
    assert map_changes(old, new) == {
        "added": {"c.example.com": "c-blue"},
        "removed": {"b.example.com": "b-green"},
        "changed": {"a.example.com": ["a-blue", "a-live-green"]},
    }
    assert map_changes(old, old) == {"added": {}, "removed": {}, "changed": {}}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"a.example.com\n", b"", "old hosts.map: line 1 has 1 words"),
        (b"", b"x y\na b c\n", "new hosts.map: line 2 has 3 words"),
        (b"", b"x y\nx z\n", "new hosts.map: key 'x' repeats"),
    ],
)
def test_a_malformed_map_is_refused_with_the_line(old, new, message):
    with pytest.raises(ValueError, match=message):
        map_changes(old, new)


# ------------------------------------------------- which backends a map change newly sends live

PREVIEW = {"preview.a"}
TRACKED = {"a-live-blue": "a-blue", "a-live-green": "a-green"}
RUNNING = {"a-blue", "a-green", "a-live-blue", "a-live-green", "b-blue"}


def moves(old: bytes, new: bytes, running=RUNNING) -> LiveMoves:
    return newly_live(old, new, preview_hosts=PREVIEW, tracked=TRACKED, running=running)


def test_a_live_host_moved_to_another_colour_is_checked_as_that_colour():
    old = b"a.example.com a-blue\npreview.a a-green\n"
    # To green's live backend (blue its backup): green's own servers are what goes live.
    assert moves(old, b"a.example.com a-live-green\npreview.a a-green\n") == LiveMoves(("a-green",))
    assert moves(old, b"a.example.com a-green\npreview.a a-blue\n") == LiveMoves(("a-green",))
    # A revert: back to blue.
    reverted = moves(b"a.example.com a-live-green\npreview.a a-green\n", old)
    assert reverted == LiveMoves(("a-blue",))


def test_the_end_of_a_warm_window_checks_the_colour_that_loses_its_backups():
    # a-live-green -> a-green: the same servers, but without blue as backups. Were green's
    # servers DOWN, blue's served the live hosts until now: green is checked (normally UP).
    ended = moves(b"a.example.com a-live-green\n", b"a.example.com a-green\n")
    assert ended == LiveMoves(("a-green",))
    # Even when another live host is on a-green already (it is still one of the moves).
    both = b"a.example.com a-live-green\nwww.a.example.com a-green\n"
    assert moves(both, b"a.example.com a-green\nwww.a.example.com a-green\n") == ended
    # Not the preview host; and the other way (backups added) brings nothing newly live.
    assert moves(b"preview.a a-live-green\n", b"preview.a a-green\n") == LiveMoves()
    assert moves(b"a.example.com a-green\n", b"a.example.com a-live-green\n") == LiveMoves()
    # Not declared by the running config: unknown, as any other.
    assert moves(
        b"a.example.com a-live-green\n", b"a.example.com a-green\n", running={"a-live-green"}
    ) == LiveMoves((), ("a-green",))


def test_a_move_onto_a_backend_already_live_is_not_checked():
    # A new live host on a backend that other live hosts already use.
    grown = b"a.example.com a-blue\nwww.a.example.com a-blue\n"
    assert moves(b"a.example.com a-blue\n", grown) == LiveMoves()
    # Unchanged, removed: nothing newly live.
    assert moves(grown, grown) == LiveMoves()
    assert moves(grown, b"") == LiveMoves()


def test_a_preview_route_is_never_checked():
    old = b"a.example.com a-blue\npreview.a a-blue\n"
    assert moves(old, b"a.example.com a-blue\npreview.a a-green\n") == LiveMoves()
    assert moves(b"a.example.com a-blue\n", old) == LiveMoves()  # added


def test_a_backend_the_running_config_does_not_declare_cannot_be_checked():
    new = b"a.example.com a-blue\nc.example.com c-blue\nb.example.com b-blue\n"
    assert moves(b"a.example.com a-blue\n", new) == LiveMoves(("b-blue",), ("c-blue",))
    assert moves(b"", b"a.example.com a-live-green\n", running=set()) == LiveMoves((), ("a-green",))


def test_the_backend_a_promotion_render_newly_sends_live_hosts_to():
    data = json.loads(SNAPSHOT.read_text())
    before = render(parse_snapshot(json.dumps(data)))
    data["apps"][0] |= {"live_colour": "green", "backup_colour": "blue"}  # shop promoted
    after = render(parse_snapshot(json.dumps(data)))
    apps = [a["name"] for a in data["apps"]]
    tracked = {live_backend_name(a, c): backend_name(a, c) for a in apps for c in ("blue", "green")}
    running = declared_backends(before["haproxy.cfg"])
    assert {"shop-blue", "shop-green", "shop-live-green"} <= running

    def found(preview: set[str]) -> LiveMoves:
        return newly_live(
            before["hosts.map"],
            after["hosts.map"],
            preview_hosts=preview,
            tracked=tracked,
            running=running,
        )

    assert found({a["hosts"]["preview"] for a in data["apps"]}) == LiveMoves(("shop-green",))
    # Were the preview host (on green before) taken for a live one, green would look live
    # already and its move would go unchecked.
    assert found(set()) == LiveMoves()


def test_declared_backends_reads_backend_lines_only():
    cfg = b"# backend old\nfrontend f\n    default_backend x\nbackend a-blue\n  server s 1:2\n"
    cfg += b"backend  b\n"
    assert declared_backends(cfg) == {"a-blue", "b"}


def test_a_malformed_map_is_refused_when_finding_live_moves():
    with pytest.raises(ValueError, match=r"new hosts\.map: line 1 has 3 words"):
        moves(b"", b"a b c\n")
