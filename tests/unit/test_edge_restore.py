"""A push's ``restore`` (the gate's revert): the event field, and which live moves it takes out
of the UP check (the restored app's move back to its colour; other apps' stay checked)."""

from __future__ import annotations

import pytest

from greenlight.colour import Colour
from greenlight.edge.delta import LiveMoves
from greenlight.edge.entry import Prospect, action_of, restored
from greenlight.errors import EventError

SHOP_BLUE = Prospect("shop", Colour.BLUE)


def test_without_restore_every_move_is_checked():
    moves = LiveMoves(("blog-green", "shop-blue"), ("wiki-blue",))
    assert restored(moves, None) == (moves, ())


def test_a_restore_takes_its_apps_move_back_out_of_the_check_and_keeps_the_others():
    moves = LiveMoves(("blog-green", "shop-blue"), ("wiki-blue",))
    assert restored(moves, SHOP_BLUE) == (
        LiveMoves(("blog-green",), ("wiki-blue",)),
        ("shop-blue",),
    )
    # Not declared by the running config either: still the restore's, not "unchecked".
    assert restored(LiveMoves((), ("shop-blue",)), SHOP_BLUE) == (LiveMoves(), ("shop-blue",))
    # Only the colour it restores: the app's other colour going live is still checked.
    assert restored(LiveMoves(("shop-green",)), SHOP_BLUE) == (LiveMoves(("shop-green",)), ())
    # Another app's backend that merely starts with the name is not the app's.
    assert restored(LiveMoves(("shop-blue-x",)), SHOP_BLUE) == (LiveMoves(("shop-blue-x",)), ())


def test_restore_is_a_push_field_checked_like_promote():
    event = {"action": "push", "restore": {"app": "shop", "colour": "blue"}}
    assert action_of(event)[0] == "push"
    assert Prospect.of(event["restore"], "restore") == SHOP_BLUE


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {"action": "rollback", "restore": {"app": "shop", "colour": "blue"}},
            "restore: only a push",
        ),
        (
            {
                "action": "push",
                "restore": {"app": "shop", "colour": "blue"},
                "promote": {"app": "shop", "colour": "green"},
            },
            "restore: a push either promotes or restores",
        ),
    ],
)
def test_restore_outside_a_push_or_beside_promote_is_refused_by_name(event, message):
    with pytest.raises(EventError, match=message):
        action_of(event)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"app": "shop", "colour": "teal"}, "restore.colour: expected blue or green"),
        (["shop", "blue"], "restore: expected"),
        ({"app": "shop"}, "restore: expected"),
    ],
)
def test_a_bad_restore_is_refused_by_name(raw, message):
    with pytest.raises(EventError, match=message):
        Prospect.of(raw, "restore")


# ------------------------------------------------ a served map that does not parse: fail closed


def test_a_served_map_that_does_not_parse_checks_every_backend_live_hosts_go_to():
    from greenlight.appconfig import parse_apps
    from greenlight.edge.entry import live_moves
    from greenlight.errors import PermanentError
    from tests.unit.test_appconfig import SANDBOX_APPS

    apps = parse_apps(SANDBOX_APPS)
    cfg = b"backend shop-blue\nbackend shop-green\nbackend blog-blue\n"
    new = {
        "hosts.map": b"shop.sandbox.test shop-blue\npreview.shop.sandbox.test shop-green\n"
        b"blog.sandbox.test blog-blue\n"
    }
    served = {"haproxy.cfg": cfg, "hosts.map": b"shop.sandbox.test shop-blue extra\n"}
    # What moved cannot be told: every live backend is checked (the preview route still not).
    assert live_moves(served, new, apps) == LiveMoves(("blog-blue", "shop-blue"))
    readable = served | {"hosts.map": b"shop.sandbox.test shop-blue\n"}
    assert live_moves(readable, new, apps) == LiveMoves(("blog-blue",))
    # A rendered map that does not parse is ours to fix: refused, naming it.
    with pytest.raises(PermanentError, match=r"the rendered new hosts\.map: line 1"):
        live_moves(readable, {"hosts.map": b"a b c\n"}, apps)
