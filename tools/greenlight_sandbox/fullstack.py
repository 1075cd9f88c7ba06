"""The full local sandbox: the stand-in with its data plane, a fleet of real HAProxy instances,
and the functions driven by their queues, as in an AWS account.

On top of :class:`Sandbox` (moto server, stand-in, resources):

- pods are local processes and nodes forward their NodePorts (``KubeStandIn(data_plane=True)``);
  faults are injected into a version's health endpoint with :meth:`inject_fault`;
- ``fleet_size`` HAProxy instances (127.0.<subnet>.11, .12, ...) with TLS, registered in moto's EC2
  under the fleet tag, and reloaded only through the SSM apply document run locally
  (:class:`LocalSsm`);
- the haproxy and gate functions wired to them: the gate's health checks go through the first
  instance, and its promotion push is the haproxy function, in process;
- a pump thread plays the event source mappings and the schedule: it feeds the rollout queue to
  the rollout function, the gate queue (with each message's delay) to the gate function, and
  runs the gate's safety-net sweep every ``sweep_seconds``. Everything those functions do runs
  on that thread, one invocation at a time; :meth:`invoke` queues a direct invoke (a CodeCommit
  event, a manual gate action) there and waits for its answer;
- an outbox thread plays what runs beside them in AWS: the rollouts table's stream to the
  announce function (a batch it reports failed is handed again from the failed record, as
  Lambda does for a stream), and the notify queue (fed by moto's EventBridge rule) to the
  notify function;
- the notify function's receivers: a GitHub API stand-in (:attr:`github`, with a token in the
  GitHub secret), and CodeCommit's comment API and a Slack incoming webhook
  (:attr:`receivers`); SNS is moto's.

The sandbox's variables are set in this process's environment while it runs.
"""

from __future__ import annotations

import io
import json
import os
import queue
import random
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from . import resources
from .cloud import Cloud, moto_group_instances
from .context import LambdaContext
from .fleet import LocalInstance, LocalSsm
from .functions import FUNCTIONS, ROOT, load
from .github_api import GitHubStandIn
from .kube import KubeStandIn
from .kube.kinds import kind_named
from .receivers import Receivers
from .sandbox import Sandbox, environment, sqs_records
from .streams import StreamTail

FLEET_TAG = "greenlight:edge-fleet"
HTTPS_PORT = 18443  # config/sandbox-apps.yaml
GITHUB_SECRET = "greenlight/sandbox/github"  # noqa: S105 - a secret's name
SLACK_SECRET = "greenlight/sandbox/slack"  # noqa: S105 - a secret's name


class _InProcessLambda:
    """``invoke`` of the haproxy function, in this process (its timeout: 300 s)."""

    def __init__(self, handler: Callable[[Any, Any], dict[str, Any]]) -> None:
        self.handler = handler

    def invoke(self, **call: Any) -> dict[str, Any]:
        answer = self.handler(json.loads(call["Payload"]), LambdaContext(timeout_seconds=300))
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}


class LambdaKilled(BaseException):
    """The sandbox's stand-in for a Lambda runtime killed mid-invocation (timeout, OOM): not an
    Exception, so nothing in the handler catches it, and its SQS batch is left undeleted."""


def free_subnet(port: int = HTTPS_PORT) -> int:
    """A random loopback subnet 127.0.<n>.0/24 (20 <= n <= 250) whose first HAProxy address
    (.11) has ``port`` free: another sandbox on this machine has not taken it."""
    chooser = random.SystemRandom()
    candidates = chooser.sample(range(20, 251), 231)
    for n in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((f"127.0.{n}.11", port))
            except OSError:
                continue
        return n
    raise RuntimeError(f"no loopback subnet with port {port} free")


class FullSandbox(Sandbox):
    def __init__(
        self,
        *,
        nodes: int = 3,
        fleet_size: int = 2,
        workdir: Path | None = None,
        pump: bool = True,
        sweep_seconds: float = 3.0,
    ):
        # Its own loopback subnet for nodes (.1-.9) and HAProxy instances (.11-): sandboxes
        # running side by side (a test run beside `greenlight sandbox up`, or test processes
        # side by side) do not collide.
        super().__init__(nodes=nodes, subnet=free_subnet())
        self.kube = KubeStandIn(token=self.kube_token, data_plane=True)
        self.fleet_size = fleet_size
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="greenlight-fleet-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.instances: dict[str, LocalInstance] = {}
        self.edge: Any = None
        self.gate: Any = None
        self.night: Any = None
        self.cloud: Cloud | None = None
        self.functions: dict[str, Any] = {}
        self.pump = pump
        self.sweep_seconds = sweep_seconds
        self._tasks: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outbox_thread: threading.Thread | None = None
        self._kill_at_push = ""
        self._saved_env: dict[str, str | None] = {}
        self.pump_errors: list[str] = []
        self.github = GitHubStandIn(tokens={secrets.token_urlsafe(24)})
        self.receivers = Receivers()
        self.delivered: list[tuple[str, Any]] = []  # (function, answer) per queue batch
        self._driver_store: Any = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> FullSandbox:
        super().start()
        assert self.kube.data_plane is not None
        self.kube.data_plane.fault_dir = self.workdir / "faults"
        with environment(self.env):
            ec2 = boto3.client("ec2")
            image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
            reply = ec2.run_instances(
                ImageId=image,
                MinCount=self.fleet_size,
                MaxCount=self.fleet_size,
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": [{"Key": FLEET_TAG, "Value": "sandbox"}]}
                ],
            )
        ids = sorted(i["InstanceId"] for i in reply["Instances"])
        self.instances = {
            instance_id: LocalInstance(
                self.workdir / f"edge-{n}",
                name=f"edge-{n}",
                bind_address=f"127.0.{self.subnet}.{10 + n}",
            ).prepare()
            for n, instance_id in enumerate(ids, start=1)
        }
        first = next(iter(self.instances.values()))
        self.env.update(self._notify_receivers())
        self.env.update(
            {
                "GREENLIGHT_EDGE_DOCUMENT": "greenlight-apply",
                "GREENLIGHT_EDGE_STATS_DOCUMENT": "greenlight-stats",  # fleet.DOCUMENTS
                "GREENLIGHT_EDGE_FLEET_TAG": f"{FLEET_TAG}=sandbox",
                "GREENLIGHT_EDGE_ENDPOINT": f"{first.bind_address}:{HTTPS_PORT}",
                "GREENLIGHT_EDGE_FUNCTION": "greenlight-haproxy",
                "GREENLIGHT_EDGE_VERIFY_TLS": "false",
                "GREENLIGHT_GATE_DELAY_SECONDS": "0",
                # LocalSsm answers in-process: its outcomes are worth looking at every 20 ms
                # (AWS's SSM takes longer to deliver; the function's defaults are 100/500 ms).
                "GREENLIGHT_EDGE_FIRST_POLL_MILLISECONDS": "20",
                "GREENLIGHT_EDGE_POLL_MILLISECONDS": "20",
            }
        )
        self._saved_env = {key: os.environ.get(key) for key in self.env}
        os.environ.update(self.env)
        self._wire()
        # The shop's pods go one at a time when a node drains, as a team's PDB would say.
        with self.kube.cluster.lock:
            self.kube.cluster.create(
                kind_named("poddisruptionbudgets"),
                "shop",
                {
                    "metadata": {"name": "shop"},
                    "spec": {
                        "maxUnavailable": 1,
                        "selector": {"matchLabels": {"app.kubernetes.io/name": "shop"}},
                    },
                },
            )
        group = self.env["GREENLIGHT_NIGHT_GROUP"]
        self.cloud = Cloud(
            self.kube,
            boto3.client("autoscaling"),
            group,
            subnet=self.subnet,
            instances=moto_group_instances(group, resources.REGION, resources.ACCOUNT),
        ).start()
        if self.pump:
            self._thread = threading.Thread(target=self._pump, name="sandbox-pump", daemon=True)
            self._thread.start()
            self._outbox_thread = threading.Thread(
                target=self._outbox, name="sandbox-outbox", daemon=True
            )
            self._outbox_thread.start()
        return self

    def _notify_receivers(self) -> dict[str, str]:
        """Start the GitHub stand-in and the other receivers; the notify function's variables
        (its GitHub token and Slack webhook in moto's Secrets Manager)."""
        self.github.start()
        self.receivers.start()
        sm = self.session().client("secretsmanager", endpoint_url=self.moto_url)
        token = next(iter(self.github.tokens))
        for name, text in (
            (GITHUB_SECRET, json.dumps({"token": token})),
            (SLACK_SECRET, self.receivers.slack_url),
        ):
            sm.create_secret(Name=name, SecretString=text)
        return {
            "GREENLIGHT_GITHUB_SECRET": GITHUB_SECRET,
            "GREENLIGHT_GITHUB_API_URL": self.github.url,
            "GREENLIGHT_SLACK_SECRET": SLACK_SECRET,
            "AWS_ENDPOINT_URL_CODECOMMIT": self.receivers.codecommit_url,
        }

    def _wire(self) -> None:
        from greenlight.edge.entry import EdgeRuntime
        from greenlight.gate.entry import GateRuntime
        from greenlight.rollout.entry import RolloutRuntime
        from greenlight.settings import EdgeFunctionSettings, GateSettings, RolloutSettings

        self.functions = {name: load(name) for name in FUNCTIONS}
        haproxy = self.functions["haproxy"]
        self.edge = EdgeRuntime.build(EdgeFunctionSettings.from_env(self.function_env("haproxy")))
        self.edge.fleet_ssm = LocalSsm(self.instances, self.env)
        haproxy.runtime.supply(self.edge)

        from greenlight.deadline import Deadline
        from greenlight.edgepush import LambdaEdgePush

        # The rollout, gate and night functions invoke the haproxy function and wait for it
        # (RequestResponse, within their deadline: edgepush.py); pushes at once from several
        # functions queue on the edge lock in the table, as they do in AWS.
        invoke = LambdaEdgePush(lambda seconds: _InProcessLambda(haproxy.handler), "haproxy")

        def edge_push(
            reason: str,
            *,
            deadline: Deadline,
            prospect: dict[str, str] | None = None,
            promote: dict[str, str] | None = None,
            restore: dict[str, str] | None = None,
        ) -> dict[str, Any]:
            if self._kill_at_push and reason.startswith(self._kill_at_push):
                self._kill_at_push = ""
                raise LambdaKilled(f"killed before the edge push ({reason})")
            return invoke(
                reason, deadline=deadline, prospect=prospect, promote=promote, restore=restore
            )

        self.functions["rollout"].runtime.supply(
            RolloutRuntime.build(
                RolloutSettings.from_env(self.function_env("rollout")), edge_push=edge_push
            )
        )

        from greenlight.edgepush import LambdaEdgeCounters

        self.gate = GateRuntime.build(
            GateSettings.from_env(self.function_env("gate")),
            edge_push=edge_push,
            # The haproxy function's counters action, in process like its pushes.
            edge_counters=LambdaEdgeCounters(
                lambda seconds: _InProcessLambda(haproxy.handler), "haproxy"
            ),
        )
        self.functions["gate"].runtime.supply(self.gate)
        from greenlight.night.entry import NightRuntime
        from greenlight.settings import NightFunctionSettings

        self.night = NightRuntime.build(
            NightFunctionSettings.from_env(self.function_env("night")), edge_push=edge_push
        )
        self.functions["night"].runtime.supply(self.night)

    def stop_pump(self) -> None:
        """No more deliveries, sweeps or invokes (what runs now finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        if self._outbox_thread is not None:
            self._outbox_thread.join(timeout=60)
            self._outbox_thread = None

    def stop(self) -> None:
        self.stop_pump()
        if self.cloud is not None:
            self.cloud.stop()
        for instance in self.instances.values():
            instance.stop()
        self.github.stop()
        self.receivers.stop()
        super().stop()
        for key, old in self._saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        if self._tmp is not None:
            self._tmp.cleanup()

    # ------------------------------------------------------------------ driving
    def invoke(self, function: str, event: Any, *, timeout: float = 120) -> Any:
        """Invoke a function's handler on the pump thread (as Lambda would, one at a time with
        the queue deliveries) and return its answer."""
        handler = self.functions[function].handler

        def call() -> Any:
            return handler(event, LambdaContext(function_name=f"greenlight-{function}"))

        if not self.pump:
            return call()
        answer: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._tasks.put((call, answer))
        ok, value = answer.get(timeout=timeout)
        if not ok:
            raise value
        return value

    def kill_at_next_push(self, reason: str = "promote") -> None:
        """The gate function dies with its Lambda at its next edge push whose reason starts with
        ``reason`` ("promote": after the live colour is recorded, before the fleet has it)."""
        self._kill_at_push = reason

    def inject_fault(self, version: str, status: int | None) -> None:
        """Every pod of ``version`` (its image tag) answers its health path with ``status``
        (None: healthy again)."""
        assert self.kube.data_plane is not None
        self.kube.data_plane.inject_fault(version, status)

    def _store(self) -> Any:
        """The driver's view of the rollouts table (one client: making one per look costs
        more than the look)."""
        from greenlight.store.rollouts import RolloutStore

        if self._driver_store is None:
            self._driver_store = RolloutStore(
                boto3.client("dynamodb"), self.env["GREENLIGHT_TABLE"]
            )
        return self._driver_store

    def rollout(self, app: str, rollout_id: str) -> Any:
        return self._store().rollout(app, rollout_id)

    def moves(self, app: str, rollout_id: str) -> list[dict[str, Any]]:
        """The rollout's history as stored: every move (``at`` epoch ms, ``from``, ``phase``,
        ``by``, ``why``), oldest first."""
        from greenlight.store.marshal import plain, value

        store = self._store()
        key = {"pk": value(f"app#{app}"), "sk": value(f"rollout#{rollout_id}")}
        item = store.client.get_item(TableName=store.table, Key=key, ConsistentRead=True)
        return list(plain(item.get("Item") or {}).get("history") or [])

    def app_state(self, app: str) -> Any:
        return self._store().state(app)

    def wait_phase(
        self,
        app: str,
        rollout_id: str,
        phases: tuple[str, ...],
        *,
        timeout: float = 90,
        on_change: Callable[[Any], None] | None = None,
        on_tick: Callable[[Any], None] | None = None,
        read_every: float = 0.05,
    ) -> Any:
        """Wait until the rollout's phase is one of ``phases``; the rollout record.
        ``on_change`` sees each new phase, ``on_tick`` the last record read, about every 50 ms;
        the record is read again every ``read_every`` seconds (each read is a request to the
        table that the functions use too)."""
        deadline = time.monotonic() + timeout
        seen = None
        record = None
        read_at = float("-inf")
        while time.monotonic() < deadline:
            if time.monotonic() - read_at >= read_every:
                read_at = time.monotonic()
                record = self.rollout(app, rollout_id)
            if record is not None and record.phase.value != seen:
                seen = record.phase.value
                if on_change is not None:
                    on_change(record)
            if record is not None and on_tick is not None:
                on_tick(record)
            if record is not None and record.phase.value in phases:
                return record
            if self.pump_errors:
                raise RuntimeError(f"the sandbox's pump failed: {self.pump_errors[-1]}")
            time.sleep(0.05)
        raise TimeoutError(f"{app} {rollout_id}: still {seen} after {timeout:.0f} s")

    # ------------------------------------------------------------------ the pump
    def _pump(self) -> None:
        sweep_at = time.monotonic() + self.sweep_seconds
        sweep = json.loads((ROOT / "events" / "schedule-gate-sweep.json").read_text())
        while not self._stop.is_set():
            busy = False
            try:
                while not self._tasks.empty():
                    call, answer = self._tasks.get_nowait()
                    try:
                        answer.put((True, call()))
                    except (Exception, LambdaKilled) as exc:
                        answer.put((False, exc))
                    busy = True
                busy |= self._deliver("GREENLIGHT_ROLLOUT_QUEUE_URL", "rollout")
                busy |= self._deliver("GREENLIGHT_CODECOMMIT_QUEUE_URL", "rollout")
                busy |= self._deliver("GREENLIGHT_GATE_QUEUE_URL", "gate")
                if time.monotonic() >= sweep_at:
                    self.functions["gate"].handler(sweep, LambdaContext())
                    sweep_at = time.monotonic() + self.sweep_seconds
            except Exception as exc:  # kept for the driver to report
                self.pump_errors.append(f"{type(exc).__name__}: {exc}")
            if not busy:
                self._stop.wait(0.05)

    def _outbox(self) -> None:
        """The stream to the announce function and the notify queue to the notify function."""
        tail = StreamTail(self.session(), self.env["GREENLIGHT_TABLE"])
        sqs = self.session().client("sqs")
        pending: list[dict[str, Any]] = []  # stream records not yet taken, oldest first
        while not self._stop.is_set():
            busy = False
            try:
                pending += tail.read()
                if pending:
                    pending = self._announce(pending)
                    busy = not pending
                busy |= self._deliver("GREENLIGHT_NOTIFY_QUEUE_URL", "notify", sqs=sqs)
            except Exception as exc:  # kept for the driver to report
                self.pump_errors.append(f"outbox: {type(exc).__name__}: {exc}")
            if not busy:  # Lambda's stream poller reads a shard about four times a second
                self._stop.wait(0.25)

    def _announce(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Hand ``records`` to the announce function in batches of 100 (the template's batch
        size); what it did not take: from its first failed record on, as Lambda retries."""
        for start in range(0, len(records), 100):
            batch = records[start : start + 100]
            result = self.functions["announce"].handler(
                {"Records": batch}, LambdaContext(function_name="greenlight-announce")
            )
            self.delivered.append(("announce", result))
            failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
            for n, record in enumerate(batch):
                if record["dynamodb"]["SequenceNumber"] in failed:
                    return records[start + n :]
        return []

    def _deliver(self, queue_variable: str, function: str, *, sqs: Any = None) -> bool:
        """One batch from a queue to its function, as the event source mapping does: the
        messages the function did not report as failed are deleted; a killed invocation leaves
        the whole batch to come back after the visibility timeout."""
        sqs = sqs or self.gate.sqs
        url = self.env[queue_variable]
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return False
        region = self.env["AWS_DEFAULT_REGION"]
        arn = f"arn:aws:sqs:{region}:123456789012:{url.rsplit('/', 1)[-1]}"
        records = sqs_records(messages, arn, region)
        try:
            result = self.functions[function].handler({"Records": records}, LambdaContext())
        except LambdaKilled:
            return True
        self.delivered.append((function, result))
        failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return True
