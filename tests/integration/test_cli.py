"""The `greenlight` CLI as a user runs it: the sandbox daemon, invokes and the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "greenlight_sandbox.cli"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GREENLIGHT_"))}
    return subprocess.run(
        [*CLI, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def sandbox():
    assert run("sandbox", "down").returncode == 0  # start from nothing, even after a crash
    up = run("sandbox", "up")
    assert up.returncode == 0, up.stderr
    yield up
    assert run("sandbox", "down").stdout.strip() == "sandbox down"


def test_sandbox_invoke_and_status(sandbox):
    assert "sandbox up" in sandbox.stdout
    again = run("sandbox", "up")  # safe to repeat: the running sandbox is reused
    assert again.returncode == 0 and again.stdout == sandbox.stdout

    dry = run("invoke", "rollout", "events/manual-rollout.json", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    result = json.loads(dry.stdout)
    assert result["status"] == "dry-run" and result["app"] == "shop"

    invoked = run("invoke", "rollout", "events/codecommit-push.json")
    assert invoked.returncode == 0, invoked.stderr[-3000:]
    started = json.loads(invoked.stdout)
    assert started["status"] == "started"
    assert [c["action"] for c in started["changes"]] == ["created", "created"]

    hook = run("invoke", "github-webhook", "events/github-push.json")
    assert hook.returncode == 0, hook.stderr
    output = json.loads(hook.stdout)
    assert output["result"]["statusCode"] == 202
    assert output["delivered"] == [{"batchItemFailures": []}]

    unsigned = json.loads(
        run("invoke", "github-webhook", "events/github-push.json", "--no-sign").stdout
    )
    assert unsigned["result"]["statusCode"] == 401  # the sandbox has its own secret

    status = run("sandbox", "status")
    assert status.returncode == 0 and "kube_token" not in status.stdout


def test_invoke_without_a_sandbox_says_what_to_do():
    run("sandbox", "down")
    result = run("invoke", "rollout", "events/manual-rollout.json")
    assert result.returncode == 2
    assert "greenlight sandbox up" in result.stderr
    missing = run("invoke", "rollout", "events/nope.json")
    assert missing.returncode == 2 and "cannot read events/nope.json" in missing.stderr


def test_demo_runs_the_main_job_end_to_end():
    demo = run("demo", timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    last = demo.stdout.strip().splitlines()[-1]
    pairs = dict(item.split("=", 1) for item in last.split())
    assert pairs == {
        "scenario": "rollout",
        "rollouts_started": "2",
        "green_ready": "2",
        "duplicates_ignored": "1",
        "stale_ignored": "1",
        "unexpected": "0",
    }


def test_kube_standin_runs_alone_and_serves_the_client():
    import signal
    import time

    from kubernetes import client as k8s

    proc = subprocess.Popen(
        [*CLI, "kube-standin", "--nodes", "2", "--namespace", "shop"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split(" ")[0]
        configuration = k8s.Configuration()
        configuration.host = url
        with k8s.ApiClient(configuration) as api:
            nodes = k8s.CoreV1Api(api).list_node().items
            assert [n.metadata.name for n in nodes] == ["worker-1", "worker-2"]
            assert k8s.CoreV1Api(api).read_namespace("shop").status.phase == "Active"
    finally:
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    assert proc.returncode == 0
