"""bench_flips' placement of wrk's answers (wrk_status.lua's lines) and the Python clients'
failures in the flips' windows: pure functions at fixed inputs."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.benchmarks.wrk_timeline import (
    OUTSIDE,
    PROOF,
    REST,
    SWITCH,
    FlipWindows,
    WrkSecond,
    WrkTimeline,
    kind_of,
    parse_timeline,
    place,
    report,
)

WRK_OUTPUT = """\
Running 1h test @ https://127.0.0.1:8443/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.00ms    3.00ms  80.00ms   90.00%
  5012 requests in 30.00s, 1.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 6
Requests/sec:    167.00
greenlight-wrk-second {"t": 1000, "n": 150, "status": {}}
greenlight-wrk-second {"t": 1001, "n": 140, "status": {"503": 3, "502": 1}}
greenlight-wrk-second {"t": 1010, "n": 160, "status": {"503": 2}}
greenlight-wrk-errors {"connect": 0, "read": 1, "write": 0, "status": 6, "timeout": 2, \
"requests": 5012}
"""


def test_parse_timeline_reads_the_seconds_and_the_error_counters() -> None:
    timeline = parse_timeline(WRK_OUTPUT)
    assert timeline.seconds == [
        WrkSecond(1000, 150, {}),
        WrkSecond(1001, 140, {503: 3, 502: 1}),
        WrkSecond(1010, 160, {503: 2}),
    ]
    assert timeline.errors == {"connect": 0, "read": 1, "write": 0, "status": 6, "timeout": 2}
    assert timeline.requests == 5012
    assert timeline.status_totals() == Counter({503: 5, 502: 1})


def test_parse_timeline_without_the_script_says_so() -> None:
    plain = WRK_OUTPUT.split("greenlight-wrk-second", maxsplit=1)[0]
    with pytest.raises(ValueError, match=r"no 'greenlight-wrk-errors' line.*-s wrk_status\.lua"):
        parse_timeline(plain)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('greenlight-wrk-second {"t": 1, "n": 2, "status": {"abc": 1}}', "status 'abc'"),
        ('greenlight-wrk-second {"t": 1, "n": -2, "status": {}}', "line 1: n must be a count"),
        ('greenlight-wrk-second {"t": 1, "n": 2, "status": {"503": "x"}}', "status 503 must"),
        ('greenlight-wrk-second {"t": 1, "n": 2}', "line 1: status must be an object"),
        ('greenlight-wrk-second {"n": 2, "status": {}}', "line 1: t must be a count"),
        ("greenlight-wrk-second {not json", "line 1: not JSON"),
        ('greenlight-wrk-errors {"connect": 0}', "line 1: read must be a count"),
    ],
)
def test_parse_timeline_names_the_bad_line_and_field(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_timeline(line + "\n")


# Monotonic clock 0 = wall clock 1000 (wall_minus_monotonic = 1000).
OFFSET = 1000.0
FLIPS = [
    # runtime: flip 10..30, proof 12..16, switch 16..18.5
    FlipWindows("runtime switch", (10.0, 30.0), proof=(12.0, 16.0), switch=(16.0, 18.5)),
    # reload: flip 30.2..50, not measured (no proof, no switch)
    FlipWindows("reload switch", (30.2, 50.0)),
    # reload: flip 60..80, proof 62..66, switch 66..69
    FlipWindows("reload switch", (60.0, 80.0), proof=(62.0, 66.0), switch=(66.0, 69.0)),
]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (5.0, 5.0, ("", OUTSIDE)),
        (11.0, 11.0, ("runtime switch", REST)),
        (13.0, 13.0, ("runtime switch", PROOF)),
        (17.0, 17.0, ("runtime switch", SWITCH)),
        (16.0, 16.0, ("runtime switch", SWITCH)),  # the decision itself: the switch's
        (18.4, 19.4, ("runtime switch", SWITCH)),  # a second touching the switch: blamed on it
        (65.5, 66.5, ("reload switch", SWITCH)),  # proof and switch: the switch first
        (29.9, 30.9, ("reload switch", REST)),  # two flips: the one it overlaps most
        (29.5, 30.5, ("runtime switch", REST)),
        (29.0, 30.0, ("runtime switch", REST)),
        (50.5, 51.5, ("", OUTSIDE)),
        (80.0, 80.0, ("reload switch", REST)),  # a window's end is in it
    ],
)
def test_kind_of_places_a_span_in_the_first_window_kind_it_touches(
    start: float, end: float, expected: tuple[str, str]
) -> None:
    assert kind_of(start, end, FLIPS) == expected


def timeline(*seconds: WrkSecond) -> WrkTimeline:
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 3}
    return WrkTimeline(list(seconds), errors, requests=sum(s.answers for s in seconds))


def test_place_puts_wrk_seconds_and_python_failures_in_the_flips_windows() -> None:
    wrk = timeline(
        WrkSecond(1005, 100, {503: 4}),  # monotonic 5..6: outside
        WrkSecond(1011, 100, {}),  # nothing failed: not placed
        WrkSecond(1013, 100, {503: 1, 502: 2}),  # proof
        WrkSecond(1017, 100, {503: 7}),  # switch
        WrkSecond(1018, 100, {503: 1}),  # 18..19 touches the switch (ends 18.5)
        WrkSecond(1040, 100, {504: 1}),  # the unmeasured reload flip: the rest of it
        WrkSecond(1067, 100, {502: 5}),  # reload switch
        WrkSecond(1090, 100, {503: 9}),  # outside
    )
    python = [5.5, 13.1, 17.2, 17.3, 45.0, 67.0, 95.0]
    placed = place(python, wrk, FLIPS, OFFSET)
    assert placed.python == Counter(
        {
            ("", OUTSIDE): 2,
            ("runtime switch", PROOF): 1,
            ("runtime switch", SWITCH): 2,
            ("reload switch", REST): 1,
            ("reload switch", SWITCH): 1,
        }
    )
    assert placed.wrk == {
        ("", OUTSIDE): Counter({503: 13}),
        ("runtime switch", PROOF): Counter({503: 1, 502: 2}),
        ("runtime switch", SWITCH): Counter({503: 8}),
        ("reload switch", REST): Counter({504: 1}),
        ("reload switch", SWITCH): Counter({502: 5}),
    }
    assert report(placed, ("runtime switch", "reload switch")) == [
        "runtime switch, failures by window: "
        "switch: Python clients 2, wrk non-2xx 503 x8; "
        "proof: Python clients 1, wrk non-2xx 502 x2, 503 x1; "
        "rest of the flip: Python clients 0, wrk non-2xx none",
        "reload switch, failures by window: "
        "switch: Python clients 1, wrk non-2xx 502 x5; "
        "proof: Python clients 0, wrk non-2xx none; "
        "rest of the flip: Python clients 1, wrk non-2xx 504 x1",
        "outside any flip: Python clients 2, wrk non-2xx 503 x13",
        "wrk's own errors (totals: wrk has no hook to time them): timeout 3; "
        "800 requests, 800 answers",
    ]


def test_place_shifts_wrk_seconds_by_the_clock_offset() -> None:
    wrk = timeline(WrkSecond(2017, 10, {503: 1}))
    # The same wall-clock second is in the runtime switch with one offset, outside with another.
    assert place([], wrk, FLIPS, 2000.0).wrk == {("runtime switch", SWITCH): Counter({503: 1})}
    assert place([], wrk, FLIPS, 1000.0).wrk == {("", OUTSIDE): Counter({503: 1})}
