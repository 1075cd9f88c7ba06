"""End to end in the full sandbox: the gate's analysis from HAProxy's own counters
(greenlight_sandbox.scenarios ``analysis-*``), under steady HTTPS load through two real HAProxy
instances and load on the preview host, with not one failed request for what blue serves.

A sandbox of its own (test_e2e.py's fixture, built again for this module): the analysis
scenarios start from a live app that no other scenario has touched, and the two modules run in
parallel under pytest-xdist.
"""

from __future__ import annotations

from greenlight_sandbox import scenarios
from tests.integration.test_e2e import never_served, pytestmark, run, stage

__all__ = ["pytestmark", "stage"]  # the module's sandbox and skip mark, as in test_e2e.py


def test_a_candidate_failing_real_requests_is_rolled_back_on_the_edges_counters(
    stage: scenarios.Stage,
) -> None:
    # Healthy on /healthz, 10% of its real requests answered 500: judged from HAProxy's own
    # counters under load on the preview host; a healthy one under the same load goes live.
    result = run(stage, "analysis-errors")
    assert result.rolled_back == 1 and result.promoted == 1
    assert never_served(stage, "analysis-errors")  # not one live-host request reached it


def test_a_candidate_three_times_slower_is_rolled_back_on_the_edges_counters(
    stage: scenarios.Stage,
) -> None:
    # Every pod 50 ms late (what is live too). A healthy candidate under the preview load goes
    # live; one three times slower than it (as HAProxy measured it at its gate, under the same
    # load) is rolled back before promotion, judged against what is live over the same window.
    result = run(stage, "analysis-slow")
    assert result.rolled_back == 1 and result.promoted == 1
    assert never_served(stage, "analysis-slow")


def test_a_candidate_failing_after_promotion_is_reverted_by_the_watch_windows_analysis(
    stage: scenarios.Stage,
) -> None:
    # Healthy at the gate (its analysis passed), then 10% of its real requests fail: reverted
    # from the live host's counters. The live host's only failed requests are the candidate's
    # own 500s (run() counts every other failure: blue's, HAProxy's, connection-level).
    result = run(stage, "analysis-watch")
    assert result.rolled_back == 1 and result.promoted == 1
    assert result.figures["candidate_500s_on_the_live_host"] > 0
