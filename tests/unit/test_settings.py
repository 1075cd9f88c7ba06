import pytest

from greenlight.errors import SettingsError
from greenlight.settings import RolloutSettings

BASE = {
    "GREENLIGHT_TABLE": "t",
    "GREENLIGHT_IDEMPOTENCY_TABLE": "i",
    "GREENLIGHT_CONFIG_BUCKET": "b",
    "GREENLIGHT_GATE_QUEUE_URL": "q",
    "GREENLIGHT_CLUSTER_MODE": "eks",
    "GREENLIGHT_EKS_CLUSTER": "prod",
    "GREENLIGHT_APP_NAMESPACES": "shop,blog",
}


def test_settings_from_env():
    settings = RolloutSettings.from_env(BASE)
    assert settings.config_key == "config/apps.yaml"
    assert settings.cluster.eks_cluster == "prod"
    assert settings.gate_delay_seconds == 5 and settings.dry_run is False
    assert settings.cluster.app_namespaces == ("shop", "blog")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"GREENLIGHT_TABLE": ""}, "GREENLIGHT_TABLE is required"),
        ({"GREENLIGHT_CLUSTER_MODE": "kubeconfig"}, "GREENLIGHT_KUBECONFIG_SECRET is required"),
        ({"GREENLIGHT_CLUSTER_MODE": "gke"}, "expected 'eks' or 'kubeconfig'"),
        ({"GREENLIGHT_GATE_DELAY_SECONDS": "1000"}, r"expected 0\.\.900"),
        ({"GREENLIGHT_GATE_DELAY_SECONDS": "soon"}, "expected an integer"),
        ({"GREENLIGHT_DRY_RUN": "maybe"}, "expected true or false"),
    ],
)
def test_bad_settings_name_the_variable(change, message):
    with pytest.raises(SettingsError, match=message):
        RolloutSettings.from_env({**BASE, **change})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("shop", ("shop",)),
        (" shop , blog ,shop,", ("shop", "blog")),
        ("default", ("default",)),
    ],
)
def test_app_namespaces_are_a_comma_separated_list(raw, expected):
    settings = RolloutSettings.from_env({**BASE, "GREENLIGHT_APP_NAMESPACES": raw})
    assert settings.cluster.app_namespaces == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "GREENLIGHT_APP_NAMESPACES is required"),
        ("", "GREENLIGHT_APP_NAMESPACES is required"),
        ("shop,kube-system", "GREENLIGHT_APP_NAMESPACES: 'kube-system': kube-\\* namespaces"),
        ("shop,Blog", "GREENLIGHT_APP_NAMESPACES: 'Blog': a DNS-1123 label"),
        (" , ", "GREENLIGHT_APP_NAMESPACES: no namespace in ','"),
    ],
)
def test_app_namespaces_are_required_and_never_kube(raw, message):
    env = {k: v for k, v in BASE.items() if k != "GREENLIGHT_APP_NAMESPACES"}
    if raw is not None:
        env["GREENLIGHT_APP_NAMESPACES"] = raw
    with pytest.raises(SettingsError, match=message):
        RolloutSettings.from_env(env)
