"""The local sandbox: moto (as a server) + the Kubernetes stand-in, with Greenlight's resources.

Runs in-process (tests). ``greenlight sandbox up`` runs the full sandbox (fullstack.py) as a
background daemon (daemon.py); :func:`up`, :func:`down` and :func:`read_state` here manage it.
moto runs nothing for EventBridge or SQS event source mappings: this sandbox plays those parts by
invoking the handlers itself (:func:`deliver_rollout_queue`); the full sandbox has a pump.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import boto3

from . import resources
from .functions import ROOT, invoke
from .kube import KubeStandIn
from .kube.auth import Identity
from .kube.kinds import kind_named

STATE_DIR = ROOT / ".greenlight"
STATE_FILE = STATE_DIR / "sandbox.json"
LOG_FILE = STATE_DIR / "sandbox.log"
SANDBOX_NAMESPACES = resources.APP_NAMESPACES  # GREENLIGHT_APP_NAMESPACES in its env
# Each function that talks to the cluster has its own identity, as each has its own role and EKS
# access entry in template.yaml (group greenlight-<function>), and its own kubeconfig secret.
CLUSTER_FUNCTIONS = resources.CLUSTER_FUNCTIONS


def function_user(function: str) -> str:
    """The user name a function's requests carry: its role's assumed-role ARN."""
    return f"arn:aws:sts::{resources.ACCOUNT}:assumed-role/greenlight-{function}/sandbox"


def function_group(function: str) -> str:
    """The Kubernetes group a function's access entry maps its role to (template.yaml)."""
    return f"greenlight-{function}"


def function_identity(function: str) -> Identity:
    return Identity(function_user(function), (function_group(function),))


def rbac_manifest(namespaces: tuple[str, ...] = SANDBOX_NAMESPACES) -> str:
    """The project's own RBAC (docs/rbac.yaml rendered for the app namespaces), loaded into the
    stand-in: a permission missing from it fails here as it would on the cluster (403)."""
    from .rbac_manifest import manifest

    return manifest(namespaces)


def share_function_logs() -> None:
    """Let the functions' JSON log lines reach this process's stdout, INFO and up.

    In AWS each function names its service (POWERTOOLS_SERVICE_NAME) and the layer's module
    loggers are its children; here every function shares one process, so they share one
    service, ``greenlight-sandbox``. Call it before anything imports the functions' loggers:
    they write to the stdout of their time."""
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "greenlight-sandbox")
    from aws_lambda_powertools import Logger

    Logger(service=os.environ["POWERTOOLS_SERVICE_NAME"])


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


class _OneDynamoDBRequestAtATime:
    """WSGI middleware: moto's DynamoDB requests served one at a time.

    moto serves each request on its own thread and applies a write to the stored item one
    attribute at a time: a read beside a write could see half of it (a rollout's new phase
    without its reason; "dictionary changed size during iteration" in moto's own log), which
    DynamoDB never shows. Serialising DynamoDB's requests gives the sandbox DynamoDB's
    item-level atomicity. Its streams' requests keep their threads, as other services do: a
    stream record is whole when it is appended, and a read of the stream (the sandbox's
    announce poller, several times a second) would otherwise hold every table request behind
    it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        with self.lock:
            return list(self.app(environ, start_response))


def moto_server() -> Any:
    """A threaded moto server on a free loopback port whose DynamoDB is atomic per request,
    and whose transactions back up only what they touch (moto_transactions.py)."""
    from .moto_transactions import install

    install()
    from moto.server import (
        DomainDispatcherApplication,
        MotoRequestHandler,  # type: ignore[attr-defined]
        ThreadedMotoServer,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class Server(ThreadedMotoServer):
        def _server_entry(self) -> None:  # moto's own, with the middleware around its app
            app = _OneDynamoDBRequestAtATime(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return Server(ip_address="127.0.0.1", port=0, verbose=False)


class Sandbox:
    """moto server + Kubernetes stand-in + Greenlight's resources, all on loopback."""

    def __init__(self, *, nodes: int = 3, ready_after: float = 0.5, subnet: int = 1) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
        self.nodes = nodes
        self.subnet = subnet  # nodes are 127.0.<subnet>.<n>
        self.kube_token = secrets.token_urlsafe(24)  # the superuser's: the sandbox's own set-up
        self.function_secrets: dict[str, str] = {}  # function -> its kubeconfig secret (start)
        self.kube = KubeStandIn(token=self.kube_token)
        self.kube.cluster.default_behaviour.ready_after = ready_after
        self._moto = moto_server()
        self.env: dict[str, str] = {}

    @property
    def moto_url(self) -> str:
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> Sandbox:
        self._moto.start()
        # moto keeps its state per process, not per server: a sandbox starts from nothing.
        import urllib.request

        reset = urllib.request.Request(  # noqa: S310 - our own loopback moto server
            f"{self.moto_url}/moto-api/reset", method="POST"
        )
        urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 - as above
        self.kube.start()
        self.env = {
            "AWS_ENDPOINT_URL": self.moto_url,
            **resources.FAKE_CREDENTIALS,
            "AWS_DEFAULT_REGION": resources.REGION,
        }
        with environment(self.env):  # the workers are the group's instances
            instances = resources.worker_group(self.session(), self.nodes)
        for i, instance in enumerate(instances, start=1):
            zone = "abc"[(i - 1) % 3]
            self.kube.add_node(
                f"worker-{i}",
                cpu="2",
                memory="4Gi",
                address=f"127.0.{self.subnet}.{i}",
                zone=f"{resources.REGION}{zone}",
                instance_id=instance,
            )
        # Every EKS node runs aws-node and kube-proxy (DaemonSets in kube-system): they take
        # their small share of each node and a drain leaves them where they are.
        self.kube.install_eks_daemonsets()
        for ns in SANDBOX_NAMESPACES:
            if self.kube.cluster.find("namespaces", "", ns) is None:
                self.kube.cluster.create(kind_named("namespaces"), "", {"metadata": {"name": ns}})
        self.kube.apply_manifest(rbac_manifest(SANDBOX_NAMESPACES))
        tokens = {f: self.kube.auth.mint(function_identity(f)) for f in CLUSTER_FUNCTIONS}
        with environment(self.env):
            self.env.update(
                resources.bootstrap(
                    self.session(),
                    kube_url=self.kube.url,
                    kube_tokens=tokens,
                    kube_ca=self.kube.ca_pem,
                )
            )
        self.function_secrets = {f: resources.kubeconfig_secret(f) for f in CLUSTER_FUNCTIONS}
        self.env["GREENLIGHT_NIGHT_GROUP"] = resources.WORKER_GROUP
        self.env["GREENLIGHT_NIGHT_TIME_ZONE"] = resources.NIGHT_TIME_ZONE
        return self

    def function_env(self, function: str) -> dict[str, str]:
        """The environment ``function`` runs with: the sandbox's, with its own kubeconfig."""
        return resources.function_env(function, dict(os.environ) | self.env)

    def stop(self) -> None:
        self.kube.stop()
        self._moto.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def session(self) -> Any:
        return boto3.session.Session(
            region_name=resources.REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake key
        )

    def activate(self) -> contextlib.AbstractContextManager[None]:
        return environment(self.env)

    def state(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "moto_url": self.moto_url,
            "kube_url": self.kube.url,
            "kube_token": self.kube_token,
            "env": self.env,
        }


def client(env: dict[str, str], service: str) -> Any:
    """A boto3 client for the sandbox described by ``env``."""
    return boto3.session.Session(
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fake key
    ).client(service, endpoint_url=env["AWS_ENDPOINT_URL"])


def sqs_records(messages: list[dict[str, Any]], arn: str, region: str) -> list[dict[str, Any]]:
    """Received SQS messages as the records of a Lambda SQS event."""
    return [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": region,
        }
        for m in messages
    ]


def deliver_rollout_queue(
    env: dict[str, str], *, max_batches: int = 10, queue: str = "GREENLIGHT_ROLLOUT_QUEUE_URL"
) -> list[Any]:
    """Play the SQS event source mapping: feed queued pushes to the rollout handler (from the
    rollout queue, or ``queue="GREENLIGHT_CODECOMMIT_QUEUE_URL"``)."""
    sqs = client(env, "sqs")
    url = env[queue]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    results = []
    for _ in range(max_batches):
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            break
        records = sqs_records(messages, arn, env["AWS_DEFAULT_REGION"])
        with environment(env):
            result = invoke("rollout", {"Records": records})
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        results.append(result)
    return results


# ------------------------------------------------------------------ the daemon
def read_state() -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(STATE_FILE.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (ProcessLookupError, PermissionError, KeyError, ValueError):
        return None
    return state


def up(*, timeout: float = 60.0) -> dict[str, Any]:
    """Start the sandbox daemon unless it runs already; return its state."""
    state = read_state()
    if state is not None:
        return state
    STATE_DIR.mkdir(exist_ok=True)
    STATE_FILE.unlink(missing_ok=True)
    with LOG_FILE.open("ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "greenlight_sandbox.daemon"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state()
        if state is not None:
            return state
        time.sleep(0.2)
    raise RuntimeError(f"the sandbox did not start within {timeout:.0f} s; see {LOG_FILE}")


def down(*, timeout: float = 15.0) -> bool:
    """Stop the sandbox daemon; False when none was running."""
    state = read_state()
    if state is None:
        STATE_FILE.unlink(missing_ok=True)  # a stale file from a sandbox that died
        return False
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    STATE_FILE.unlink(missing_ok=True)
    return True
