"""Settings: one frozen object built from the environment in one place.

Nothing reads the environment at import time; handlers call :func:`Settings.from_env` once per
cold start. A missing variable fails with its name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from . import validate as rules
from .errors import SettingsError

ENV_TABLE = "GREENLIGHT_TABLE"
ENV_IDEMPOTENCY_TABLE = "GREENLIGHT_IDEMPOTENCY_TABLE"
ENV_CONFIG_BUCKET = "GREENLIGHT_CONFIG_BUCKET"
ENV_CONFIG_KEY = "GREENLIGHT_CONFIG_KEY"
ENV_GATE_QUEUE_URL = "GREENLIGHT_GATE_QUEUE_URL"
ENV_ROLLOUT_QUEUE_URL = "GREENLIGHT_ROLLOUT_QUEUE_URL"
# Dead-letter queues the functions send permanent failures to (greenlight/redelivery.py).
ENV_ROLLOUT_DLQ_URL = "GREENLIGHT_ROLLOUT_DLQ_URL"
ENV_CODECOMMIT_DLQ_URL = "GREENLIGHT_CODECOMMIT_DLQ_URL"
ENV_GATE_DLQ_URL = "GREENLIGHT_GATE_DLQ_URL"
ENV_CLUSTER_MODE = "GREENLIGHT_CLUSTER_MODE"
ENV_EKS_CLUSTER = "GREENLIGHT_EKS_CLUSTER"
ENV_KUBECONFIG_SECRET = "GREENLIGHT_KUBECONFIG_SECRET"  # noqa: S105 - a variable name
# The namespaces apps may deploy to (the stack's AppNamespaces): required, comma-separated.
ENV_APP_NAMESPACES = "GREENLIGHT_APP_NAMESPACES"
ENV_WEBHOOK_SECRET = "GREENLIGHT_WEBHOOK_SECRET"  # noqa: S105 - a variable name
ENV_GATE_DELAY = "GREENLIGHT_GATE_DELAY_SECONDS"
ENV_ECR_WAIT = "GREENLIGHT_ECR_WAIT_SECONDS"
ENV_DRY_RUN = "GREENLIGHT_DRY_RUN"
ENV_NIGHT_GROUP = "GREENLIGHT_NIGHT_GROUP"
ENV_NIGHT_TIME_ZONE = "GREENLIGHT_NIGHT_TIME_ZONE"
ENV_DEPLOY_DEADLINE = "GREENLIGHT_DEPLOY_DEADLINE_SECONDS"
ENV_PROMOTE_DEADLINE = "GREENLIGHT_PROMOTE_DEADLINE_SECONDS"
ENV_EDGE_PUSH_MAX = "GREENLIGHT_EDGE_PUSH_MAX_SECONDS"
DEFAULT_CONFIG_KEY = "config/apps.yaml"
ENV_EDGE_ENDPOINT = "GREENLIGHT_EDGE_ENDPOINT"
ENV_EDGE_FUNCTION = "GREENLIGHT_EDGE_FUNCTION"
ENV_EDGE_VERIFY_TLS = "GREENLIGHT_EDGE_VERIFY_TLS"
ENV_EVENT_BUS = "GREENLIGHT_EVENT_BUS"
ENV_METRICS_SERVICE = "GREENLIGHT_METRICS_SERVICE"
ENV_GITHUB_SECRET = "GREENLIGHT_GITHUB_SECRET"  # noqa: S105 - a variable name
ENV_GITHUB_API_URL = "GREENLIGHT_GITHUB_API_URL"
ENV_GITHUB_ENVIRONMENT = "GREENLIGHT_GITHUB_ENVIRONMENT"
ENV_NOTIFY_TOPIC = "GREENLIGHT_NOTIFY_TOPIC_ARN"
ENV_SLACK_SECRET = "GREENLIGHT_SLACK_SECRET"  # noqa: S105 - a variable name

ClusterMode = Literal["eks", "kubeconfig"]


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"environment variable {name} is required")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected an integer") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value}: expected {low}..{high}")
    return value


def _config_key(env: Mapping[str, str]) -> str:
    return env.get(ENV_CONFIG_KEY, "").strip() or DEFAULT_CONFIG_KEY


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise SettingsError(f"{name}={raw!r}: expected true or false")


def app_namespaces(env: Mapping[str, str]) -> tuple[str, ...]:
    """The namespaces apps may deploy to, from ``GREENLIGHT_APP_NAMESPACES`` (required: no
    value means every namespace). Each is a DNS-1123 label and never ``kube-*``."""
    raw = _require(env, ENV_APP_NAMESPACES)
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        raise SettingsError(f"{ENV_APP_NAMESPACES}: no namespace in {raw!r}")
    for name in names:
        try:
            rules.app_namespace(name)
        except ValueError as exc:
            raise SettingsError(f"{ENV_APP_NAMESPACES}: {name!r}: {exc}") from None
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    mode: ClusterMode
    eks_cluster: str | None = None
    kubeconfig_secret: str | None = None
    # The namespaces the apps file may name (and the functions' Roles cover); () allows none.
    app_namespaces: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClusterSettings:
        mode = env.get(ENV_CLUSTER_MODE, "eks").strip() or "eks"
        namespaces = app_namespaces(env)
        if mode == "eks":
            return cls(
                mode="eks", eks_cluster=_require(env, ENV_EKS_CLUSTER), app_namespaces=namespaces
            )
        if mode == "kubeconfig":
            return cls(
                mode="kubeconfig",
                kubeconfig_secret=_require(env, ENV_KUBECONFIG_SECRET),
                app_namespaces=namespaces,
            )
        raise SettingsError(f"{ENV_CLUSTER_MODE}={mode!r}: expected 'eks' or 'kubeconfig'")


@dataclass(frozen=True, kw_only=True)
class RolloutSettings:
    table: str
    idempotency_table: str
    config_bucket: str
    config_key: str
    gate_queue_url: str
    cluster: ClusterSettings
    gate_delay_seconds: int = 5
    ecr_wait_seconds: int = 0
    night_group: str = ""  # the worker group the night shrink drains ("": none)
    # The haproxy function, pushed before a candidate's pods are written ("": no edge).
    edge_function: str = ""
    dry_run: bool = False
    # Where a push that can never succeed goes: the rollout queue's (FIFO) dead-letter queue,
    # and the CodeCommit queue's ("": none; such a push is dropped with an ERROR log).
    dead_letter_queue_url: str = ""
    codecommit_dead_letter_queue_url: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RolloutSettings:
        env = os.environ if env is None else env
        return cls(
            table=_require(env, ENV_TABLE),
            idempotency_table=_require(env, ENV_IDEMPOTENCY_TABLE),
            config_bucket=_require(env, ENV_CONFIG_BUCKET),
            config_key=_config_key(env),
            gate_queue_url=_require(env, ENV_GATE_QUEUE_URL),
            cluster=ClusterSettings.from_env(env),
            gate_delay_seconds=_int(env, ENV_GATE_DELAY, 5, low=0, high=900),
            ecr_wait_seconds=_int(env, ENV_ECR_WAIT, 0, low=0, high=600),
            night_group=env.get(ENV_NIGHT_GROUP, "").strip(),
            edge_function=env.get(ENV_EDGE_FUNCTION, "").strip(),
            dry_run=_bool(env, ENV_DRY_RUN),
            dead_letter_queue_url=env.get(ENV_ROLLOUT_DLQ_URL, "").strip(),
            codecommit_dead_letter_queue_url=env.get(ENV_CODECOMMIT_DLQ_URL, "").strip(),
        )


@dataclass(frozen=True, kw_only=True)
class WebhookSettings:
    webhook_secret: str
    rollout_queue_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhookSettings:
        env = os.environ if env is None else env
        return cls(
            webhook_secret=_require(env, ENV_WEBHOOK_SECRET),
            rollout_queue_url=_require(env, ENV_ROLLOUT_QUEUE_URL),
        )


@dataclass(frozen=True, kw_only=True)
class AnnounceSettings:
    event_bus: str
    metrics_service: str = "greenlight"  # the metrics' service dimension (the stack's name)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AnnounceSettings:
        env = os.environ if env is None else env
        return cls(
            event_bus=env.get(ENV_EVENT_BUS, "").strip() or "default",
            metrics_service=env.get(ENV_METRICS_SERVICE, "").strip() or "greenlight",
        )


_API_URL = re.compile(r"^https?://[^\s/]+(/[^\s]*)?$")
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


@dataclass(frozen=True, kw_only=True)
class NotifySettings:
    table: str
    topic_arn: str  # the SNS topic every phase change is published to
    github_secret: str = ""  # Secrets Manager id of the GitHub token or App ("": no GitHub)
    github_api_url: str = "https://api.github.com"
    slack_secret: str = ""  # Secrets Manager id of a Slack incoming-webhook URL ("": no Slack)
    environment: str = "production"  # GitHub deployments go to <environment>/<app>

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NotifySettings:
        env = os.environ if env is None else env
        api_url = env.get(ENV_GITHUB_API_URL, "").strip().rstrip("/") or "https://api.github.com"
        if not _API_URL.match(api_url):
            raise SettingsError(f"{ENV_GITHUB_API_URL}: expected an http(s) URL, got {api_url!r}")
        environment = env.get(ENV_GITHUB_ENVIRONMENT, "").strip() or "production"
        if not _ENVIRONMENT.match(environment):
            raise SettingsError(
                f"{ENV_GITHUB_ENVIRONMENT}: expected letters, digits, '.', '_' or '-', "
                f"got {environment!r}"
            )
        return cls(
            table=_require(env, ENV_TABLE),
            topic_arn=_require(env, ENV_NOTIFY_TOPIC),
            github_secret=env.get(ENV_GITHUB_SECRET, "").strip(),
            github_api_url=api_url,
            slack_secret=env.get(ENV_SLACK_SECRET, "").strip(),
            environment=environment,
        )


ENV_BUNDLE_KEY = "GREENLIGHT_EDGE_BUNDLE_KEY"
ENV_EDGE_DOCUMENT = "GREENLIGHT_EDGE_DOCUMENT"
# The read-only stats document (EdgeStatsDocument): the counters action (docs/edge.md, "Counters").
ENV_EDGE_STATS_DOCUMENT = "GREENLIGHT_EDGE_STATS_DOCUMENT"
ENV_EDGE_FLEET_TAG = "GREENLIGHT_EDGE_FLEET_TAG"
ENV_EDGE_MAX_CONCURRENCY = "GREENLIGHT_EDGE_MAX_CONCURRENCY"
ENV_EDGE_MAX_ERRORS = "GREENLIGHT_EDGE_MAX_ERRORS"
ENV_EDGE_EXECUTION_TIMEOUT = "GREENLIGHT_EDGE_EXECUTION_TIMEOUT_SECONDS"
ENV_EDGE_UP_WAIT = "GREENLIGHT_EDGE_UP_WAIT_SECONDS"
# GetCommandInvocation's cadence: first this soon after SendCommand, growing by a quarter up to
# the poll interval (the sandbox, whose instances answer in milliseconds, polls faster).
ENV_EDGE_FIRST_POLL_MS = "GREENLIGHT_EDGE_FIRST_POLL_MILLISECONDS"
ENV_EDGE_POLL_MS = "GREENLIGHT_EDGE_POLL_MILLISECONDS"
# false: every push reloads (Mode=apply, canary first), as before the runtime switch.
ENV_EDGE_RUNTIME_SWITCH = "GREENLIGHT_EDGE_RUNTIME_SWITCH"
# The stack's EdgeSigningKey: the function signs every bundle with it, instances verify with it.
ENV_EDGE_SIGNING_KEY = "GREENLIGHT_EDGE_SIGNING_KEY"
_KMS_KEY_ARN = re.compile(
    r"^arn:aws[a-z-]{0,20}:kms:[a-z0-9-]{1,30}:[0-9]{12}:key/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z"
)
_RATE = re.compile(r"^(0|[1-9][0-9]{0,3}|[1-9][0-9]?%|100%)$")


@dataclass(frozen=True)
class FleetSettings:
    document: str
    tag_key: str
    tag_value: str
    bucket: str
    key: str
    region: str = ""
    max_concurrency: str = "25%"
    max_errors: str = "0"
    delivery_timeout_seconds: int = 60  # SendCommand TimeoutSeconds (reaching the agent)
    execution_timeout_seconds: int = 120  # the document's own limit on each instance
    poll_seconds: float = 0.5  # GetCommandInvocation at most this far apart
    first_poll_seconds: float = 0.1  # ... and this soon after SendCommand, growing by a quarter
    stage_first: bool = True  # fleets of 2+: every instance fetches and checks, then the switch
    signing_key: str = ""  # the document's SigningKeyArn (from_env requires it)
    up_wait_seconds: int = 20  # a promotion's check round waits this long for UP, at most
    runtime_switch: bool = True  # Mode=switch (a map-only change without a reload); else apply
    stats_document: str = ""  # EdgeStatsDocument ("": the counters action is refused)

    @classmethod
    def from_env(cls, env: Mapping[str, str], bucket: str, key: str) -> FleetSettings | None:
        """None when no document is configured: the config is published, no fleet reloaded."""
        document = env.get(ENV_EDGE_DOCUMENT, "").strip()
        if not document:
            return None
        tag = env.get(ENV_EDGE_FLEET_TAG, "").strip()
        tag_key, sep, tag_value = tag.partition("=")
        if not sep or not tag_key or not tag_value:
            raise SettingsError(
                f"{ENV_EDGE_FLEET_TAG}: expected TAG_KEY=TAG_VALUE (the fleet's instances' tag), "
                f"got {tag!r}"
            )
        rates = {}
        for name, default in ((ENV_EDGE_MAX_CONCURRENCY, "25%"), (ENV_EDGE_MAX_ERRORS, "0")):
            value = env.get(name, "").strip() or default
            if not _RATE.match(value):
                raise SettingsError(f"{name}: expected a count or a percentage, got {value!r}")
            rates[name] = value
        if rates[ENV_EDGE_MAX_CONCURRENCY] in ("0", "0%"):
            raise SettingsError(f"{ENV_EDGE_MAX_CONCURRENCY}: must be at least 1")
        signing_key = signing_key_of(env)
        if not signing_key:
            raise SettingsError(
                f"{ENV_EDGE_SIGNING_KEY}: required with {ENV_EDGE_DOCUMENT} (instances apply only"
                " bundles this key signed)"
            )
        return cls(
            document=document,
            tag_key=tag_key,
            tag_value=tag_value,
            bucket=bucket,
            key=key,
            region=env.get("AWS_REGION", "").strip(),
            max_concurrency=rates[ENV_EDGE_MAX_CONCURRENCY],
            max_errors=rates[ENV_EDGE_MAX_ERRORS],
            execution_timeout_seconds=_int(env, ENV_EDGE_EXECUTION_TIMEOUT, 120, low=30, high=3600),
            signing_key=signing_key,
            up_wait_seconds=_int(env, ENV_EDGE_UP_WAIT, 20, low=0, high=120),
            first_poll_seconds=_int(env, ENV_EDGE_FIRST_POLL_MS, 100, low=10, high=5000) / 1000,
            poll_seconds=_int(env, ENV_EDGE_POLL_MS, 500, low=10, high=5000) / 1000,
            runtime_switch=not env.get(ENV_EDGE_RUNTIME_SWITCH, "").strip()
            or _bool(env, ENV_EDGE_RUNTIME_SWITCH),
            stats_document=env.get(ENV_EDGE_STATS_DOCUMENT, "").strip(),
        )


def signing_key_of(env: Mapping[str, str]) -> str:
    """The KMS key ARN in ``GREENLIGHT_EDGE_SIGNING_KEY`` ("" when unset); SettingsError when it
    is not a key ARN."""
    value = env.get(ENV_EDGE_SIGNING_KEY, "").strip()
    if value and not _KMS_KEY_ARN.match(value):
        raise SettingsError(
            f"{ENV_EDGE_SIGNING_KEY}: expected a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID),"
            f" got {value!r}"
        )
    return value


@dataclass(frozen=True, kw_only=True)
class EdgeFunctionSettings:
    table: str
    config_bucket: str
    config_key: str
    bundle_key: str
    cluster: ClusterSettings
    fleet: FleetSettings | None = None
    dry_run: bool = False
    signing_key: str = ""  # "": bundles are not signed (every instance refuses them)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EdgeFunctionSettings:
        env = os.environ if env is None else env
        bucket = _require(env, ENV_CONFIG_BUCKET)
        bundle_key = env.get(ENV_BUNDLE_KEY, "").strip() or "haproxy/config.tar.gz"
        return cls(
            table=_require(env, ENV_TABLE),
            config_bucket=bucket,
            config_key=_config_key(env),
            bundle_key=bundle_key,
            cluster=ClusterSettings.from_env(env),
            fleet=FleetSettings.from_env(env, bucket, bundle_key),
            dry_run=_bool(env, ENV_DRY_RUN),
            signing_key=signing_key_of(env),
        )


_ENDPOINT = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")


@dataclass(frozen=True, kw_only=True)
class GateSettings:
    table: str
    config_bucket: str
    config_key: str
    gate_queue_url: str
    edge_endpoint: str  # host:port where the fleet answers (its load balancer)
    edge_function: str  # the haproxy function, invoked to push at promotion
    cluster: ClusterSettings
    verify_tls: bool = True
    # How long a rollout may stay deploying (its function dead for good: failed) and promoting
    # (the fleet degraded: the promotion reverted). The deploy deadline outlasts one redelivery
    # of the rollout queue (visibility 1,980 s) plus a run (330 s), so a retry still resumes.
    deploy_deadline_seconds: int = 2400
    promote_deadline_seconds: int = 900
    dead_letter_queue_url: str = ""  # the gate queue's; "": a malformed check is only logged
    # The longest edge push: the haproxy function's timeout (edgepush.PUSH_MAX_SECONDS). The
    # sweep takes a chain for stuck only after longer than this (gate/decide.py ``stuck``).
    edge_push_max_seconds: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GateSettings:
        env = os.environ if env is None else env
        endpoint = _require(env, ENV_EDGE_ENDPOINT)
        if not _ENDPOINT.match(endpoint):
            raise SettingsError(f"{ENV_EDGE_ENDPOINT}: expected HOST:PORT, got {endpoint!r}")
        raw_verify = env.get(ENV_EDGE_VERIFY_TLS, "").strip().lower()
        return cls(
            table=_require(env, ENV_TABLE),
            config_bucket=_require(env, ENV_CONFIG_BUCKET),
            config_key=_config_key(env),
            gate_queue_url=_require(env, ENV_GATE_QUEUE_URL),
            edge_endpoint=endpoint,
            edge_function=_require(env, ENV_EDGE_FUNCTION),
            cluster=ClusterSettings.from_env(env),
            verify_tls=raw_verify not in ("0", "false", "no"),
            deploy_deadline_seconds=_int(env, ENV_DEPLOY_DEADLINE, 2400, low=60, high=86400),
            promote_deadline_seconds=_int(env, ENV_PROMOTE_DEADLINE, 900, low=60, high=86400),
            dead_letter_queue_url=env.get(ENV_GATE_DLQ_URL, "").strip(),
            edge_push_max_seconds=_int(env, ENV_EDGE_PUSH_MAX, 300, low=5, high=900),
        )


@dataclass(frozen=True, kw_only=True)
class NightFunctionSettings:
    table: str
    config_bucket: str
    config_key: str
    edge_function: str
    group: str  # the worker Auto Scaling Group
    time_zone: str  # the cluster's, for the calendar
    cluster: ClusterSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NightFunctionSettings:
        env = os.environ if env is None else env
        required = (
            ENV_TABLE,
            ENV_CONFIG_BUCKET,
            ENV_EDGE_FUNCTION,
            ENV_NIGHT_GROUP,
            ENV_NIGHT_TIME_ZONE,
        )
        missing = [name for name in required if not env.get(name, "").strip()]
        if missing:
            raise SettingsError(f"missing settings: {', '.join(missing)}")
        return cls(
            table=_require(env, ENV_TABLE),
            config_bucket=_require(env, ENV_CONFIG_BUCKET),
            config_key=_config_key(env),
            edge_function=_require(env, ENV_EDGE_FUNCTION),
            group=_require(env, ENV_NIGHT_GROUP),
            time_zone=_require(env, ENV_NIGHT_TIME_ZONE),
            cluster=ClusterSettings.from_env(env),
        )
