"""The analysis baseline when the counters read that should take it fails (gate/execute.py): the
first read that succeeds becomes it, stored on the rollout, and is not judged; a previous green's
errors in the same HAProxy worker never count against the candidate. The counters port is
replaced at the true edge (the haproxy function's ``counters`` action) by HAProxy-shaped
samples; everything else is the real rollout and haproxy handlers with moto."""

from __future__ import annotations

from typing import Any

from greenlight.gate.analysis import baseline
from greenlight.gate.entry import run_check
from greenlight.gate.execute import Check
from tests.integration.test_gate import (  # noqa: F401 - fixtures
    drive,
    edge_endpoint,
    gate,
    live_blue,
    rollout,
    start_shop,
    store,
)

WORKER = 4242


def _row(backend: str, server: str, requests: int, http_5xx: int = 0) -> dict[str, Any]:
    return {
        "backend": backend,
        "server": server,
        "backup": 0,
        "status": "UP",
        "requests": requests,
        "http_5xx": http_5xx,
        "http_4xx": 0,
        "connection_errors": 0,
        "response_errors": 0,
        "retries": 0,
        "redispatches": 0,
        "response_ms": 10,
        "total_ms": 12,
    }


class Counters:
    """HAProxy's counters on one instance whose worker served a previous green that failed
    300 of its 1000 requests; each read finds 100 more clean green requests (and 100 blue).
    The next ``fail`` reads answer ``failed`` (the haproxy function could not be reached)."""

    def __init__(self) -> None:
        self.fail = 0
        self.failed = 0
        self.reads: list[dict[str, Any]] = []

    def __call__(self, app: str, colours: Any, *, deadline: Any) -> dict[str, Any]:
        if self.fail:
            self.fail -= 1
            self.failed += 1
            return {"status": "failed", "error": "the haproxy function timed out"}
        n = 1000 + 100 * len(self.reads)
        rows = []
        for colour, errors in (("green", 300), ("blue", 0)):
            for backend in (f"shop-{colour}", f"shop-live-{colour}"):
                served = n if backend == f"shop-{colour}" else 0
                rows += [
                    _row(backend, "node-1", served, errors if served else 0),
                    _row(backend, "BACKEND", served, errors if served else 0),
                ]
        sample = {
            "status": "counters",
            "instances": {"i-1": {"worker": WORKER, "uptime_seconds": 600, "rows": rows}},
            "errors": {},
        }
        self.reads.append(sample)
        return sample


def test_failed_baseline_reads_make_the_first_good_read_the_baseline(
    gate,  # noqa: F811
    rollout,  # noqa: F811
    kube,
    aws_env,
    edge_endpoint,  # noqa: F811
):
    live_blue(kube)
    counters = Counters()
    counters.fail = 1  # the read when the candidate is first seen ready
    gate.deps.edge_counters = counters
    real_push = gate.deps.edge_push

    def promote_read_fails(reason: str, **kwargs: Any) -> dict[str, Any]:
        if reason.startswith("promote"):
            counters.fail = 1  # the promotion's baseline read, right after this push
        return real_push(reason, **kwargs)

    gate.deps.edge_push = promote_read_fails
    rid = start_shop(rollout, edge_endpoint)
    results = drive(gate, rid, until=lambda r: r.status in ("promoted", "rolled_back"))
    assert results[-1].status == "promoted", results[-1].detail
    assert counters.failed == 2  # at ready and at promotion
    record = store(aws_env).rollout("shop", rid)
    # Not rolled back for the previous green's 30 %: judged from the first good read only.
    assert record.gating_analysis["outcome"] == "pass", record.gating_analysis
    assert record.gating_analysis["errors"] == 0
    assert record.gating_analysis["requests"] == 100 * (len(counters.reads) - 1)
    # The promotion's read failed: no baseline, not the gating one (the watch would count the
    # gating window's traffic as its own).
    assert record.analysis_baseline is None

    watched = run_check(results[-1].next_check or Check("shop", rid), gate, None)
    assert watched.status == "watching", watched.detail
    assert (
        "analysis: no baseline since promotion (the counters were not read then): this read "
        "becomes it, nothing to compare yet: not judged"
    ) in watched.detail
    record = store(aws_env).rollout("shop", rid)
    assert record.analysis_baseline == baseline(counters.reads[-1], "shop", "green")
    again = run_check(watched.next_check or Check("shop", rid), gate, None)
    assert "analysis: 0.0% of 100 requests failed" in again.detail, again.detail
