"""Settings: one frozen object built from the environment in one place.

Nothing reads the environment at import time; handlers call :func:`Settings.from_env` once per
cold start. A missing variable fails with its name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .errors import SettingsError

ENV_TABLE = "GREENLIGHT_TABLE"
ENV_IDEMPOTENCY_TABLE = "GREENLIGHT_IDEMPOTENCY_TABLE"
ENV_CONFIG_BUCKET = "GREENLIGHT_CONFIG_BUCKET"
ENV_CONFIG_KEY = "GREENLIGHT_CONFIG_KEY"
ENV_GATE_QUEUE_URL = "GREENLIGHT_GATE_QUEUE_URL"
ENV_ROLLOUT_QUEUE_URL = "GREENLIGHT_ROLLOUT_QUEUE_URL"
ENV_CLUSTER_MODE = "GREENLIGHT_CLUSTER_MODE"
ENV_EKS_CLUSTER = "GREENLIGHT_EKS_CLUSTER"
ENV_KUBECONFIG_SECRET = "GREENLIGHT_KUBECONFIG_SECRET"  # noqa: S105 - a variable name
ENV_WEBHOOK_SECRET = "GREENLIGHT_WEBHOOK_SECRET"  # noqa: S105 - a variable name
ENV_GATE_DELAY = "GREENLIGHT_GATE_DELAY_SECONDS"
ENV_ECR_WAIT = "GREENLIGHT_ECR_WAIT_SECONDS"
ENV_DRY_RUN = "GREENLIGHT_DRY_RUN"

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


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise SettingsError(f"{name}={raw!r}: expected true or false")


@dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    mode: ClusterMode
    eks_cluster: str | None = None
    kubeconfig_secret: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClusterSettings:
        mode = env.get(ENV_CLUSTER_MODE, "eks").strip() or "eks"
        if mode == "eks":
            return cls(mode="eks", eks_cluster=_require(env, ENV_EKS_CLUSTER))
        if mode == "kubeconfig":
            return cls(mode="kubeconfig", kubeconfig_secret=_require(env, ENV_KUBECONFIG_SECRET))
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
    dry_run: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RolloutSettings:
        env = os.environ if env is None else env
        return cls(
            table=_require(env, ENV_TABLE),
            idempotency_table=_require(env, ENV_IDEMPOTENCY_TABLE),
            config_bucket=_require(env, ENV_CONFIG_BUCKET),
            config_key=env.get(ENV_CONFIG_KEY, "").strip() or "config/apps.yaml",
            gate_queue_url=_require(env, ENV_GATE_QUEUE_URL),
            cluster=ClusterSettings.from_env(env),
            gate_delay_seconds=_int(env, ENV_GATE_DELAY, 5, low=0, high=900),
            ecr_wait_seconds=_int(env, ENV_ECR_WAIT, 0, low=0, high=600),
            dry_run=_bool(env, ENV_DRY_RUN),
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


ENV_BUNDLE_KEY = "GREENLIGHT_EDGE_BUNDLE_KEY"


@dataclass(frozen=True, kw_only=True)
class EdgeFunctionSettings:
    table: str
    config_bucket: str
    config_key: str
    bundle_key: str
    cluster: ClusterSettings
    dry_run: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EdgeFunctionSettings:
        env = os.environ if env is None else env
        return cls(
            table=_require(env, ENV_TABLE),
            config_bucket=_require(env, ENV_CONFIG_BUCKET),
            config_key=env.get(ENV_CONFIG_KEY, "").strip() or "config/apps.yaml",
            bundle_key=env.get(ENV_BUNDLE_KEY, "").strip() or "haproxy/config.tar.gz",
            cluster=ClusterSettings.from_env(env),
            dry_run=_bool(env, ENV_DRY_RUN),
        )
