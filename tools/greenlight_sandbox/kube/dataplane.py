"""The stand-in's data plane: pods as local processes, nodes forwarding their NodePorts.

With the data plane on, the stand-in behaves like a small real cluster on loopback:

- each Running pod whose behaviour serves (``ready``, or ``never-ready``, whose health answers
  503) is a local process (``python -m greenlight_sandbox.webapp``) on its pod IP (in a /24
  of 127.2.0.0 to 127.61.255.255: ``pod_network``) and container port, answering its version
  (the image tag) on ``/`` and its health on the readiness probe's path; a ``ready`` pod is
  reported Ready only once its process answers its health path;
- each node (its InternalIP, 127.0.1.x in the sandbox) listens on every Service's NodePort and
  forwards each TCP connection to one Ready, not terminating endpoint of the Service
  (round-robin), as kube-proxy does; a terminating pod gets no new connections, and its process
  stops when the pod object is gone;
- a pod whose process exits is left to the simulation (its status is the behaviour's);
- a node whose object is gone stops listening (its machine is gone);
- faults: with ``fault_dir`` set, each pod's process reads ``<fault_dir>/<version>`` for a status
  its health path answers instead (``inject_fault``); readiness is established once, as a
  kubelet's readiness probe would on a 200-399 answer. Its real requests fail (500) and are
  slowed as its behaviour says (``error_ratio``, ``delay_ms``), or as
  ``<fault_dir>/<version>.requests`` says while it exists (``inject_request_fault``).

``sync()`` runs after every controller tick; the proxies run on one asyncio loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cluster import Behaviour, Cluster, image_tag, pod_ready


def pod_network() -> str:
    """Where this data plane's pod IPs start: a random /24 of 127.2.0.0 to 127.61.255.255
    (a sandbox's pods fit in one or two), so that the data planes of two processes on one
    machine (a test run in several processes) do not hand out the same pod IP and port."""
    n = random.SystemRandom().randrange(60 * 256)
    return f"127.{2 + n // 256}.{n % 256}.1"


# A pod process still running this long after its SIGTERM is killed. The pod object itself
# goes at the end of its (scaled) grace period, or sooner if its containers exit (kubelet).
KILL_AFTER_SECONDS = 2.0


@dataclass
class _Process:
    proc: subprocess.Popen[bytes]
    address: str
    port: int
    health_path: str
    healthy: bool = False


@dataclass
class DataPlane:
    cluster: Cluster
    python: str = sys.executable
    processes: dict[str, _Process] = field(default_factory=dict)  # pod uid -> process
    endpoints: dict[int, list[tuple[str, int]]] = field(default_factory=dict)  # nodePort ->
    _servers: dict[tuple[str, int], asyncio.base_events.Server] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _rr: itertools.count[int] = field(default_factory=itertools.count)
    fault_dir: Path | None = None
    _stopping: list[tuple[subprocess.Popen[bytes], float]] = field(default_factory=list)

    def inject_fault(self, version: str, status: int | None) -> None:
        """Make the health path of every pod running ``version`` answer ``status`` (None: heal)."""
        if self.fault_dir is None:
            raise RuntimeError("the data plane has no fault_dir")
        path = self.fault_dir / version
        if status is None:
            path.unlink(missing_ok=True)
        else:
            self.fault_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{status}\n")

    def inject_request_fault(
        self, version: str, error_ratio: float | None, delay_ms: float = 0.0
    ) -> None:
        """Make every pod running ``version`` answer ``error_ratio`` of its real requests with
        HTTP 500, each ``delay_ms`` later (``error_ratio`` None: as its behaviour says again)."""
        if self.fault_dir is None:
            raise RuntimeError("the data plane has no fault_dir")
        path = self.fault_dir / f"{version}.requests"
        if error_ratio is None:
            path.unlink(missing_ok=True)
        else:
            self.fault_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"error_ratio": error_ratio, "delay_ms": delay_ms}))

    def start(self) -> DataPlane:
        self.cluster.pod_network = pod_network()
        self.cluster.ready_check = self._serving
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kube-standin-dataplane", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        for process in self.processes.values():
            process.proc.terminate()
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.proc.wait(timeout=5)
        self.processes.clear()
        if self._loop is not None:
            for server in self._servers.values():
                self._loop.call_soon_threadsafe(server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ------------------------------------------------------------------ pods
    def _serving(self, pod: dict[str, Any]) -> bool:
        process = self.processes.get(pod["metadata"]["uid"])
        return process is not None and process.healthy

    def sync(self) -> None:
        with self.cluster.lock:
            pods = [p for (_, _), p in self.cluster.objects.get("pods", {}).items()]
            services = list(self.cluster.objects.get("services", {}).values())
            nodes = list(self.cluster.objects.get("nodes", {}).values())
            behaviours = {uid: b for uid, b in self.cluster.pod_behaviours.items()}
            wanted: dict[str, tuple[dict[str, Any], str, Behaviour]] = {}
            for pod in pods:
                uid = pod["metadata"]["uid"]
                ip = pod.get("status", {}).get("podIP")
                kinds = [b.kind for b in behaviours.get(uid, [])]
                if (
                    ip
                    and not pod["spec"].get("hostNetwork")  # the node's agents serve nothing
                    and pod["status"].get("phase") == "Running"
                    and kinds[:1]
                    in (
                        ["ready"],
                        ["never-ready"],
                    )
                ):
                    wanted[uid] = (pod, ip, behaviours[uid][0])
            endpoints = _endpoints(pods, services)
            node_ports = sorted(
                {
                    port["nodePort"]
                    for svc in services
                    for port in svc["spec"].get("ports", [])
                    if port.get("nodePort")
                }
            )
            addresses = sorted(
                a["address"]
                for n in nodes
                for a in n.get("status", {}).get("addresses", [])
                if a.get("type") == "InternalIP"
            )
        for uid in list(self.processes):
            if uid not in wanted:
                proc = self.processes.pop(uid).proc
                proc.terminate()  # SIGTERM; SIGKILL if it has not exited a grace later
                self._stopping.append((proc, time.monotonic() + KILL_AFTER_SECONDS))
        for proc, kill_at in list(self._stopping):
            if proc.poll() is not None:
                self._stopping.remove((proc, kill_at))
            elif time.monotonic() >= kill_at:
                proc.kill()
        for uid, (pod, ip, behaviour) in wanted.items():
            if uid not in self.processes:
                self.processes[uid] = self._spawn(pod, ip, behaviour)
            process = self.processes[uid]
            if not process.healthy and behaviour.kind == "ready":
                process.healthy = _answers(process)
        self.endpoints = endpoints
        if self._loop is not None:
            # A node that is gone (its machine lost or terminated) answers nothing any more.
            for key in [k for k in self._servers if k[0] not in addresses]:
                self._loop.call_soon_threadsafe(self._servers.pop(key).close)
            for address in addresses:
                for node_port in node_ports:
                    if (address, node_port) not in self._servers:
                        future = asyncio.run_coroutine_threadsafe(
                            self._listen(address, node_port), self._loop
                        )
                        with contextlib.suppress(OSError):
                            self._servers[(address, node_port)] = future.result(timeout=5)

    def _spawn(self, pod: dict[str, Any], ip: str, behaviour: Behaviour) -> _Process:
        container = pod["spec"]["containers"][0]
        ports = container.get("ports") or [{"containerPort": 8080}]
        port = int(ports[0]["containerPort"])
        probe = (container.get("readinessProbe") or {}).get("httpGet") or {}
        health = str(probe.get("path", "/healthz"))
        image = image_tag(pod, container["image"])  # pinned by digest: the tag it was
        version = image.rsplit(":", 1)[-1] if ":" in image else "latest"
        args = [
            self.python,
            "-m",
            "greenlight_sandbox.webapp",
            "--address",
            ip,
            "--port",
            str(port),
            "--version",
            version,
            "--health-path",
            health,
        ]
        if behaviour.kind == "never-ready":
            args.append("--unhealthy")
        if behaviour.error_ratio:
            args += ["--error-ratio", str(behaviour.error_ratio)]
        if behaviour.delay_ms:
            args += ["--delay-ms", str(behaviour.delay_ms)]
        if self.fault_dir is not None:
            args += ["--fault-file", str(self.fault_dir / version)]
            args += ["--requests-file", str(self.fault_dir / f"{version}.requests")]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return _Process(proc, ip, port, health)

    # ------------------------------------------------------------------ node ports
    async def _listen(self, address: str, node_port: int) -> asyncio.base_events.Server:
        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            targets = self.endpoints.get(node_port) or []
            if not targets:
                writer.close()
                return
            host, port = targets[next(self._rr) % len(targets)]
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        return await asyncio.start_server(forward, address, node_port, reuse_address=True)


def _endpoints(
    pods: list[dict[str, Any]], services: list[dict[str, Any]]
) -> dict[int, list[tuple[str, int]]]:
    out: dict[int, list[tuple[str, int]]] = {}
    for svc in services:
        selector = svc["spec"].get("selector") or {}
        namespace = svc["metadata"]["namespace"]
        ready = [
            p
            for p in pods
            if p["metadata"]["namespace"] == namespace
            and selector
            and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
            and pod_ready(p)
            and "deletionTimestamp" not in p["metadata"]
            and p.get("status", {}).get("podIP")
        ]
        for port in svc["spec"].get("ports", []):
            if port.get("nodePort"):
                target = int(port.get("targetPort", port["port"]))
                out[int(port["nodePort"])] = sorted((p["status"]["podIP"], target) for p in ready)
    return out


def _answers(process: _Process) -> bool:
    conn = http.client.HTTPConnection(process.address, process.port, timeout=0.5)
    try:
        conn.request("GET", process.health_path)
        return 200 <= conn.getresponse().status < 400  # what a kubelet counts as a pass
    except OSError:
        return False
    finally:
        conn.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
