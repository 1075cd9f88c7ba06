"""Which files differ between two edge releases, and what moves in the hosts map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from greenlight.edge.delta import map_changes, structural_changes
from greenlight.edge.render import render
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
