"""The EKS token against the algorithm of `aws eks get-token` (awscli's own TokenGenerator)."""

import base64
from datetime import UTC, datetime
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import botocore.session
import pytest
from awscli.customizations.eks.get_token import STSClientFactory, TokenGenerator

from greenlight.cluster.eks_token import (
    REFRESH_MARGIN_SECONDS,
    TOKEN_LIFETIME_SECONDS,
    EksTokenSource,
    get_token,
)

FROZEN = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def session(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return botocore.session.Session()


def _decode(token):
    body = token.removeprefix("k8s-aws-v1.")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def test_token_is_byte_identical_to_aws_eks_get_token(session):
    with mock.patch("botocore.auth.datetime") as clock:
        clock.datetime.now.return_value = FROZEN.replace(tzinfo=None)
        clock.datetime.utcnow.return_value = FROZEN.replace(tzinfo=None)
        ours = get_token(session.create_client("sts", region_name="eu-west-1"), "prod")
        reference_sts = STSClientFactory(session).get_sts_client(region_name="eu-west-1")
        theirs = TokenGenerator(reference_sts).get_token("prod")
    assert ours == theirs
    assert ours.startswith("k8s-aws-v1.") and not ours.endswith("=")


def test_token_signs_the_cluster_header_and_a_60s_presign(session):
    token = get_token(session.create_client("sts", region_name="eu-west-1"), "prod")
    url = urlsplit(_decode(token))
    query = parse_qs(url.query)
    assert url.netloc == "sts.eu-west-1.amazonaws.com"
    assert query["Action"] == ["GetCallerIdentity"]
    assert query["X-Amz-Expires"] == ["60"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")


def test_token_source_refreshes_before_expiry(session):
    now = [1000.0]
    source = EksTokenSource(
        sts=session.create_client("sts", region_name="eu-west-1"),
        cluster_name="prod",
        clock=lambda: now[0],
    )
    with mock.patch("greenlight.cluster.eks_token.get_token", side_effect=["t1", "t2"]) as made:
        assert source.token() == "t1"
        now[0] += TOKEN_LIFETIME_SECONDS - REFRESH_MARGIN_SECONDS - 1
        assert source.token() == "t1"
        now[0] += 2
        assert source.token() == "t2"
    assert made.call_count == 2
