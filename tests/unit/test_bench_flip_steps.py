"""bench_flips' split of a flip's switch window into its steps (flip_steps.py): pure functions
at fixed instants, and the recorder on a real botocore client and a function it wraps."""

from __future__ import annotations

from collections import Counter

from tests.benchmarks.flip_steps import Event, Recorder, Steps, report, split

PUMP, OTHER = 1, 2


def window() -> list[Event]:
    """A promotion decided at 10.0, seen on every instance at 12.0: the gate's two writes, the
    push (lock, states, a kube read) and its apply round; another thread's read beside it."""
    return [
        Event(PUMP, "aws", "dynamodb.UpdateItem", 10.05, 10.15),
        Event(PUMP, "aws", "dynamodb.UpdateItem", 10.15, 10.30),
        Event(OTHER, "aws", "dynamodb.GetItem", 10.20, 10.40),  # not the push's thread
        Event(PUMP, "push", "push", 10.40, 11.90),
        Event(PUMP, "aws", "dynamodb.PutItem", 10.40, 10.50),
        Event(PUMP, "aws", "dynamodb.BatchGetItem", 10.50, 10.70),
        Event(PUMP, "kube", "kube.GET", 10.70, 10.80),
        Event(PUMP, "apply", "apply", 11.50, 11.80),
        Event(PUMP, "aws", "dynamodb.PutItem", 11.80, 11.85),  # after the round: not counted
    ]


def test_the_window_is_cut_at_the_push_and_its_apply_round() -> None:
    steps = split(window(), 10.0, 12.0)
    assert steps is not None
    assert {k: round(v, 2) for k, v in steps.seconds.items()} == {
        "gate": 0.40,
        "push": 1.10,
        "apply": 0.30,
        "seen": 0.20,
    }
    assert steps.trips["gate"] == Counter({"dynamodb.UpdateItem": 2})
    assert steps.trips["push"] == Counter(
        {"dynamodb.PutItem": 1, "dynamodb.BatchGetItem": 1, "kube.GET": 1}
    )
    assert round(steps.trip_seconds["gate"], 2) == 0.25
    assert round(steps.trip_seconds["push"], 2) == 0.40
    assert steps.count("push") == 3


def test_clients_that_saw_green_before_the_round_answered_give_a_negative_last_step() -> None:
    steps = split(window(), 10.0, 11.7)
    assert steps is not None and round(steps.seconds["seen"], 2) == -0.10


def test_a_window_without_an_apply_round_or_its_push_is_not_split() -> None:
    no_apply = [e for e in window() if e.kind != "apply"]
    assert split(no_apply, 10.0, 12.0) is None
    no_push = [e for e in window() if e.kind != "push"]
    assert split(no_push, 10.0, 12.0) is None
    assert split(window(), 11.9, 13.0) is None  # the round began before this window


def test_the_report_gives_medians_and_the_median_flips_round_trips() -> None:
    def flip(gate: float, trips: int) -> Steps:
        return Steps(
            {"gate": gate, "push": 1.0, "apply": 0.25, "seen": 0.05},
            {"gate": Counter({"dynamodb.UpdateItem": trips}), "push": Counter({"kms.Sign": 1})},
            {"gate": 0.1 * trips, "push": 0.05},
        )

    lines = report([flip(0.4, 2), flip(0.6, 3), flip(0.5, 4)])
    assert lines[0] == "  gate     0.50 s  (3 round trips, 0.30 s of it: dynamodb.UpdateItem x3)"
    assert lines[1] == "  push     1.00 s  (1 round trips, 0.05 s of it: kms.Sign)"
    assert lines[2:] == ["  apply    0.25 s", "  seen     0.05 s"]
    assert report([]) == ["no flip with its steps"]


def test_the_recorder_times_botocore_calls_by_operation_on_their_thread() -> None:
    import threading

    import boto3
    from botocore.stub import Stubber

    ticks = iter(range(100))
    recorder = Recorder(clock=lambda: float(next(ticks))).install()
    try:
        client = boto3.client("s3", region_name="eu-west-1")
        with Stubber(client) as stub:
            stub.add_response("head_object", {"ContentLength": 1}, {"Bucket": "b", "Key": "k"})
            client.head_object(Bucket="b", Key="k")
    finally:
        recorder.uninstall()
    # a call after uninstall is not recorded
    with Stubber(client) as stub:
        stub.add_response("head_object", {"ContentLength": 1}, {"Bucket": "b", "Key": "k"})
        client.head_object(Bucket="b", Key="k")
    (event,) = [e for e in recorder.events if e.kind == "aws"]
    assert event.label == "s3.HeadObject" and event.thread == threading.get_ident()
    assert event.end > event.start
    recorder.forget_before(event.end)
    assert recorder.between(0, 1000) == []


def test_the_decision_is_the_latest_start_of_a_promotion_before_its_recorded_move() -> None:
    recorder = Recorder()
    recorder.events = [
        Event(PUMP, "decide", "decide", 3.0, 3.4),  # an earlier flip's
        Event(PUMP, "decide", "decide", 9.8, 10.3),
        Event(PUMP, "aws", "dynamodb.GetItem", 9.9, 9.95),
        Event(PUMP, "decide", "decide", 20.0, 20.2),  # a later one
    ]
    assert recorder.decided(10.05) == 9.8
    assert recorder.decided(2.0) is None
