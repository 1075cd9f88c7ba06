"""The night function's settings and cold start: what it needs, and nothing built too early."""

from __future__ import annotations

import pytest

from greenlight.errors import SettingsError
from greenlight.night.entry import NightRuntime
from greenlight.settings import NightFunctionSettings

ENV = {
    "GREENLIGHT_TABLE": "t",
    "GREENLIGHT_CONFIG_BUCKET": "b",
    "GREENLIGHT_EDGE_FUNCTION": "haproxy",
    "GREENLIGHT_NIGHT_GROUP": "workers",
    "GREENLIGHT_NIGHT_TIME_ZONE": "Europe/Amsterdam",
    "GREENLIGHT_CLUSTER_MODE": "eks",
    "GREENLIGHT_EKS_CLUSTER": "prod",
    "GREENLIGHT_APP_NAMESPACES": "shop",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


def test_missing_settings_are_named():
    with pytest.raises(SettingsError, match="GREENLIGHT_NIGHT_GROUP, GREENLIGHT_NIGHT_TIME_ZONE"):
        NightFunctionSettings.from_env({k: v for k, v in ENV.items() if "NIGHT" not in k})


def test_cluster_access_waits_for_the_first_use(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    calls = []
    monkeypatch.setattr(
        "greenlight.night.entry.api_client", lambda *a, **k: calls.append(a) or object()
    )
    runtime = NightRuntime.build(NightFunctionSettings.from_env())
    assert calls == []  # no DescribeCluster at cold start
    assert runtime.deps.kube.api is runtime.deps.kube.api and len(calls) == 1
