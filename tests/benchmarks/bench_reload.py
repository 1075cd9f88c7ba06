"""Reloads under load (``make bench``): the fleet's apply document against a plain ``-sf`` reload.

In one run, on loopback, through a real HAProxy with TLS, with wrk driving two kinds of load at
once (keep-alive connections, and a new connection for every request):

1. **Greenlight**: the SSM apply document's own script (``template.yaml``), run locally with the
   AWS CLI on moto, applies RELOADS configs alternating the live colour (blue serves v1, green
   v2): master-worker, seamless reload, ``idle-close-on-response``.
2. **Control**: the same config without master-worker and ``idle-close-on-response``, reloaded
   RELOADS times the classic way (``haproxy -D -sf <old pid>``).

Prints requests, failed requests (wrk socket errors + non-2xx) for each, and the apply time.
Goal: 0 failed requests for Greenlight, both kinds of load.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greenlight_sandbox.fleet import LocalInstance, MotoBucket, free_port, local_snapshot

RELOADS = int(os.environ.get("GREENLIGHT_BENCH_RELOADS", "20"))
HOST = "shop.sandbox.test"


def backend(port: int, version: str, workdir: Path) -> subprocess.Popen[bytes]:
    """A backend that answers its version (and its health) at HAProxy speed, so that the load
    is not capped by the backend and a reload meets many requests in flight."""
    config = workdir / f"backend-{version}.cfg"
    config.write_text(
        "global\n    maxconn 2000\n"
        "defaults\n    mode http\n    timeout client 30s\n    timeout server 30s\n"
        "    timeout connect 5s\n"
        f"frontend app\n    bind 127.0.0.2:{port}\n"
        f'    http-request return status 200 content-type text/plain string "{version}" '
        f"hdr X-Version {version}\n"
    )
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (
            subprocess.run(
                ["curl", "-fs", "-o", "/dev/null", f"http://127.0.0.2:{port}/healthz"], check=False
            ).returncode
            == 0
        ):
            return proc
        time.sleep(0.1)
    raise RuntimeError(f"backend {version} did not start")


class Wrk:
    """Two wrk processes (keep-alive; Connection: close), stopped with SIGINT."""

    def __init__(self, port: int) -> None:
        url = f"https://127.0.0.1:{port}/"
        common = ["wrk", "-t1", "-d", "600s", "-H", f"Host: {HOST}", "--timeout", "5s"]
        self.procs = {
            "keep-alive": subprocess.Popen(
                [*common, "-c", "32", url], stdout=subprocess.PIPE, text=True
            ),
            "new connections": subprocess.Popen(
                [*common, "-c", "8", "-H", "Connection: close", url],
                stdout=subprocess.PIPE,
                text=True,
            ),
        }

    def stop(self) -> dict[str, tuple[int, int, str]]:
        out = {}
        for name, proc in self.procs.items():
            proc.send_signal(signal.SIGINT)
            text, _ = proc.communicate(timeout=30)
            out[name] = parse(text)
        return out


def parse(text: str) -> tuple[int, int, str]:
    """(requests, failed, detail) from wrk's report."""
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    failed, detail = 0, []
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        counts = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
        failed += sum(counts.values())
        detail += [f"{k} {v}" for k, v in counts.items() if v]
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        failed += int(m.group(1))
        detail.append(f"non-2xx {m.group(1)}")
    return requests, failed, ", ".join(detail)


def control_config(config: str) -> str:
    """The classic setup: no master-worker, no idle-close-on-response."""
    drop = ("master-worker", "mworker-max-reloads", "option idle-close-on-response")
    return "".join(
        line for line in config.splitlines(keepends=True) if not line.strip().startswith(drop)
    )


def run_greenlight(tmp: Path, moto: MotoBucket, ports: dict[str, int], nodeports: dict[str, int]):
    instance = LocalInstance(tmp / "greenlight").prepare()
    certs = {"default.pem": moto.put_certificate("default.pem", [HOST], tmp)}

    def publish(live: str):
        snapshot = local_snapshot(
            nodes=[("node-1", "127.0.0.2")], node_ports=nodeports, live=live, **ports
        )
        return moto.publish(snapshot, certs)

    versions = {live: publish(live) for live in ("green", "blue")}  # blue is the latest
    first = instance.apply(moto.env, Bucket=moto.bucket, SigningKeyArn=moto.signing_key)
    assert first.ok, first.output
    time.sleep(2)  # health checks up
    wrk = Wrk(ports["https_port"])
    time.sleep(1)
    seconds, failures = [], []
    for i in range(RELOADS):
        target = versions["green" if i % 2 == 0 else "blue"]
        result = instance.apply(
            moto.env,
            Bucket=moto.bucket,
            VersionId=target.version_id,
            Sha256=target.sha256,
            SigningKeyArn=moto.signing_key,
        )
        if not result.ok:
            failures.append(result.status.get("reason", result.output[-200:]))
        seconds.append(result.seconds)
        time.sleep(0.5)
    time.sleep(1)
    figures = wrk.stop()
    config = (instance.root / "current" / "haproxy.cfg").read_text()
    instance.stop()
    return figures, seconds, failures, config, instance


def under_load(start: Callable[[], Any], count: int, flip: Callable[[int], None], *, pause: float):
    """Start a load, flip ``count`` times ``pause`` seconds apart, and stop it: its figures."""
    load = start()
    time.sleep(1)
    for n in range(count):
        flip(n)
        time.sleep(pause)
    time.sleep(1)
    return load.stop()


class PlainHaproxy:
    """HAProxy the classic way: a daemon reloaded with ``haproxy -D -sf <old pids>``."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.env = env
        self.pid_file = work / "haproxy.pid"
        self.cmd = ["haproxy", "-D", "-f", str(work / "haproxy.cfg"), "-C", str(work)]
        self.cmd += ["-p", str(self.pid_file)]

    def start(self) -> PlainHaproxy:
        subprocess.run(self.cmd, check=True, env=self.env)
        return self

    def reload(self) -> None:
        old = self.pid_file.read_text().split()
        subprocess.run([*self.cmd, "-sf", *old], check=True, env=self.env)

    def stop(self) -> None:
        for pid in self.pid_file.read_text().split():
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def run_control(tmp: Path, config: str, instance: LocalInstance):
    """Plain -sf reloads of the same listeners, certificates and backends."""
    work = tmp / "control"
    work.mkdir()
    release = instance.root / "current"
    for name in ("hosts.map", "crt-list"):
        shutil.copy(release / name, work / name)
    (work / "haproxy.cfg").write_text(control_config(config))
    env = os.environ | {
        "GREENLIGHT_RUN_DIR": str(work),
        "GREENLIGHT_STATE_DIR": str(instance.base / "state"),
        "GREENLIGHT_CERTS_DIR": str(instance.base / "certs"),
        "GREENLIGHT_BIND_ADDRESS": "127.0.0.1",
    }
    plain = PlainHaproxy(work, env).start()
    time.sleep(2)
    port = int(re.search(r':(\d+)" ssl', config).group(1))  # type: ignore[union-attr]
    figures = under_load(lambda: Wrk(port), RELOADS, lambda _: plain.reload(), pause=1.0)
    plain.stop()
    return figures


def main() -> int:
    for tool in ("haproxy", "wrk", "socat", "curl"):
        if not shutil.which(tool):
            print(f"bench_reload: {tool} is needed (scripts/ensure-haproxy)")
            return 1
    moto = MotoBucket().start()
    nodeports = {"blue": free_port("127.0.0.2", 30000, 32767)}
    nodeports["green"] = free_port("127.0.0.2", 30000, 32767)
    ports = {"https_port": free_port(), "http_port": free_port(), "stats_port": free_port()}
    backends: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            backends = [
                backend(nodeports["blue"], "v1", tmp),
                backend(nodeports["green"], "v2", tmp),
            ]
            ours, seconds, failures, config, instance = run_greenlight(tmp, moto, ports, nodeports)
            control = run_control(tmp, config, instance)
    finally:
        for proc in backends:
            proc.terminate()
        moto.stop()
    print(f"{RELOADS} reloads under wrk through HAProxy {haproxy_version()} with TLS, one run:")
    print(f"{'method':34} {'load':16} {'requests':>9} {'failed':>7}  detail")
    for label, figures in (
        ("apply document (master-worker)", ours),
        ("control: plain -sf reload", control),
    ):
        for load, (requests, failed, detail) in figures.items():
            print(f"{label:34} {load:16} {requests:9d} {failed:7d}  {detail}")
    print(
        f"apply document: median {statistics.median(seconds):.2f} s per apply "
        f"(fetch, hash, haproxy -c, swap, reload, confirm); {len(failures)} applies failed"
        + (f": {failures[:3]}" if failures else "")
    )
    print("goal: 0 failed requests through the apply document, both kinds of load")
    return 0


def haproxy_version() -> str:
    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=False).stdout
    return out.split()[2] if out else "?"


if __name__ == "__main__":
    sys.exit(main())
