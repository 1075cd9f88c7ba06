"""Bearer tokens for EKS, made the way ``aws eks get-token`` makes them.

A token is ``k8s-aws-v1.`` + unpadded URL-safe base64 of a presigned STS GetCallerIdentity URL
that signs the ``x-k8s-aws-id: <cluster name>`` header, valid 60 s for the presign and accepted by
EKS for 15 minutes. :class:`EksTokenSource` makes a new one before the old one is 14 minutes old.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - a format prefix, not a secret
CLUSTER_ID_HEADER = "x-k8s-aws-id"
PRESIGN_SECONDS = 60
TOKEN_LIFETIME_SECONDS = 14 * 60
REFRESH_MARGIN_SECONDS = 60


def _lift_cluster_id(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    if CLUSTER_ID_HEADER in params:
        context[CLUSTER_ID_HEADER] = params.pop(CLUSTER_ID_HEADER)


def _sign_cluster_id(request: Any, **_: Any) -> None:
    if CLUSTER_ID_HEADER in request.context:
        request.headers[CLUSTER_ID_HEADER] = request.context[CLUSTER_ID_HEADER]


def prepare_sts_client(sts: STSClient) -> STSClient:
    """Teach an STS client to sign the cluster id header (idempotent)."""
    events = sts.meta.events
    events.register(
        "provide-client-params.sts.GetCallerIdentity",
        _lift_cluster_id,
        unique_id="greenlight-eks-lift",
    )
    events.register(
        "before-sign.sts.GetCallerIdentity", _sign_cluster_id, unique_id="greenlight-eks-sign"
    )
    return sts


def get_token(sts: STSClient, cluster_name: str) -> str:
    """One EKS bearer token for ``cluster_name``, signed by ``sts``'s credentials."""
    url: str = prepare_sts_client(sts).generate_presigned_url(
        "get_caller_identity",
        Params={CLUSTER_ID_HEADER: cluster_name},
        ExpiresIn=PRESIGN_SECONDS,
        HttpMethod="GET",
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


@dataclass
class EksTokenSource:
    """Hands out a cached token and makes a new one before the old one expires."""

    sts: STSClient
    cluster_name: str
    clock: Callable[[], float] = time.time
    _token: str | None = field(default=None, init=False)
    _expires_at: float = field(default=0.0, init=False)

    def token(self) -> str:
        now = self.clock()
        if self._token is None or now >= self._expires_at - REFRESH_MARGIN_SECONDS:
            self._token = get_token(self.sts, self.cluster_name)
            self._expires_at = now + TOKEN_LIFETIME_SECONDS
        return self._token
