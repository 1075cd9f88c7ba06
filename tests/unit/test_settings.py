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
}


def test_settings_from_env():
    settings = RolloutSettings.from_env(BASE)
    assert settings.config_key == "config/apps.yaml"
    assert settings.cluster.eks_cluster == "prod"
    assert settings.gate_delay_seconds == 5 and settings.dry_run is False


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
