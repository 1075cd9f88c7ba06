"""The Kubernetes stand-in, driven through the official client as Greenlight drives it."""

from __future__ import annotations

import json

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from greenlight_sandbox.kube import KubeStandIn
from greenlight_sandbox.kube.cluster import pod_ready
from greenlight_sandbox.kube.errors import ApiError
from greenlight_sandbox.kube.kinds import kind_named
from tests.conftest import KUBE_TOKEN


@pytest.fixture
def api(kube_api):
    return kube_api


@pytest.fixture
def apps(api):
    return k8s.AppsV1Api(api)


@pytest.fixture
def core(api):
    return k8s.CoreV1Api(api)


def deployment(name="web", replicas=2, image="web:1", labels=None, cpu="100m"):
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "c", "image": image, "resources": {"requests": {"cpu": cpu}}}
                    ]
                },
            },
        },
    }


def status_of(exc):
    return json.loads(exc.body)


def test_requests_without_the_token_are_refused(kube):
    configuration = k8s.Configuration()
    configuration.host = kube.url
    configuration.ssl_ca_cert = kube.ca_file
    with k8s.ApiClient(configuration) as api_client, pytest.raises(ApiException) as caught:
        k8s.CoreV1Api(api_client).list_node()
    assert caught.value.status == 401


def test_create_sets_generation_uid_and_a_string_resource_version(apps):
    created = apps.create_namespaced_deployment("shop", deployment())
    assert created.metadata.generation == 1
    assert created.metadata.uid and isinstance(created.metadata.resource_version, str)
    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment("shop", deployment())
    assert caught.value.status == 409 and status_of(caught.value)["reason"] == "AlreadyExists"
    assert status_of(caught.value)["message"] == 'deployments.apps "web" already exists'


def test_stale_resource_version_is_a_409_conflict(core):
    # A Service: no controller writes it, so its resourceVersion moves only with this test.
    svc = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    created = core.create_namespaced_service("shop", svc)
    body = {
        "metadata": {"name": "web", "resourceVersion": created.metadata.resource_version},
        "spec": {"ports": [{"port": 81}]},
    }
    core.replace_namespaced_service("web", "shop", body)
    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_service("web", "shop", body)  # same, now stale, version
    assert caught.value.status == 409
    body_json = status_of(caught.value)
    assert body_json["reason"] == "Conflict"
    assert "the object has been modified" in body_json["message"]
    assert body_json["details"] == {"name": "web", "kind": "services"}  # core: no group


def test_no_op_write_keeps_the_resource_version(apps, kube):
    apps.create_namespaced_deployment("shop", deployment())
    kube.wait_for(
        lambda: kube.cluster.find("deployments", "shop", "web")["status"].get("readyReplicas") == 2
    )
    with kube.cluster.lock:
        kube.controllers.tick()
        before = kube.cluster.find("deployments", "shop", "web")["metadata"]["resourceVersion"]
        kube.cluster.replace(kind_named("deployments"), "shop", "web", deployment())
        after = kube.cluster.find("deployments", "shop", "web")["metadata"]["resourceVersion"]
    assert before == after


def test_generation_follows_spec_and_annotations_not_labels(apps):
    apps.create_namespaced_deployment("shop", deployment())
    labelled = apps.patch_namespaced_deployment(
        "web", "shop", {"metadata": {"labels": {"tier": "x"}}}
    )
    assert labelled.metadata.generation == 1
    annotated = apps.patch_namespaced_deployment(
        "web", "shop", {"metadata": {"annotations": {"a": "b"}}}
    )
    assert annotated.metadata.generation == 2
    scaled = apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": 4}})
    assert scaled.metadata.generation == 3


def test_status_writes_keep_spec_and_generation(apps):
    apps.create_namespaced_deployment("shop", deployment())
    current = apps.read_namespaced_deployment("web", "shop")
    body = k8s.ApiClient().sanitize_for_serialization(current)
    body["spec"]["replicas"] = 9
    body["status"] = {"observedGeneration": 7}
    # Unconditional (the controller keeps writing status, so a read version goes stale).
    del body["metadata"]["resourceVersion"]
    written = apps.replace_namespaced_deployment_status("web", "shop", body)
    assert written.spec.replicas == 2 and written.metadata.generation == 1
    assert written.status.observed_generation == 7


def raw(kube, method, path, body):
    import urllib3

    response = urllib3.PoolManager(ca_certs=kube.ca_file).request(
        method,
        kube.url + path,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KUBE_TOKEN}"},
    )
    return response.status, json.loads(response.data)


def test_invalid_bodies_are_422_with_the_field(apps, core, kube):
    bad = deployment()
    bad["spec"]["replicas"] = "two"  # the typed client would refuse to send this: go raw
    code, status = raw(kube, "POST", "/apis/apps/v1/namespaces/shop/deployments", bad)
    assert code == 422 and status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "spec.replicas"
    assert status["message"].startswith('Deployment.apps "web" is invalid: spec.replicas:')

    mismatch = deployment()
    mismatch["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment("shop", mismatch)
    assert "`selector` does not match template `labels`" in status_of(caught.value)["message"]

    code, status = raw(
        kube,
        "POST",
        "/api/v1/namespaces/shop/services",
        {"metadata": {"name": "s"}, "spec": {"ports": [{"port": "eighty"}]}},
    )
    assert code == 422 and status["details"]["causes"][0]["field"] == "spec.ports[0].port"
    code, status = raw(
        kube,
        "POST",
        "/api/v1/namespaces/shop/services",
        {"metadata": {"name": "s"}, "spec": {"portz": []}},
    )
    assert code == 422  # strict schema: unknown fields are refused


def test_selector_is_immutable(apps):
    apps.create_namespaced_deployment("shop", deployment())
    changed = deployment(labels={"app": "web", "v": "2"})
    with pytest.raises(ApiException) as caught:
        apps.replace_namespaced_deployment("web", "shop", changed)
    status = status_of(caught.value)
    assert caught.value.status == 422
    assert any(
        c["field"] == "spec.selector" and "field is immutable" in c["message"]
        for c in status["details"]["causes"]
    )


def test_strategic_merge_patch_merges_containers_by_name(apps):
    body = deployment()
    body["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "s:1"})
    apps.create_namespaced_deployment("shop", body)
    patched = apps.patch_namespaced_deployment(
        "web",
        "shop",
        {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "web:2"}]}}}},
    )
    images = {c.name: c.image for c in patched.spec.template.spec.containers}
    assert images == {"c": "web:2", "side": "s:1"}
    merged = apps.patch_namespaced_deployment(
        "web",
        "shop",
        {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "web:3"}]}}}},
        _content_type="application/merge-patch+json",
    )
    assert [c.name for c in merged.spec.template.spec.containers] == ["c"]


def test_patch_with_a_stale_resource_version_conflicts(apps):
    apps.create_namespaced_deployment("shop", deployment())
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment(
            "web", "shop", {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 1}}
        )
    assert caught.value.status == 409


def test_patch_of_a_missing_object_is_404(apps):
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment("nope", "shop", {"spec": {"replicas": 1}})
    assert caught.value.status == 404
    assert status_of(caught.value)["message"] == 'deployments.apps "nope" not found'


def test_label_selectors_including_not_equal_matching_missing_keys(core, apps, kube):
    apps.create_namespaced_deployment(
        "shop", deployment("a", 1, labels={"app": "a", "tier": "web"})
    )
    apps.create_namespaced_deployment("shop", deployment("b", 1, labels={"app": "b"}))
    kube.wait_for(lambda: len(kube.cluster.items("pods", "shop")) == 2)

    def names(selector):
        return sorted(
            p.metadata.labels["app"]
            for p in core.list_namespaced_pod("shop", label_selector=selector).items
        )

    assert names("tier!=web") == ["b"]
    assert names("app in (a,b),tier") == ["a"]
    assert names("app notin (a)") == ["b"]
    assert names("!tier") == ["b"]
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_pod("shop", label_selector="app in (a")
    assert caught.value.status == 400


def test_field_selectors_and_unsupported_fields(core, apps, kube):
    apps.create_namespaced_deployment("shop", deployment(replicas=3))
    assert kube.wait_for(
        lambda: (
            len(kube.cluster.items("pods")) == 3
            and all(p["spec"].get("nodeName") for p in kube.cluster.items("pods"))
        )
    )
    node = core.list_namespaced_pod("shop").items[0].spec.node_name
    on_node = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    assert on_node and all(p.spec.node_name == node for p in on_node)
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_pod("shop", field_selector="spec.image=x")
    assert caught.value.status == 400
    assert status_of(caught.value)["message"] == "field label not supported: spec.image"


def test_lists_have_items_without_kind(core, kube):
    assert core.list_namespaced_service("shop").items == []
    core.create_namespaced_service(
        "shop", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    )
    with kube.cluster.lock:
        from greenlight_sandbox.kube.selectors import parse_fields, parse_labels

        listed = kube.cluster.list(
            kind_named("services"),
            "shop",
            labels=parse_labels(None),
            fields=parse_fields(None, "services"),
        )
    assert listed["kind"] == "ServiceList" and listed["metadata"]["resourceVersion"]
    assert [set(item) & {"kind", "apiVersion"} for item in listed["items"]] == [set()]


def test_node_ports_are_allocated_kept_and_unique(core):
    svc = {
        "metadata": {"name": "a"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "a"},
            "ports": [{"port": 80, "targetPort": 8080}],
        },
    }
    first = core.create_namespaced_service("shop", svc).spec.ports[0].node_port
    assert 30000 <= first <= 32767
    replaced = core.replace_namespaced_service("a", "shop", svc)  # no nodePort sent: kept
    assert replaced.spec.ports[0].node_port == first
    taken = {
        "metadata": {"name": "b"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": first}]},
    }
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_service("shop", taken)
    cause = status_of(caught.value)["details"]["causes"][0]
    assert cause["field"] == "spec.ports[0].nodePort"
    assert cause["message"] == f"Invalid value: {first}: provided port is already allocated"
    out_of_range = {
        "metadata": {"name": "c"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]},
    }
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_service("shop", out_of_range)
    assert "not in the valid range" in status_of(caught.value)["message"]


def test_deployment_becomes_available_like_kubectl_rollout_status(apps, kube):
    apps.create_namespaced_deployment("shop", deployment(replicas=3))
    assert kube.wait_for(
        lambda: (
            kube.cluster.find("deployments", "shop", "web")["status"].get("availableReplicas") == 3
        )
    )
    status = apps.read_namespaced_deployment_status("web", "shop").status
    assert status.observed_generation == 1
    assert (status.replicas, status.updated_replicas, status.ready_replicas) == (3, 3, 3)
    conditions = {c.type: (c.status, c.reason) for c in status.conditions}
    assert conditions == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }


def test_zero_counts_are_omitted(apps, kube):
    apps.create_namespaced_deployment("shop", deployment(replicas=0))
    kube.wait_for(
        lambda: "observedGeneration" in kube.cluster.find("deployments", "shop", "web")["status"]
    )
    raw = kube.cluster.find("deployments", "shop", "web")["status"]
    assert "replicas" not in raw and "readyReplicas" not in raw


@pytest.mark.parametrize(
    ("behaviour", "waiting", "phase"),
    [
        ("crashloop", "CrashLoopBackOff", "Running"),
        ("oom", "CrashLoopBackOff", "Running"),
        ("imagepull", None, "Pending"),
    ],
)
def test_failing_pods_look_as_the_kubelet_reports_them(apps, core, kube, behaviour, waiting, phase):
    kube.set_behaviour("web:bad", behaviour)
    apps.create_namespaced_deployment("shop", deployment(image="web:bad", replicas=1))

    def restarted_or_pulling():
        pods = kube.cluster.items("pods", "shop")
        statuses = pods[0]["status"].get("containerStatuses", []) if pods else []
        return bool(statuses) and (statuses[0]["restartCount"] > 0 or behaviour == "imagepull")

    assert kube.wait_for(restarted_or_pulling)
    pod = core.list_namespaced_pod("shop").items[0]
    assert pod.status.phase == phase
    state = pod.status.container_statuses[0]
    assert not state.ready
    if waiting:
        assert state.state.waiting.reason == waiting
        assert state.last_state.terminated.exit_code == (137 if behaviour == "oom" else 1)
        assert state.last_state.terminated.reason == (
            "OOMKilled" if behaviour == "oom" else "Error"
        )
    else:
        assert state.state.waiting.reason in ("ErrImagePull", "ImagePullBackOff")
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "ContainersNotReady")


def test_progress_deadline_exceeded_for_a_never_ready_deployment(apps, kube):
    kube.set_behaviour("web:slow", "never-ready")
    body = deployment(image="web:slow", replicas=1)
    body["spec"]["progressDeadlineSeconds"] = 1
    apps.create_namespaced_deployment("shop", body)

    def exceeded():
        conditions = kube.cluster.find("deployments", "shop", "web")["status"].get("conditions", [])
        return any(c["reason"] == "ProgressDeadlineExceeded" for c in conditions)

    assert kube.wait_for(exceeded, timeout=5)


def test_scheduler_respects_cordons_and_capacity(apps, core, kube):
    core.patch_node("worker-1", {"spec": {"unschedulable": True}})
    core.patch_node("worker-2", {"spec": {"unschedulable": True}})
    # worker-3 has 2 CPUs: three pods of 800m cannot all fit.
    apps.create_namespaced_deployment("shop", deployment(replicas=3, cpu="800m"))
    kube.wait_for(
        lambda: sum(1 for p in kube.cluster.items("pods", "shop") if p["spec"].get("nodeName")) == 2
    )
    pods = core.list_namespaced_pod("shop").items
    placed = [p for p in pods if p.spec.node_name]
    assert {p.spec.node_name for p in placed} == {"worker-3"} and len(placed) == 2
    pending = next(p for p in pods if not p.spec.node_name)
    scheduled = next(c for c in pending.status.conditions if c.type == "PodScheduled")
    assert scheduled.reason == "Unschedulable"
    assert "2 node(s) were unschedulable" in scheduled.message
    assert "1 Insufficient cpu" in scheduled.message
    uncordoned = core.patch_node("worker-1", {"spec": {"unschedulable": None}})
    assert uncordoned.spec.unschedulable is None
    assert kube.wait_for(
        lambda: all(p["spec"].get("nodeName") for p in kube.cluster.items("pods", "shop"))
    )


def test_eviction_respects_the_disruption_budget(apps, core, kube):
    apps.create_namespaced_deployment("shop", deployment(replicas=2))
    k8s.PolicyV1Api(core.api_client).create_namespaced_pod_disruption_budget(
        "shop",
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
        },
    )
    assert kube.wait_for(
        lambda: (
            kube.cluster.find("poddisruptionbudgets", "shop", "web")["status"].get("currentHealthy")
            == 2
        )
    )
    pod = core.list_namespaced_pod("shop").items[0].metadata.name
    eviction = {"metadata": {"name": pod, "namespace": "shop"}}
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod_eviction(pod, "shop", eviction)
    status = status_of(caught.value)
    assert caught.value.status == 429 and status["reason"] == "TooManyRequests"
    assert status["details"]["causes"][0]["reason"] == "DisruptionBudget"
    assert "Retry-After" not in caught.value.headers

    kube.set_behaviour("web:1", "ready", ready_after=60)  # replacements stay unready
    k8s.PolicyV1Api(core.api_client).patch_namespaced_pod_disruption_budget(
        "web", "shop", {"spec": {"minAvailable": 1}}
    )
    assert kube.wait_for(
        lambda: (
            kube.cluster.find("poddisruptionbudgets", "shop", "web")["status"].get(
                "disruptionsAllowed"
            )
            == 1
        )
    )
    evicted = core.create_namespaced_pod_eviction(pod, "shop", eviction)
    assert isinstance(evicted, k8s.V1Eviction)
    terminating = core.read_namespaced_pod(pod, "shop")
    assert terminating.metadata.deletion_timestamp is not None
    assert any(c.type == "DisruptionTarget" for c in terminating.status.conditions)
    other = next(
        p.metadata.name
        for p in core.list_namespaced_pod("shop").items
        if p.metadata.name != pod
        and p.status.phase == "Running"
        and p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)
    )
    with pytest.raises(ApiException) as caught:  # spent until a replacement is Ready
        core.create_namespaced_pod_eviction(other, "shop", {"metadata": {"name": other}})
    assert caught.value.status == 429


def test_unobserved_budget_answers_429_with_retry_after(kube, core, apps):
    apps.create_namespaced_deployment("shop", deployment(replicas=1))
    assert kube.wait_for(
        lambda: (
            bool(kube.cluster.items("pods", "shop"))
            and all(pod_ready(p) for p in kube.cluster.items("pods", "shop"))
        )
    )
    with kube.cluster.lock:  # a PDB the controller has not processed yet
        kube.cluster.create(
            kind_named("poddisruptionbudgets"),
            "shop",
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "new"},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}},
            },
        )
        pod = kube.cluster.items("pods", "shop")[0]
        with pytest.raises(ApiError) as caught:
            kube.cluster.evict(
                "shop", pod["metadata"]["name"], {"metadata": {"name": pod["metadata"]["name"]}}
            )
    assert caught.value.code == 429 and caught.value.retry_after == 10
    assert "still being processed" in caught.value.body()["details"]["causes"][0]["message"]


def test_scale_subresource(apps, kube):
    apps.create_namespaced_deployment("shop", deployment(replicas=2))
    scale = apps.read_namespaced_deployment_scale("web", "shop")
    assert scale.spec.replicas == 2 and scale.status.selector == "app=web"
    apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 1}})
    assert apps.read_namespaced_deployment("web", "shop").spec.replicas == 1


def test_delete_returns_status_and_collects_pods(apps, kube):
    apps.create_namespaced_deployment("shop", deployment(replicas=2))
    kube.wait_for(lambda: len(kube.cluster.items("pods", "shop")) == 2)
    result = apps.delete_namespaced_deployment("web", "shop")
    assert result["status"] == "Success" and result["details"]["kind"] == "deployments"
    assert kube.wait_for(lambda: not kube.cluster.items("pods", "shop"), timeout=5)


def test_endpoint_slices_follow_ready_pods(apps, core, kube):
    apps.create_namespaced_deployment("shop", deployment(replicas=2))
    core.create_namespaced_service(
        "shop",
        {
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]},
        },
    )
    discovery = k8s.DiscoveryV1Api(core.api_client)

    def ready_endpoints():
        slices = discovery.list_namespaced_endpoint_slice(
            "shop", label_selector="kubernetes.io/service-name=web"
        ).items
        return [e for s in slices for e in s.endpoints or [] if e.conditions.ready]

    assert kube.wait_for(
        lambda: (
            all(pod_ready(p) for p in kube.cluster.items("pods", "shop"))
            and len(kube.cluster.items("pods", "shop")) == 2
        )
    )
    kube.controllers.tick()
    assert len(ready_endpoints()) == 2


def test_unknown_patch_content_type_is_415(kube, api):
    import urllib3

    http = urllib3.PoolManager(ca_certs=kube.ca_file)
    response = http.request(
        "PATCH",
        f"{kube.url}/apis/apps/v1/namespaces/shop/deployments/x",
        body=b"{}",
        headers={"Content-Type": "text/plain", "Authorization": f"Bearer {KUBE_TOKEN}"},
    )
    assert response.status == 415
    assert json.loads(response.data)["reason"] == "UnsupportedMediaType"


def test_standin_runs_as_a_context_manager_on_a_free_port():
    with KubeStandIn() as one, KubeStandIn() as two:
        assert one.url != two.url
