"""The gate's analysis of the edge's counters (greenlight/gate/analysis.py) at fixed inputs.

Samples have the counters port's shape (``edgepush.EdgeCounters``): per instance its HAProxy
worker and one row per server of the named backends, cumulative per worker.
"""

from __future__ import annotations

from typing import Any

import pytest

from greenlight.appconfig import parse_apps
from greenlight.gate.analysis import (
    COUNTED,
    RTIME_SAMPLES,
    Figures,
    Outcome,
    Thresholds,
    analyse,
    baseline,
    error_ratio_at_least,
    judge,
    window,
    window_ms,
)

DEFAULTS = Thresholds()  # min 50 requests, 2% errors, ratio 2.0, no ceiling


def row(backend: str, server: str, requests: int, **counts: Any) -> dict[str, Any]:
    return {
        "backend": backend,
        "server": server,
        "backup": counts.pop("backup", 0),
        "status": "UP",
        "requests": requests,
        "http_5xx": counts.pop("http_5xx", 0),
        "http_4xx": counts.pop("http_4xx", 0),
        "connection_errors": counts.pop("connection_errors", 0),
        "response_errors": counts.pop("response_errors", 0),
        "retries": counts.pop("retries", 0),
        "redispatches": counts.pop("redispatches", 0),
        "response_ms": counts.pop("response_ms", 10),
        "total_ms": 12,
    }


def sample(**instances: tuple[int, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "status": "counters",
        "instances": {
            iid: {"worker": worker, "uptime_seconds": 100, "rows": rows}
            for iid, (worker, rows) in instances.items()
        },
        "errors": {},
    }


def total(backend: str, servers: list[dict[str, Any]], *, lost: int = 0) -> dict[str, Any]:
    """A backend's BACKEND row: its servers' sums, and ``lost`` requests that found no server
    UP (counted there and in no server's row)."""
    sums = {name: sum(s[name] for s in servers) for name in COUNTED}
    sums["connection_errors"] += lost
    return row(backend, "BACKEND", sums.pop("requests") + lost, response_ms=99, **sums)


def green(
    n1: int, n2: int, *, live: int = 0, lost: int = 0, backup: int = 7000, **counts: Any
) -> list[dict[str, Any]]:
    """green's rows on one instance: two servers on its own backend (the preview host), one on
    its live backend with blue's server as the backup there (``backup`` requests, 1% failed),
    and blue's own rows."""
    ms = counts.pop("response_ms", 10)
    s1 = row("shop-green", "node-1", n1, response_ms=ms, **counts)
    s2 = row("shop-green", "node-2", n2, response_ms=ms)
    l1 = row("shop-live-green", "node-1", live, response_ms=ms)
    b1 = row("shop-live-green", "node-1-blue", backup, backup=1, http_5xx=backup // 100)
    blue = row("shop-blue", "node-1", 5000, response_ms=10)
    live_blue = row("shop-live-blue", "node-1", 5000, response_ms=10)
    return [
        s1,
        s2,
        total("shop-green", [s1, s2], lost=lost),
        l1,
        b1,
        total("shop-live-green", [l1, b1]),
        blue,
        total("shop-blue", [blue]),
        live_blue,
        total("shop-live-blue", [live_blue]),
    ]


def test_figures_are_the_difference_from_the_baseline_over_every_instance():
    base = baseline(sample(i1=(100, green(10, 10)), i2=(200, green(5, 5))), "shop", "green")
    now = sample(
        i1=(100, green(110, 110, live=20, http_5xx=4)),
        i2=(200, green(105, 105, connection_errors=2)),
    )
    figures, instances, notes = window(base, now, "shop", "green")
    assert figures.requests == 200 + 20 + 200 and figures.http_5xx == 4
    assert figures.connection_errors == 2 and figures.errors == 6
    assert dict(instances)["i1"].requests == 220 and dict(instances)["i2"].requests == 200
    assert notes == ()


def test_the_backup_servers_and_requests_that_found_no_server_do_not_count():
    base = baseline(sample(i1=(100, green(10, 10, backup=7000))), "shop", "green")
    # blue served 2000 as the backup (20 of them failed); 5 requests found no server UP.
    now = sample(i1=(100, green(60, 60, lost=5, backup=9000, connection_errors=1)))
    figures, _, _ = window(base, now, "shop", "green")
    assert figures.requests == 100 and figures.connection_errors == 1
    assert figures.http_5xx == 0


def test_a_reload_between_samples_counts_the_whole_current_figure():
    base = baseline(sample(i1=(100, green(900, 900))), "shop", "green")
    reloaded = sample(i1=(101, green(30, 40, http_5xx=3)))  # a new worker: counters from zero
    figures, _, notes = window(base, reloaded, "shop", "green")
    assert figures.requests == 70 and figures.http_5xx == 3
    assert notes == ("i1: reloaded since the baseline, counted since its worker started",)


def test_a_row_whose_counters_went_down_counts_whole():
    base = baseline(sample(i1=(100, green(50, 50))), "shop", "green")
    figures, _, _ = window(base, sample(i1=(100, green(70, 20))), "shop", "green")
    assert figures.requests == 90  # the backend's total went down (100 to 90): all 90 count


def test_an_instance_missing_from_either_sample():
    base = baseline(sample(i1=(100, green(10, 10)), i2=(200, green(10, 10))), "shop", "green")
    now = sample(i1=(100, green(40, 40)), i3=(300, green(25, 25)))
    now["errors"] = {"i2": "timed out"}
    figures, instances, notes = window(base, now, "shop", "green")
    assert figures.requests == 60  # i2 not counted; i3 (not in the baseline) neither
    assert [iid for iid, _ in instances] == ["i1"]
    assert notes == (
        "i3: not in the baseline, not counted (this read joins it)",
        "i2: not read (timed out), not counted",
    )
    gone = window(base, sample(i1=(100, green(40, 40))), "shop", "green")[2]
    assert gone == ("i2: missing from the sample, not counted",)


def test_no_baseline_at_all_counts_every_instance_whole():
    figures, _, notes = window(None, sample(i1=(100, green(30, 30))), "shop", "green")
    assert figures.requests == 60 and len(notes) == 1


def test_the_mean_response_time_is_weighted_by_each_servers_requests_in_the_window():
    base = baseline(sample(i1=(100, green(1000, 0))), "shop", "green")
    rows = green(1100, 300)
    rows[0]["response_ms"], rows[1]["response_ms"] = 10, 50  # node-1: 100 new; node-2: 300
    figures, _, _ = window(base, sample(i1=(100, rows)), "shop", "green")
    assert figures.response_ms == pytest.approx((100 * 10 + 300 * 50) / 400)


def server(backend: str, requests: int, ms: int) -> list[dict[str, Any]]:
    """One server's row and its backend's total."""
    one = row(backend, "node-1", requests, response_ms=ms)
    return [one, total(backend, [one])]


def test_a_previous_candidates_requests_in_haproxys_average_do_not_count():
    # Measured in the sandbox: a candidate 3x slower than blue rolled back, then a healthy one
    # in the same colour (the same HAProxy worker, its servers kept): rtime still averaged the
    # slow one's requests (136 ms over 55) and said 112 ms, where the healthy one's 28 took 65.
    base = baseline(sample(i1=(7, server("shop-green", 55, 136))), "shop", "green")
    figures, _, _ = window(base, sample(i1=(7, server("shop-green", 83, 112))), "shop", "green")
    assert figures.requests == 28
    assert figures.response_ms == pytest.approx((83 * 112 - 55 * 136) / 28)  # 64.9


def test_the_live_colour_is_measured_over_the_same_window():
    # The machine got busier during the window: blue's average rose from 10 ms to 30 ms, the
    # window's 400 requests took 55 ms; the candidate's took 70 ms: 1.3 times, not 2.3 times
    # blue's average since it started.
    then = sample(i1=(7, server("shop-green", 0, 0) + server("shop-blue", 500, 10)))
    now = sample(i1=(7, server("shop-green", 300, 70) + server("shop-blue", 900, 30)))
    base = baseline(then, "shop", "green")
    verdict = analyse(base, now, DEFAULTS, app="shop", colour="green", live_colour="blue")
    assert verdict.outcome is Outcome.PASS, verdict.reason
    assert "mean response 70 ms (1.3 times the live colour's 55 ms)" in verdict.reason
    # Blue served 20 requests in the window: no side-by-side figure, the ratio is not judged
    # (its average since it started is another window: 2.3 times would be the load's doing).
    little = sample(i1=(7, server("shop-green", 300, 70) + server("shop-blue", 520, 30)))
    verdict = analyse(base, little, DEFAULTS, app="shop", colour="green", live_colour="blue")
    assert verdict.outcome is Outcome.PASS, verdict.reason
    assert (
        "mean response 70 ms (max_response_ratio not judged: the live colour served 20 "
        "requests in the same window)"
    ) in verdict.reason


def _haproxy_rtime(latencies: list[int]) -> tuple[int, int]:
    """(req_tot, rtime) after ``latencies``, as HAProxy 2.6 keeps them: swrate_add_dynamic with
    a window of 0 up to 1024 requests, then 1024; swrate_avg rounds up."""
    total = 0
    for n, ms in enumerate(latencies, start=1):
        window = RTIME_SAMPLES if n > RTIME_SAMPLES else 0
        total = total - ((total + window - 1) // window if window else 0) + ms
    weight = min(len(latencies), RTIME_SAMPLES)
    return len(latencies), (total + weight - 1) // weight if weight else 0


@pytest.mark.parametrize(("before", "after"), [(0, 80), (300, 200), (900, 400), (5000, 300)])
def test_the_windows_mean_out_of_haproxys_sliding_averages(before, after):
    old, new = [90] * before, [30 + (i % 7) for i in range(after)]  # the window's: 33 ms
    n0, r0 = _haproxy_rtime(old)
    n1, r1 = _haproxy_rtime(old + new)
    bound = (min(n1, RTIME_SAMPLES) + min(n0, RTIME_SAMPLES)) / (2 * after) + 1
    estimate = window_ms(n0, r0 if n0 else None, n1, r1)
    assert estimate == pytest.approx(sum(new) / after, abs=bound)
    assert abs(r1 - sum(new) / after) > bound or before == 0  # what rtime alone would say


# ------------------------------------------------------------------ verdicts
def test_zero_requests_are_too_little_traffic():
    outcome, reason = judge(Figures(), Figures(5000, response_ms=10), DEFAULTS)
    assert outcome is Outcome.TOO_LITTLE
    assert reason == "analysis: 0 requests since ready, 50 needed: not judged"


def test_too_few_requests_are_said_not_judged_even_when_they_all_failed():
    outcome, reason = judge(Figures(12, http_5xx=12), None, DEFAULTS, since="since promotion")
    assert outcome is Outcome.TOO_LITTLE
    assert reason == "analysis: 12 requests since promotion, 50 needed: not judged"


def test_an_error_ratio_over_the_threshold_fails_with_the_figures():
    figures = Figures(412, http_5xx=38, connection_errors=2, response_ms=10)
    outcome, reason = judge(figures, None, DEFAULTS)
    assert outcome is Outcome.FAIL
    assert reason == (
        "analysis: 9.7% of 412 requests failed (5xx 38, connection 2), at least 7.6% at 95% "
        "confidence, over max_error_ratio 2%"
    )


@pytest.mark.parametrize(
    ("errors", "requests", "least"),
    [(1, 22, 0.0102), (2, 22, 0.0306), (5, 50, 0.0495), (1, 50, 0.0045), (48, 1000, 0.0380)],
)
def test_the_error_ratios_lower_bound_at_95_percent(errors, requests, least):
    assert error_ratio_at_least(errors, requests) == pytest.approx(least, abs=0.0001)
    assert error_ratio_at_least(errors, requests) < errors / requests


def test_a_stray_failed_request_among_a_few_dozen_is_not_a_failure():
    # A healthy candidate's one response error in 22 requests (4.5%: seen in the sandbox, a
    # connection closed under load) is no evidence over 2%; two in 22 are.
    one = judge(
        Figures(22, response_errors=1, response_ms=10), None, DEFAULTS._replace(min_requests=20)
    )
    assert one[0] is Outcome.PASS, one[1]
    assert one[1].startswith("analysis: 4.5% of 22 requests failed")
    two = judge(Figures(22, http_5xx=2, response_ms=10), None, DEFAULTS._replace(min_requests=20))
    assert two[0] is Outcome.FAIL
    assert "9.1% of 22 requests failed (5xx 2), at least 3.1% at 95% confidence" in two[1]
    assert error_ratio_at_least(0, 22) == 0.0 and error_ratio_at_least(3, 0) == 0.0


def test_an_error_ratio_at_the_threshold_passes_and_4xx_are_not_errors():
    outcome, reason = judge(Figures(100, http_5xx=2, http_4xx=50, response_ms=10), None, DEFAULTS)
    assert outcome is Outcome.PASS
    assert reason == (
        "analysis: 2.0% of 100 requests failed, mean response 10 ms since ready: within thresholds"
    )


def test_a_mean_response_over_the_ceiling_fails():
    ceiling = DEFAULTS._replace(max_response_ms=100)
    outcome, reason = judge(Figures(200, response_ms=140.0), None, ceiling)
    assert outcome is Outcome.FAIL
    assert reason == "analysis: mean response 140 ms over max_response_ms 100 (200 requests)"
    assert judge(Figures(200, response_ms=100.0), None, ceiling)[0] is Outcome.PASS


def test_a_candidate_three_times_slower_than_the_live_colour_fails():
    outcome, reason = judge(
        Figures(300, response_ms=33.0), Figures(900, response_ms=11.0), DEFAULTS
    )
    assert outcome is Outcome.FAIL
    assert reason == (
        "analysis: mean response 33 ms is 3.0 times the live colour's 11 ms, "
        "over max_response_ratio 2 (300 requests)"
    )
    as_fast = judge(Figures(300, response_ms=12.0), Figures(900, response_ms=11.0), DEFAULTS)
    assert as_fast[0] is Outcome.PASS and "1.1 times the live colour's 11 ms" in as_fast[1]


def test_the_ratio_is_judged_only_when_the_live_colour_has_enough_requests_or_when_on():
    slow = Figures(300, response_ms=90.0)
    assert judge(slow, Figures(49, response_ms=10.0), DEFAULTS)[0] is Outcome.PASS
    assert judge(slow, None, DEFAULTS)[0] is Outcome.PASS
    off = DEFAULTS._replace(max_response_ratio=None)
    assert judge(slow, Figures(900, response_ms=10.0), off)[0] is Outcome.PASS


def test_a_mean_under_a_millisecond_counts_as_one():
    # HAProxy counts whole milliseconds: 0 ms beside 1 ms is not "infinitely slower".
    outcome, _ = judge(Figures(300, response_ms=1.0), Figures(900, response_ms=0.0), DEFAULTS)
    assert outcome is Outcome.PASS


def test_every_threshold_crossed_is_named():
    both = DEFAULTS._replace(max_response_ms=50)
    outcome, reason = judge(Figures(100, response_errors=5, response_ms=80.0), None, both)
    assert outcome is Outcome.FAIL
    assert "5.0% of 100 requests failed (response 5)" in reason
    assert "; mean response 80 ms over max_response_ms 50" in reason


# ------------------------------------------------------------------ from the port's answer
def test_analyse_judges_the_window_against_the_live_colour():
    base = baseline(sample(i1=(100, green(10, 10))), "shop", "green")
    now = sample(i1=(100, green(110, 110, http_5xx=30, response_ms=30)))
    verdict = analyse(base, now, DEFAULTS, app="shop", colour="green", live_colour="blue")
    assert verdict.outcome is Outcome.FAIL
    assert "15.0% of 200 requests failed (5xx 30), at least 11.3%" in verdict.reason
    # node-1's and node-2's averages went from 10 ms over 10 requests to 30 ms over 110: the
    # window's 100 took (3300 - 100) / 100 = 32 ms; blue took none in it: no ratio
    assert "32 ms is" not in verdict.reason and "max_response_ratio" not in verdict.reason
    assert verdict.figures is not None and verdict.figures.requests == 200
    assert verdict.to_dict() == {
        "outcome": "fail",
        "reason": verdict.reason,
        "requests": 200,
        "errors": 30,
        "response_ms": 32,
    }


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (None, "no answer"),
        ({"status": "busy", "error": "held"}, "busy: held"),
        (
            {"status": "counters", "instances": {}, "errors": {"i1": "x", "i2": "y"}},
            "no instance answered (i1: x; i2: y)",
        ),
    ],
)
def test_a_read_that_failed_is_unread_not_judged(answer, why):
    verdict = analyse({}, answer, DEFAULTS, app="shop", colour="green", live_colour="blue")
    assert verdict.outcome is Outcome.UNREAD
    assert verdict.reason == f"analysis: counters not read ({why}): not judged"


def test_thresholds_come_from_the_apps_file_and_none_when_disabled():
    text = """
version: 1
apps:
  shop:
    source: {provider: codecommit, repository: shop-web}
    image: {repository: registry.example.com/shop}
    hosts: {live: [shop.example.com], preview: preview.shop.example.com}
    analysis: {min_requests: 20, max_response_ms: 300}
"""
    app = parse_apps(text).app("shop")
    assert Thresholds.of(app.analysis) == Thresholds(20, 0.02, 300, 2.0)
    off = app.analysis.model_copy(update={"enabled": False})
    assert Thresholds.of(off) is None


def test_the_watch_judges_errors_and_the_ceiling_but_no_ratio():
    """In the watch window the previous colour is only a backup and serves nothing: the ratio
    has no side-by-side figure (its figures from before the promotion, or since its worker
    started, are other windows under other loads), so it is not judged; the errors and
    ``max_response_ms`` are."""
    promoted = sample(i1=(7, server("shop-green", 300, 45) + server("shop-blue", 900, 15)))
    base = baseline(promoted, "shop", "green")
    # Green takes the live traffic (600 requests, in 60 ms), four times blue's 15 ms.
    now = sample(i1=(7, server("shop-green", 900, 55) + server("shop-blue", 900, 15)))
    verdict = analyse(
        base, now, DEFAULTS, app="shop", colour="green", live_colour=None, since="since promotion"
    )
    assert verdict.outcome is Outcome.PASS, verdict.reason
    assert verdict.reason == (
        "analysis: 0.0% of 600 requests failed, mean response 60 ms since promotion: "
        "within thresholds"
    )
    ceiling = DEFAULTS._replace(max_response_ms=50)
    verdict = analyse(base, now, ceiling, app="shop", colour="green", live_colour=None)
    assert verdict.outcome is Outcome.FAIL
    assert "mean response 60 ms over max_response_ms 50" in verdict.reason
    broken = row("shop-green", "node-1", 900, response_ms=55, http_5xx=30)
    failing = sample(i1=(7, [broken, total("shop-green", [broken]), *server("shop-blue", 900, 15)]))
    verdict = analyse(base, failing, DEFAULTS, app="shop", colour="green", live_colour=None)
    assert verdict.outcome is Outcome.FAIL and "over max_error_ratio 2%" in verdict.reason


@pytest.mark.parametrize("since", ["since ready", "since promotion"])
def test_with_no_baseline_the_first_read_becomes_it_and_is_not_judged(since):
    """The read when the candidate was first seen ready (or at promotion) failed: the worker's
    counters since it started hold a previous green's failures (300 of 1000). The first read
    that succeeds becomes the baseline, not judged; the next is judged from it alone."""
    first = sample(i1=(100, green(500, 500, http_5xx=300)), i2=(200, green(40, 40)))
    verdict = analyse(
        None, first, DEFAULTS, app="shop", colour="green", live_colour="blue", since=since
    )
    assert verdict.outcome is Outcome.TOO_LITTLE
    assert verdict.reason == (
        f"analysis: no baseline {since} (the counters were not read then): this read becomes "
        "it, nothing to compare yet: not judged"
    )
    assert verdict.baseline == baseline(first, "shop", "green")
    assert verdict.figures is None and verdict.to_dict()["requests"] == 0
    later = sample(i1=(100, green(560, 560, http_5xx=300)), i2=(200, green(80, 80)))
    judged = analyse(
        verdict.baseline, later, DEFAULTS, app="shop", colour="green", live_colour="blue"
    )
    assert judged.outcome is Outcome.PASS, judged.reason  # 200 clean requests in the window
    assert judged.figures is not None and judged.figures.requests == 200
    assert judged.baseline is None  # a baseline was there: nothing new to store


def test_an_instance_the_baseline_lacks_counts_nothing_then_counts_from_its_joining():
    """i2 did not answer when the baseline was taken; its worker holds a previous green's
    failures (300 of 1000). Not counted against this candidate: its rows join the baseline
    (merged, i1's kept), and the next read counts i2 from there."""
    base = baseline(sample(i1=(100, green(10, 10))), "shop", "green")
    first = sample(i1=(100, green(40, 40)), i2=(200, green(500, 500, http_5xx=300)))
    verdict = analyse(base, first, DEFAULTS, app="shop", colour="green", live_colour="blue")
    assert verdict.outcome is Outcome.PASS, verdict.reason  # i1's 60 clean requests
    assert verdict.figures is not None and verdict.figures.requests == 60
    assert "i2: not in the baseline, not counted (this read joins it)" in verdict.notes
    assert verdict.baseline == {
        "i1": base["i1"],  # unchanged: i1 keeps counting from the first baseline
        "i2": baseline(first, "shop", "green")["i2"],
    }
    later = sample(i1=(100, green(40, 40)), i2=(200, green(530, 530, http_5xx=300)))
    judged = analyse(
        verdict.baseline, later, DEFAULTS, app="shop", colour="green", live_colour="blue"
    )
    assert judged.figures is not None and judged.figures.requests == 60 + 60
    assert judged.figures.http_5xx == 0 and judged.outcome is Outcome.PASS
    assert judged.baseline is None  # nothing new to merge


def test_a_read_that_failed_with_no_baseline_is_unread_and_becomes_nothing():
    verdict = analyse(
        None, {"status": "busy"}, DEFAULTS, app="shop", colour="green", live_colour="blue"
    )
    assert verdict.outcome is Outcome.UNREAD and verdict.baseline is None
