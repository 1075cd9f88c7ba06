"""A configured ``kubernetes.client.ApiClient`` for the cluster Greenlight deploys to.

Two modes: ``eks`` (endpoint and CA from ``eks:DescribeCluster``, bearer token from
:mod:`.eks_token`, refreshed before each request when close to expiry) and ``kubeconfig`` (a
kubeconfig document kept in Secrets Manager, for self-managed clusters and the local sandbox).

A kubeconfig may only name a server, its CA and static credentials, all inline: whatever would
run a program (``exec``, ``auth-provider``), turn TLS verification off
(``insecure-skip-tls-verify``) or read a file of the function's (``tokenFile``,
``certificate-authority``, ``client-certificate``, ``client-key``) is refused, by field name. No
error quotes the secret's text: a YAML error names the line and column only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import validate as rules
from ..errors import SettingsError
from ..settings import ClusterSettings
from .eks_token import EksTokenSource

if TYPE_CHECKING:  # the kubernetes package costs ~200 ms to import: only when first used
    import boto3
    from kubernetes import client as k8s
    from mypy_boto3_eks import EKSClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sts import STSClient

REQUEST_TIMEOUT_SECONDS = 10
MAX_KUBECONFIG_BYTES = 1024 * 1024

# Refused wherever they appear in a cluster or user entry, with why.
_REFUSED_CLUSTER_FIELDS = {
    "insecure-skip-tls-verify": "TLS verification cannot be turned off",
    "certificate-authority": "a file path: give certificate-authority-data",
}
_REFUSED_USER_FIELDS = {
    "exec": "credential plugins run programs in the function",
    "auth-provider": "auth providers run programs or fetch tokens elsewhere",
    "tokenFile": "a file path: give token",
    "client-certificate": "a file path: give client-certificate-data",
    "client-key": "a file path: give client-key-data",
}


def kubeconfig_problems(document: Mapping[str, Any]) -> list[str]:
    """What a kubeconfig holds that Greenlight refuses, each by field path (never its value)."""
    problems = []
    for section, inner, refused in (
        ("clusters", "cluster", _REFUSED_CLUSTER_FIELDS),
        ("users", "user", _REFUSED_USER_FIELDS),
    ):
        entries = document.get(section)
        if entries is None:
            continue
        if not isinstance(entries, list):
            problems.append(f"{section}: expected a list")
            continue
        for index, entry in enumerate(entries):
            body = entry.get(inner) if isinstance(entry, dict) else None
            if not isinstance(body, dict):
                problems.append(f"{section}[{index}].{inner}: expected a mapping")
                continue
            for field, why in refused.items():
                if field not in body:
                    continue
                if field == "insecure-skip-tls-verify" and body[field] is False:
                    continue  # the default, said out loud
                problems.append(f"{section}[{index}].{inner}.{field}: refused ({why})")
    return problems


def _ca_file(pem: bytes) -> str:
    path = os.path.join(
        tempfile.gettempdir(), f"greenlight-ca-{hashlib.sha256(pem).hexdigest()[:16]}.pem"
    )
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=tempfile.gettempdir())
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        os.replace(tmp, path)
    return path


def eks_configuration(*, eks: EKSClient, sts: STSClient, cluster_name: str) -> k8s.Configuration:
    from kubernetes import client as k8s

    described = eks.describe_cluster(name=cluster_name)["cluster"]
    source = EksTokenSource(sts=sts, cluster_name=cluster_name)
    configuration = k8s.Configuration()
    configuration.host = described["endpoint"]
    configuration.ssl_ca_cert = _ca_file(
        base64.b64decode(described["certificateAuthority"]["data"])
    )
    configuration.api_key_prefix["authorization"] = "Bearer"
    configuration.api_key["authorization"] = source.token()

    def refresh(conf: k8s.Configuration) -> None:
        conf.api_key["authorization"] = source.token()

    configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]
    return configuration


def kubeconfig_configuration(
    *, secretsmanager: SecretsManagerClient, secret_id: str
) -> k8s.Configuration:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    text = secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"]
    try:
        document = rules.load_yaml(text, max_bytes=MAX_KUBECONFIG_BYTES)
    except rules.YamlRefused as exc:
        # Never exc's problem text: PyYAML quotes the document, and this one holds credentials.
        where = f" at line {exc.line}, column {exc.column}" if exc.line else ""
        raise SettingsError(f"kubeconfig secret {secret_id}: not YAML{where}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"kubeconfig secret {secret_id}: expected a kubeconfig mapping")
    problems = kubeconfig_problems(document)
    if problems:
        raise SettingsError(f"kubeconfig secret {secret_id}: {'; '.join(problems)}")
    configuration = k8s.Configuration()
    try:
        k8s_config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]
            document, client_configuration=configuration
        )
    except k8s_config.ConfigException as exc:  # names fields, never their values
        raise SettingsError(f"kubeconfig secret {secret_id}: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SettingsError(
            f"kubeconfig secret {secret_id}: not a usable kubeconfig ({type(exc).__name__})"
        ) from None
    return configuration


def api_client(settings: ClusterSettings, *, session: boto3.session.Session) -> k8s.ApiClient:
    """An ApiClient for ``settings``; ``session`` is a boto3 Session."""
    from kubernetes import client as k8s

    if settings.mode == "eks":
        assert settings.eks_cluster is not None
        configuration = eks_configuration(
            eks=session.client("eks"), sts=session.client("sts"), cluster_name=settings.eks_cluster
        )
    else:
        assert settings.kubeconfig_secret is not None
        configuration = kubeconfig_configuration(
            secretsmanager=session.client("secretsmanager"), secret_id=settings.kubeconfig_secret
        )
    configuration.retries = 2
    return k8s.ApiClient(configuration)
