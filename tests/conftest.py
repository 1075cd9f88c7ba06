"""Shared fixtures: the Kubernetes stand-in, moto (in-process), events and handlers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import settings
from moto import mock_aws

from greenlight_sandbox import resources
from greenlight_sandbox.context import LambdaContext
from greenlight_sandbox.functions import load
from greenlight_sandbox.kube import KubeStandIn
from greenlight_sandbox.kube.kinds import kind_named
from greenlight_sandbox.sandbox import CLUSTER_FUNCTIONS, function_identity, rbac_manifest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
KUBE_TOKEN = "test-token-not-a-secret"  # the superuser's (system:masters): tests' own set-up
# Each cluster function's token: its own identity (user sandbox.function_user(f), group
# greenlight-<f>), which docs/rbac.yaml binds; RBAC enforced. Each function's kubeconfig secret
# (aws_env) holds its own.
KUBE_FUNCTION_TOKENS = {f: f"test-{f}-token-not-a-secret" for f in CLUSTER_FUNCTIONS}
WEBHOOK_SECRET = "test-webhook-secret"


def own_env(function: str) -> dict[str, str]:
    """The environment ``function`` runs with in the sandbox: its own kubeconfig secret."""
    return resources.function_env(function, os.environ)


def load_event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def event() -> Callable[[str], Any]:
    return load_event


@pytest.fixture
def context() -> LambdaContext:
    return LambdaContext(timeout_seconds=60)


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with KubeStandIn(token=KUBE_TOKEN, tick_seconds=0.02) as standin:
        for ns in ("shop", "blog"):
            standin.cluster.create(kind_named("namespaces"), "", {"metadata": {"name": ns}})
        standin.apply_manifest(rbac_manifest())  # rendered for shop and blog
        for function, token in KUBE_FUNCTION_TOKENS.items():
            standin.auth.add(token, function_identity(function))
        standin.cluster.default_behaviour.ready_after = 0.1
        for i in range(1, 4):
            standin.add_node(f"worker-{i}", cpu="2", memory="4Gi", address=f"127.0.1.{i}")
        yield standin
    # A failing reconcile no longer stops the controllers: it is counted, and noticed here.
    assert standin.controller_errors == 0, list(standin.controller_error_log)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto in-process, fake credentials, no endpoint override: a boto3 Session."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for key, value in {
        **resources.FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": resources.REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.session.Session()


@pytest.fixture
def kube_api(kube: KubeStandIn) -> Iterator[Any]:
    """An official-client ApiClient for the stand-in, with its bearer token."""
    from kubernetes import client as k8s

    configuration = k8s.Configuration()
    configuration.host = kube.url
    configuration.ssl_ca_cert = kube.ca_file
    configuration.api_key = {"authorization": KUBE_TOKEN}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    with k8s.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
def function_api(kube: KubeStandIn) -> Iterator[Callable[[str], Any]]:
    """``function_api("night")``: an official-client ApiClient with that function's token."""
    from kubernetes import client as k8s

    made: list[Any] = []

    def make(function: str) -> Any:
        configuration = k8s.Configuration()
        configuration.host = kube.url
        configuration.ssl_ca_cert = kube.ca_file
        configuration.api_key = {"authorization": KUBE_FUNCTION_TOKENS[function]}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        made.append(k8s.ApiClient(configuration))
        return made[-1]

    yield make
    for api_client in made:
        api_client.close()


@pytest.fixture
def aws_env(kube: KubeStandIn, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """moto in-process with every sandbox resource, and the functions' environment set."""
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        **resources.FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": resources.REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        env = resources.bootstrap(
            boto3.session.Session(),
            kube_url=kube.url,
            kube_tokens=KUBE_FUNCTION_TOKENS,
            kube_ca=kube.ca_pem,
            webhook_secret=WEBHOOK_SECRET,
        )
        env["GREENLIGHT_ECR_WAIT_SECONDS"] = "2"
        env["GREENLIGHT_GATE_DELAY_SECONDS"] = "0"  # delays are tested on their own
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield env


@pytest.fixture
def rollout(aws_env: dict[str, str]) -> Callable[..., Any]:
    """The rollout function's handler, freshly loaded (cold start)."""
    module = load("rollout")
    return lambda event, context=None: module.handler(event, context or LambdaContext())


@pytest.fixture
def webhook(aws_env: dict[str, str]) -> Callable[..., Any]:
    module = load("github-webhook")
    return lambda event, context=None: module.handler(event, context or LambdaContext())


def queue_messages(url: str) -> list[dict[str, Any]]:
    """Every message in a (moto) queue, left in place for other readers."""
    sqs = boto3.client("sqs", region_name=resources.REGION)
    got = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
    ).get("Messages", [])
    return got


def table_items(name: str = resources.TABLE) -> list[dict[str, Any]]:
    ddb = boto3.client("dynamodb", region_name=resources.REGION)
    return ddb.scan(TableName=name)["Items"]


# Hypothesis: the same examples on every run and machine (derandomized, no example database),
# so that CI is reproducible; every property test runs under this profile.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_DEV", "false")


def node_port_service(
    kube: KubeStandIn,
    namespace: str,
    name: str,
    *,
    selector: dict[str, str] | None = None,
    node_port: int | None = None,
) -> int:
    """A NodePort Service (port 80 -> 8080) in the stand-in; its node port (given or allocated).
    The selector defaults to ``{"app": name}``."""
    port: dict[str, Any] = {"port": 80, "targetPort": 8080}
    if node_port:
        port["nodePort"] = node_port
    with kube.cluster.lock:
        created = kube.cluster.create(
            kind_named("services"),
            namespace,
            {
                "metadata": {"name": name},
                "spec": {
                    "type": "NodePort",
                    "selector": selector or {"app": name},
                    "ports": [port],
                },
            },
        )
    return int(created["spec"]["ports"][0]["nodePort"])
