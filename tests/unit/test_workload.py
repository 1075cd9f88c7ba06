import copy

import pytest

from greenlight.appconfig import parse_apps
from greenlight.colour import Colour
from greenlight.errors import PermanentError
from greenlight.rollout.workload import candidate_deployment, candidate_service
from tests.unit.test_appconfig import SANDBOX_APPS

APP = parse_apps(SANDBOX_APPS).app("shop")
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop-web:abc"


def live_blue():
    return {
        "metadata": {"name": "shop-blue", "namespace": "shop"},
        "spec": {
            "replicas": 5,
            "selector": {
                "matchLabels": {"app.kubernetes.io/name": "shop", "greenlight.io/colour": "blue"}
            },
            "template": {
                "metadata": {
                    "labels": {
                        "app.kubernetes.io/name": "shop",
                        "greenlight.io/colour": "blue",
                        "team": "payments",
                        "pod-template-hash": "abc",
                    },
                    "creationTimestamp": None,
                },
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "old",
                            "env": [{"name": "MODE", "value": "prod"}],
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 9090}},
                        },
                        {"name": "sidecar", "image": "envoy:1"},
                    ]
                },
            },
        },
    }


def test_candidate_clones_the_live_template_with_the_new_image():
    live = live_blue()
    body = candidate_deployment(
        APP,
        colour=Colour.GREEN,
        image=IMAGE,
        version="c" * 40,
        rollout_id="r1",
        live=copy.deepcopy(live),
    )
    assert body["metadata"]["name"] == "shop-green"
    assert body["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "shop",
        "greenlight.io/colour": "green",
    }
    template = body["spec"]["template"]
    assert template["metadata"]["labels"] == {
        "app.kubernetes.io/name": "shop",
        "greenlight.io/colour": "green",
        "team": "payments",
    }
    web, sidecar = template["spec"]["containers"]
    assert web["image"] == IMAGE and web["env"] == [{"name": "MODE", "value": "prod"}]
    assert web["readinessProbe"]["httpGet"]["path"] == "/ready"  # the team's probe is kept
    assert sidecar["image"] == "envoy:1"
    assert body["spec"]["replicas"] == 5  # never fewer than live: it must carry live's load
    assert template["metadata"]["annotations"]["greenlight.io/commit"] == "c" * 40
    assert live == live_blue()  # the live object is not modified


def test_first_deploy_is_bootstrapped_from_config():
    body = candidate_deployment(
        APP, colour=Colour.GREEN, image=IMAGE, version="v", rollout_id="r1", live=None
    )
    (container,) = body["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "web" and container["image"] == IMAGE
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    assert body["spec"]["replicas"] == 2
    assert body["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_missing_container_is_a_permanent_error():
    live = live_blue()
    live["spec"]["template"]["spec"]["containers"][0]["name"] = "api"
    with pytest.raises(PermanentError, match="container 'web' not in the live pod template"):
        candidate_deployment(
            APP, colour=Colour.GREEN, image=IMAGE, version="v", rollout_id="r", live=live
        )


def test_service_is_a_nodeport_on_the_slot():
    svc = candidate_service(APP, colour=Colour.BLUE)
    assert svc["metadata"]["name"] == "shop-blue"
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["selector"]["greenlight.io/colour"] == "blue"
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
    ]


def test_colour_other():
    assert Colour.BLUE.other is Colour.GREEN and Colour.GREEN.other is Colour.BLUE
