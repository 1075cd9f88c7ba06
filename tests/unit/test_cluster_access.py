"""Cluster access in both modes, against moto's EKS and Secrets Manager."""

import base64

import pytest

from greenlight.cluster.access import api_client, eks_configuration, kubeconfig_problems
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


def _kubeconfig_with(cluster: dict | None = None, user: dict | None = None) -> str:
    import yaml

    document = yaml.safe_load(kubeconfig("https://127.0.0.1:6443", "tok-s3cret-value", PEM))
    document["clusters"][0]["cluster"].update(cluster or {})
    document["users"][0]["user"].update(user or {})
    return yaml.safe_dump(document)


def _load(aws, text: str):
    aws.client("secretsmanager").create_secret(Name="kc", SecretString=text)
    return api_client(ClusterSettings(mode="kubeconfig", kubeconfig_secret="kc"), session=aws)


def test_an_exec_plugin_is_refused_and_never_runs(aws, tmp_path):
    marker = tmp_path / "ran"
    credential = (
        '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
        '"status":{"token":"x"}}'
    )
    plugin = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "/bin/sh",
        "args": ["-c", f"touch {marker}; echo '{credential}'"],
        "interactiveMode": "Never",
    }
    with pytest.raises(SettingsError) as caught:
        _load(aws, _kubeconfig_with(user={"exec": plugin}))
    assert "kubeconfig secret kc: users[0].user.exec: refused" in str(caught.value)
    assert not marker.exists()
    assert "/bin/sh" not in str(caught.value) and "tok-s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("cluster", "user", "field"),
    [
        (
            None,
            {"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh"}}},
            "users[0].user.auth-provider",
        ),
        ({"insecure-skip-tls-verify": True}, None, "clusters[0].cluster.insecure-skip-tls-verify"),
        (
            {"insecure-skip-tls-verify": "false"},
            None,
            "clusters[0].cluster.insecure-skip-tls-verify",
        ),
        (None, {"tokenFile": "/proc/self/environ"}, "users[0].user.tokenFile"),
        (
            {"certificate-authority": "/etc/passwd"},
            None,
            "clusters[0].cluster.certificate-authority",
        ),
        (None, {"client-key": "/etc/shadow"}, "users[0].user.client-key"),
    ],
)
def test_what_runs_programs_skips_tls_or_reads_files_is_refused_by_field(aws, cluster, user, field):
    with pytest.raises(SettingsError) as caught:
        _load(aws, _kubeconfig_with(cluster, user))
    message = str(caught.value)
    assert f"{field}: refused" in message
    for value in ("/bin/sh", "/proc/self", "/etc/", "tok-s3cret"):
        assert value not in message


def test_tls_verification_stated_as_on_is_fine(aws):
    client = _load(aws, _kubeconfig_with({"insecure-skip-tls-verify": False}))
    assert client.configuration.verify_ssl is True


def test_every_refused_field_is_named_at_once():
    document = {
        "clusters": [{"name": "c", "cluster": {"insecure-skip-tls-verify": True}}],
        "users": [
            {"name": "u", "user": {"exec": {}}},
            {"name": "v", "user": {"auth-provider": {}}},
        ],
    }
    assert kubeconfig_problems(document) == [
        "clusters[0].cluster.insecure-skip-tls-verify: refused (TLS verification cannot be "
        "turned off)",
        "users[0].user.exec: refused (credential plugins run programs in the function)",
        "users[1].user.auth-provider: refused (auth providers run programs or fetch tokens "
        "elsewhere)",
    ]
    assert kubeconfig_problems({"users": "x"}) == ["users: expected a list"]
    assert kubeconfig_problems({"users": [{"user": None}]}) == ["users[0].user: expected a mapping"]


def test_a_malformed_secret_never_echoes_its_token(aws):
    text = kubeconfig("https://127.0.0.1:6443", "tok-s3cret-value").replace(
        "token: tok-s3cret-value", "token: [tok-s3cret-value"
    )
    assert "tok-s3cret-value" in text
    with pytest.raises(SettingsError) as caught:
        _load(aws, text)
    message = str(caught.value)
    assert message.startswith("kubeconfig secret kc: not YAML at line ")
    assert "tok-s3cret" not in message and "token" not in message


def test_anchors_in_a_kubeconfig_are_refused(aws):
    text = kubeconfig("https://127.0.0.1:6443", "tok").replace(
        "name: sandbox", "name: &n sandbox", 1
    )
    with pytest.raises(SettingsError, match="not YAML at line"):
        _load(aws, text)
