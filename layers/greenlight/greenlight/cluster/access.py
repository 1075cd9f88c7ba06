"""A configured ``kubernetes.client.ApiClient`` for the cluster Greenlight deploys to.

Two modes: ``eks`` (endpoint and CA from ``eks:DescribeCluster``, bearer token from
:mod:`.eks_token`, refreshed before each request when close to expiry) and ``kubeconfig`` (a
kubeconfig document kept in Secrets Manager, for self-managed clusters and the local sandbox).
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from typing import TYPE_CHECKING

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
    import yaml  # with the kubernetes client: only self-managed clusters read a kubeconfig
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    text = secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"]
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"kubeconfig secret {secret_id}: not YAML: {exc}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"kubeconfig secret {secret_id}: expected a kubeconfig mapping")
    configuration = k8s.Configuration()
    k8s_config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]
        document, client_configuration=configuration
    )
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
