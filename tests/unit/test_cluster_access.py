"""Cluster access in both modes, against moto's EKS and Secrets Manager."""

import base64

import pytest

from greenlight.cluster.access import api_client, eks_configuration
from greenlight.errors import SettingsError
from greenlight.settings import ClusterSettings
from greenlight_sandbox.resources import kubeconfig

PEM = b"-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"


def test_eks_mode_uses_endpoint_ca_and_a_refreshing_token(aws, monkeypatch):
    eks = aws.client("eks")
    described = {
        "cluster": {
            "endpoint": "https://ABC.gr7.eu-west-1.eks.amazonaws.com",
            "certificateAuthority": {"data": base64.b64encode(PEM).decode()},
        }
    }
    monkeypatch.setattr(eks, "describe_cluster", lambda name: described)
    configuration = eks_configuration(eks=eks, sts=aws.client("sts"), cluster_name="prod")
    assert configuration.host == "https://ABC.gr7.eu-west-1.eks.amazonaws.com"
    with open(configuration.ssl_ca_cert, "rb") as ca:
        assert ca.read() == PEM
    header = configuration.auth_settings()["BearerToken"]["value"]
    assert header.startswith("Bearer k8s-aws-v1.")


def test_kubeconfig_mode_reads_the_secret(aws):
    aws.client("secretsmanager").create_secret(
        Name="kc", SecretString=kubeconfig("http://127.0.0.1:6443", "tok")
    )
    client = api_client(ClusterSettings(mode="kubeconfig", kubeconfig_secret="kc"), session=aws)
    assert client.configuration.host == "http://127.0.0.1:6443"
    assert client.configuration.auth_settings()["BearerToken"]["value"] == "Bearer tok"


def test_kubeconfig_secret_that_is_not_yaml_fails_clearly(aws):
    aws.client("secretsmanager").create_secret(Name="kc", SecretString="{not: [yaml")
    with pytest.raises(SettingsError, match="kubeconfig secret kc: not YAML"):
        api_client(ClusterSettings(mode="kubeconfig", kubeconfig_secret="kc"), session=aws)
