"""The rollout store in moto's DynamoDB: every phase change through the lifecycle table, the
app's mirrored phases in the same transaction, and a newer rollout superseding only what it
replaces."""

from __future__ import annotations

import boto3
import pytest

from greenlight.colour import Colour
from greenlight.lifecycle import Actor, Phase
from greenlight.store.rollouts import LifecycleError, Rollout, RolloutStore, Stale
from greenlight_sandbox import resources

T0 = 1_795_684_502_000


@pytest.fixture
def store(aws) -> RolloutStore:
    resources.create_tables(aws)
    client = boto3.client("dynamodb")
    ticks = iter(range(T0, T0 + 10**9, 1000))
    return RolloutStore(client, resources.TABLE, clock=lambda: next(ticks))


def candidate(n: int, colour: Colour = Colour.GREEN) -> Rollout:
    return Rollout(
        app="shop",
        rollout_id=f"{T0 + n:013d}-v{n}",
        version=f"v{n}",
        image=f"shop-web:v{n}",
        colour=colour,
        phase=Phase.DEPLOYING,
        sequence=T0 + n,
        source="manual",
    )


def walk(store: RolloutStore, rollout: Rollout, *phases: Phase) -> Rollout:
    for phase in phases:
        moved = store.move(rollout, phase, by=Actor.GATE, why=f"to {phase.value}")
        assert moved is not None, phase
        rollout = moved
    return rollout


def promote(store: RolloutStore, rollout: Rollout) -> Rollout:
    """What the gate does: promoting, the live colour switched, then watching."""
    rollout = walk(store, rollout, Phase.GATING, Phase.PROMOTING)
    assert store.set_live(rollout, backup=rollout.colour.other)
    return walk(store, rollout, Phase.WATCHING)


def test_a_move_writes_the_rollout_and_the_apps_mirrored_phases_together(store):
    first = store.accept(candidate(1), commit=None, previous=None)
    assert store.state("shop").phase is Phase.DEPLOYING
    first = promote(store, first)
    state = store.state("shop")
    assert (state.phase, state.live_phase, state.live_rollout_id) == (
        Phase.WATCHING,
        Phase.WATCHING,
        first.rollout_id,
    )
    record = store.rollout("shop", first.rollout_id)
    assert record.phase is Phase.WATCHING and record.entered_at > record.created_at
    history = store.client.get_item(
        TableName=store.table,
        Key={"pk": {"S": "app#shop"}, "sk": {"S": f"rollout#{first.rollout_id}"}},
    )["Item"]["history"]["L"]
    moves = [(e["M"].get("from", {}).get("S"), e["M"]["phase"]["S"]) for e in history]
    assert moves == [
        (None, "deploying"),
        ("deploying", "gating"),
        ("gating", "promoting"),
        ("promoting", "watching"),
    ]
    assert {e["M"]["by"]["S"] for e in history[1:]} == {"gate"}


def test_a_move_the_table_does_not_have_is_refused_and_changes_nothing(store):
    rollout = store.accept(candidate(1), commit=None, previous=None)
    for to in (Phase.LIVE, Phase.DEPLOYING):
        with pytest.raises(LifecycleError, match=f"no move from deploying to {to.value}"):
            store.move(rollout, to, by=Actor.GATE, why="skipping ahead")
    with pytest.raises(LifecycleError):
        store.update(rollout, {"phase": "live"})
    assert store.rollout("shop", rollout.rollout_id).phase is Phase.DEPLOYING
    assert store.state("shop").phase is Phase.DEPLOYING


def test_a_move_from_a_phase_the_rollout_has_left_changes_nothing(store):
    seen = store.accept(candidate(1), commit=None, previous=None)
    walk(store, seen, Phase.GATING, Phase.AWAITING_APPROVAL)
    stale = Rollout.from_item(seen.to_item() | {"phase": "gating"})  # read before the wait
    assert store.move(stale, Phase.PROMOTING, by=Actor.GATE, why="passes") is None
    assert store.rollout("shop", seen.rollout_id).phase is Phase.AWAITING_APPROVAL


def test_an_ended_rollout_stays_ended(store):
    deploying = store.accept(candidate(1), commit=None, previous=None)
    failed = walk(store, deploying, Phase.FAILED)
    for phase in (Phase.GATING, Phase.ROLLED_BACK, Phase.SUPERSEDED):
        with pytest.raises(LifecycleError):
            store.move(failed, phase, by=Actor.GATE, why="again")
    # A caller that still saw it deploying moves nothing either.
    assert store.move(deploying, Phase.GATING, by=Actor.ROLLOUT, why="late") is None
    assert store.rollout("shop", failed.rollout_id).reason == "to failed"


def test_acceptance_is_forward_only(store):
    store.accept(candidate(2), commit=None, previous=None)
    with pytest.raises(Stale):
        store.accept(candidate(1), commit=None, previous=None)
    with pytest.raises(Stale):
        store.accept(candidate(2), commit=None, previous=None)


def test_a_newer_push_supersedes_a_pending_rollout_in_the_same_transaction(store):
    older = walk(store, store.accept(candidate(1), commit=None, previous=None), Phase.GATING)
    newer = store.accept(candidate(2), commit=None, previous=None)
    assert newer.colour is Colour.GREEN  # the slot that is not live
    assert store.rollout("shop", older.rollout_id).phase is Phase.SUPERSEDED
    state = store.state("shop")
    assert (state.rollout_id, state.phase) == (newer.rollout_id, Phase.DEPLOYING)


def test_a_newer_push_leaves_a_watched_rollout_its_watch_until_it_takes_the_slot(store):
    live = promote(store, store.accept(candidate(1), commit=None, previous=None))
    newer = store.accept(candidate(2, Colour.BLUE), commit=None, previous=None)
    state = store.state("shop")
    assert store.rollout("shop", live.rollout_id).phase is Phase.WATCHING  # still watched
    assert state.backup_colour is Colour.BLUE and state.live_phase is Phase.WATCHING
    # The newer one fails before writing anything (its image never came): nothing changes.
    walk(store, newer, Phase.FAILED)
    assert store.rollout("shop", live.rollout_id).phase is Phase.WATCHING
    assert store.state("shop").backup_colour is Colour.BLUE


def test_taking_the_slot_ends_a_watch_and_drops_the_backup(store):
    live = promote(store, store.accept(candidate(1), commit=None, previous=None))
    newer = store.accept(candidate(2, Colour.BLUE), commit=None, previous=None)
    assert store.take_slot(newer)
    taken = store.rollout("shop", live.rollout_id)
    assert taken.phase is Phase.SUPERSEDED and newer.rollout_id in (taken.reason or "")
    state = store.state("shop")
    assert state.backup_colour is None and state.live_phase is Phase.SUPERSEDED
    assert store.take_slot(newer)  # safe to repeat: nothing more to take


def test_taking_the_slot_of_a_warm_rollout_settles_it(store):
    live = walk(
        store, promote(store, store.accept(candidate(1), commit=None, previous=None)), Phase.LIVE
    )
    newer = store.accept(candidate(2, Colour.BLUE), commit=None, previous=None)
    assert store.take_slot(newer)
    assert store.rollout("shop", live.rollout_id).phase is Phase.SETTLED
    assert store.state("shop").backup_colour is None


def test_only_the_newest_rollout_takes_the_slot(store):
    older = store.accept(candidate(1), commit=None, previous=None)
    store.accept(candidate(2), commit=None, previous=None)
    assert not store.take_slot(older)


def test_a_revert_makes_what_was_live_before_live_again(store):
    first = promote(store, store.accept(candidate(1), commit=None, previous=None))
    second = store.accept(candidate(2, Colour.BLUE), commit=None, previous=None)
    assert store.take_slot(second)
    second = store.update(
        walk(store, second, Phase.GATING, Phase.PROMOTING),
        {
            "previous_colour": "green",
            "previous_version": "v1",
            "previous_image": "shop-web:v1",
            "previous_rollout_id": first.rollout_id,
        },
    )
    assert store.set_live(second, backup=Colour.GREEN)
    assert store.restore_live(second) is Colour.GREEN
    state = store.state("shop")
    assert (state.live_colour, state.live_image, state.live_rollout_id, state.backup_colour) == (
        Colour.GREEN,
        "shop-web:v1",
        first.rollout_id,
        None,
    )


def test_acceptance_never_supersedes_a_rollout_promoted_since_it_was_read(store):
    older = walk(store, store.accept(candidate(1), commit=None, previous=None), Phase.GATING)
    real_state = store.state
    calls = []

    def promoted_meanwhile(app):  # the gate promotes between acceptance's read and its write
        read = real_state(app)
        if not calls:
            calls.append(1)
            promoting = walk(store, store.rollout("shop", older.rollout_id), Phase.PROMOTING)
            assert store.set_live(promoting, backup=None)
        return read

    store.state = promoted_meanwhile
    newer = store.accept(candidate(2), commit=None, previous=None)
    store.state = real_state
    assert store.rollout("shop", older.rollout_id).phase is Phase.PROMOTING  # not superseded
    state = store.state("shop")
    assert state.live_colour is Colour.GREEN and newer.colour is Colour.BLUE  # read again


def test_a_revert_after_a_newer_rollout_took_the_slot_changes_nothing(store):
    first = promote(store, store.accept(candidate(1), commit=None, previous=None))
    second = store.accept(candidate(2, Colour.BLUE), commit=None, previous=None)
    assert store.take_slot(second)
    assert store.restore_live(first) is None
    assert store.state("shop").live_colour is Colour.GREEN


def test_a_rollout_no_longer_deploying_does_not_take_the_slot(store):
    live = promote(store, store.accept(candidate(1), commit=None, previous=None))
    newer = store.accept(candidate(2, Colour.BLUE), commit=None, previous=None)
    walk(store, newer, Phase.ABORTED)
    assert store.take_slot(newer) is None
    assert store.rollout("shop", live.rollout_id).phase is Phase.WATCHING
    assert store.state("shop").backup_colour is Colour.BLUE


def test_records_written_before_the_lifecycle_read_as_it_has_them(store):
    client = store.client
    key = {"pk": {"S": "app#shop"}}
    client.put_item(
        TableName=store.table,
        Item=key
        | {
            "sk": {"S": "state"},
            "rollout_id": {"S": "r-1"},
            "phase": {"S": "watching"},
            "sequence": {"N": "1"},
            "live_colour": {"S": "green"},
            "live_version": {"S": "v1"},
        },
    )
    old = {
        "app": {"S": "shop"},
        "rollout_id": {"S": "r-1"},
        "version": {"S": "v1"},
        "image": {"S": "i"},
        "colour": {"S": "green"},
        "sequence": {"N": "1"},
        "source": {"S": "manual"},
        "created_at": {"N": "5"},
        "updated_at": {"N": "9"},
    }
    client.put_item(
        TableName=store.table,
        Item=key
        | {"sk": {"S": "rollout#r-1"}, "phase": {"S": "live"}, "retired": {"BOOL": True}}
        | old,
    )
    state = store.state("shop")
    assert (state.live_rollout_id, state.live_phase) == ("r-1", Phase.WATCHING)
    rollout = store.rollout("shop", "r-1")
    assert rollout.phase is Phase.SETTLED and rollout.entered_at == 9


# ------------------------------------------------------------------ a revert races a newer rollout
def promote_after(store: RolloutStore, rollout: Rollout, previous: Rollout) -> Rollout:
    """``rollout`` takes the slot and is promoted, with ``previous`` live before it."""
    assert store.take_slot(rollout)
    rollout = store.update(
        walk(store, rollout, Phase.GATING, Phase.PROMOTING),
        {
            "previous_colour": previous.colour.value,
            "previous_version": previous.version,
            "previous_image": previous.image,
            "previous_rollout_id": previous.rollout_id,
        },
    )
    assert store.set_live(rollout, backup=previous.colour)
    return walk(store, rollout, Phase.WATCHING)


def test_a_revert_decided_before_a_newer_rollout_took_its_slot_moves_no_traffic(store):
    live = promote(store, store.accept(candidate(1), commit=None, previous=None))
    decided = store.rollout("shop", live.rollout_id)  # the gate decides to revert it, then...
    newer = store.accept(candidate(2, Colour.BLUE), commit=None, previous=None)
    assert store.take_slot(newer)  # ... a newer rollout takes the warm slot (blue)
    assert store.restore_live(decided) is None  # the restore refuses
    state = store.state("shop")
    assert (state.live_colour, state.live_image, state.live_rollout_id) == (
        Colour.GREEN,
        "shop-web:v1",
        live.rollout_id,
    )


def test_a_stale_revert_never_routes_to_a_newer_rollouts_candidate_after_its_own_revert(store):
    """The newer rollout took the slot, was promoted, and was reverted itself: the live
    rollout is the older one again (with no live phase). The older one's revert, decided
    before all that, must not make the newer, failed candidate's colour live."""
    older = promote(store, store.accept(candidate(1), commit=None, previous=None))  # green
    decided = store.rollout("shop", older.rollout_id)
    newer = promote_after(
        store, store.accept(candidate(2, Colour.BLUE), commit=None, previous=None), decided
    )
    assert store.restore_live(newer) is Colour.GREEN  # the newer one is reverted
    state = store.state("shop")
    assert (state.live_colour, state.live_rollout_id) == (Colour.GREEN, older.rollout_id)

    assert store.restore_live(decided) is None
    state = store.state("shop")
    assert (state.live_colour, state.live_image) == (Colour.GREEN, "shop-web:v1")


def test_a_revert_with_only_a_newer_accept_in_between_goes_back_and_the_newer_one_moves(store):
    """Accepted, not yet in the slot: the revert makes the previous colour (still warm with
    what was live) live, and the newer rollout then takes the other slot, never the live one."""
    first = promote(store, store.accept(candidate(1), commit=None, previous=None))  # green
    second = promote_after(
        store, store.accept(candidate(2, Colour.BLUE), commit=None, previous=None), first
    )  # blue live, green warm
    decided = store.rollout("shop", second.rollout_id)
    third = store.accept(candidate(3), commit=None, previous=None)
    assert third.colour is Colour.GREEN  # accepted into the warm slot's colour
    assert store.restore_live(decided) is Colour.GREEN  # what was live before: still warm
    taken = store.take_slot(third)
    assert taken is not None and taken.colour is Colour.BLUE  # never the live colour
    state = store.state("shop")
    assert (state.live_colour, state.live_rollout_id) == (Colour.GREEN, first.rollout_id)


def test_a_revert_on_a_state_from_before_the_lifecycle_needs_its_rollout_still_newest(store):
    client = store.client
    client.put_item(
        TableName=store.table,
        Item={
            "pk": {"S": "app#shop"},
            "sk": {"S": "state"},
            "rollout_id": {"S": "r-1"},
            "phase": {"S": "watching"},
            "sequence": {"N": "1"},
            "live_colour": {"S": "green"},
            "live_version": {"S": "v1"},
        },
    )
    legacy = candidate(0)._replace(rollout_id="r-1", phase=Phase.WATCHING, sequence=1)
    newer = store.accept(candidate(2), commit=None, previous=None)  # a newer push in between
    assert newer.colour is Colour.BLUE
    assert store.restore_live(legacy) is None
    assert store.state("shop").live_colour is Colour.GREEN


def test_the_states_of_many_apps_in_one_read_are_each_apps_own(store):
    first = promote(store, store.accept(candidate(1), commit=None, previous=None))
    blog = candidate(2)._replace(app="blog", rollout_id=f"{T0 + 2:013d}-blog")
    store.accept(blog, commit=None, previous=None)
    calls: list[str] = []
    store.client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    states = store.states(["shop", "blog", "never-deployed", "shop"])
    assert calls == ["BatchGetItem"]
    assert list(states) == ["shop", "blog", "never-deployed"]
    assert states["shop"] == store.state("shop")
    assert states["shop"].live_rollout_id == first.rollout_id
    assert (states["blog"].rollout_id, states["blog"].phase) == (blog.rollout_id, Phase.DEPLOYING)
    assert states["never-deployed"] == store.state("never-deployed")
    assert states["never-deployed"].rollout_id is None


def test_the_states_of_more_apps_than_one_batch_holds_take_one_read_per_batch(store):
    calls: list[str] = []
    store.client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    names = [f"app-{n}" for n in range(250)]
    states = store.states(names)
    assert calls == ["BatchGetItem"] * 3
    assert list(states) == names and all(s.rollout_id is None for s in states.values())


def test_keys_dynamodb_leaves_unprocessed_are_asked_again_then_refused():
    # moto processes every key: DynamoDB's partial answers are played with botocore's Stubber.
    from botocore.stub import Stubber

    from greenlight.errors import TemporaryError
    from greenlight.store.rollouts import BATCH_ROUNDS

    client = boto3.client("dynamodb", region_name="eu-west-1")
    store = RolloutStore(client, "t")
    key = {"pk": {"S": "app#blog"}, "sk": {"S": "state"}}
    shop = {"pk": {"S": "app#shop"}, "sk": {"S": "state"}, "live_colour": {"S": "green"}}
    left = {"t": {"Keys": [key], "ConsistentRead": True}}
    with Stubber(client) as stub:
        stub.add_response("batch_get_item", {"Responses": {"t": [shop]}, "UnprocessedKeys": left})
        stub.add_response(
            "batch_get_item",
            {"Responses": {"t": [key | {"rollout_id": {"S": "r-2"}}]}, "UnprocessedKeys": {}},
            {"RequestItems": left},
        )
        states = store.states(["shop", "blog"])
        stub.assert_no_pending_responses()
    assert states["shop"].live_colour is Colour.GREEN and states["blog"].rollout_id == "r-2"
    with Stubber(client) as stub:
        for _ in range(BATCH_ROUNDS):
            stub.add_response("batch_get_item", {"Responses": {"t": []}, "UnprocessedKeys": left})
        with pytest.raises(TemporaryError, match="unprocessed"):
            store.states(["blog"])


def gated_promotion(store: RolloutStore, gated: Rollout, **kwargs):
    """What the gate does at its promotion decision: the move and the live switch in one
    write, the switch decided from the state read (gate/decide.py ``live_switch``)."""
    from greenlight.gate.decide import live_switch

    kwargs.setdefault("switch", lambda state: live_switch(gated, state))
    return store.promote(gated, by=Actor.GATE, why="proven", **kwargs)


def test_a_promotion_moves_and_switches_the_live_colour_in_one_write(store):
    first = promote(store, store.accept(candidate(1), commit=None, previous=None))  # green live
    second = store.accept(candidate(2, Colour.BLUE), commit=None, previous=None)
    assert store.take_slot(second)
    gated = walk(store, second, Phase.GATING)
    calls: list[str] = []
    store.client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    done = gated_promotion(store, gated, sets={"last_check_at": T0})
    assert calls == ["GetItem", "TransactWriteItems"]
    assert done is not None
    moved, state = done
    record = store.rollout("shop", second.rollout_id)
    assert moved.phase is record.phase is Phase.PROMOTING
    assert moved.entered_at == record.entered_at and record.last_check_at == T0
    assert (record.previous_colour, record.previous_version, record.previous_rollout_id) == (
        Colour.GREEN,
        "v1",
        first.rollout_id,
    )
    assert moved.previous_rollout_id == first.rollout_id
    assert state == store.state("shop")
    assert (state.live_colour, state.live_rollout_id, state.live_phase, state.phase) == (
        Colour.BLUE,
        second.rollout_id,
        Phase.PROMOTING,
        Phase.PROMOTING,
    )
    assert state.backup_colour is Colour.GREEN


def test_the_first_promotion_of_an_app_switches_from_nothing_live(store):
    gated = walk(store, store.accept(candidate(1), commit=None, previous=None), Phase.GATING)
    done = gated_promotion(store, gated)
    assert done is not None
    state = store.state("shop")
    assert (state.live_colour, state.live_rollout_id) == (Colour.GREEN, gated.rollout_id)
    assert store.rollout("shop", gated.rollout_id).previous_colour is Colour.BLUE


def test_a_superseded_rollout_is_not_promoted_and_nothing_is_written(store):
    gated = walk(store, store.accept(candidate(1), commit=None, previous=None), Phase.GATING)
    store.accept(candidate(2), commit=None, previous=None)  # newer: supersedes the gated one
    before = store.state("shop")
    assert gated_promotion(store, gated) is None
    assert store.state("shop") == before
    assert store.rollout("shop", gated.rollout_id).phase is Phase.SUPERSEDED


def test_a_rollout_someone_else_moved_is_not_promoted_and_the_state_is_unchanged(store):
    gated = walk(store, store.accept(candidate(1), commit=None, previous=None), Phase.GATING)
    assert store.move(gated, Phase.ROLLED_BACK, by=Actor.MANUAL, why="aborted") is not None
    before = store.state("shop")
    assert gated_promotion(store, gated) is None
    assert store.state("shop") == before
    assert store.rollout("shop", gated.rollout_id).phase is Phase.ROLLED_BACK


def test_what_is_live_changing_underneath_is_read_again_before_the_write(store):
    from greenlight.gate.decide import live_switch

    promote(store, store.accept(candidate(1), commit=None, previous=None))  # green live
    second = store.accept(candidate(2, Colour.BLUE), commit=None, previous=None)
    assert store.take_slot(second)
    gated = walk(store, second, Phase.GATING)
    seen = []

    def switch(state):
        seen.append((state.live_rollout_id, state.live_version))
        if len(seen) == 1:  # another writer makes another rollout live (same colour) meanwhile
            store.client.update_item(
                TableName=store.table,
                Key={"pk": {"S": "app#shop"}, "sk": {"S": "state"}},
                UpdateExpression="SET live_rollout_id = :r, live_version = :v",
                ExpressionAttributeValues={":r": {"S": "r-hotfix"}, ":v": {"S": "hotfix"}},
            )
        return live_switch(gated, state)

    done = gated_promotion(store, gated, switch=switch)
    assert done is not None and len(seen) == 2 and seen[1] == ("r-hotfix", "hotfix")
    record = store.rollout("shop", gated.rollout_id)
    assert (record.previous_rollout_id, record.previous_version) == ("r-hotfix", "hotfix")
    assert store.state("shop").live_rollout_id == gated.rollout_id


def test_a_promotion_from_a_phase_that_may_not_promote_is_refused(store):
    rollout = store.accept(candidate(1), commit=None, previous=None)  # deploying
    with pytest.raises(LifecycleError):
        gated_promotion(store, rollout)
