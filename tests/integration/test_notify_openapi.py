"""Every request the notifier sends to GitHub, checked against GitHub's own description of its
REST API (the npm package @octokit/openapi, installed by scripts/ensure-github-openapi) with
openapi-core: the path and method must exist, the body must match the request body's schema.

The document (13 MB) is read once per session; its own validation against the OpenAPI
meta-schema is skipped (slow, and GitHub checks it upstream), request validation is not."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from greenlight_sandbox.github_api import GitHubStandIn, Recorded

from .test_notify import OLD_RID, OLD_SHA, TOKEN, World, detail

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / ".greenlight/npm/node_modules/@octokit/openapi/generated/api.github.com.json"
GITHUB = "https://api.github.com"


@pytest.fixture(scope="session")
def github_openapi() -> Any:
    from openapi_core import OpenAPI
    from openapi_core.app import Config

    if not SPEC.exists():  # `make test` installs it first; a lone pytest run does it here
        subprocess.run([str(ROOT / "scripts/ensure-github-openapi")], check=True)
    spec = json.loads(SPEC.read_text())
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


def refusal(api: Any, method: str, path: str, body: Any) -> str | None:
    """Why GitHub's description refuses the request; None when it matches."""
    from openapi_core.testing import MockRequest

    request = MockRequest(
        GITHUB,
        method.lower(),
        path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"} if body is not None else {},
    )
    try:
        api.validate_request(request)
    except Exception as exc:  # every kind of refusal: path, method, body
        cause = exc.__cause__ or exc
        return f"{type(exc).__name__}: {cause}"
    return None


def check(api: Any, recorded: list[Recorded]) -> None:
    assert recorded, "no request was sent"
    problems = [
        f"{r.method} {r.path}: {why}"
        for r in recorded
        if (why := refusal(api, r.method, r.path, r.body)) is not None
    ]
    assert problems == []


def test_the_validator_refuses_what_github_would(github_openapi):
    sha = "0123456789abcdef0123456789abcdef01234567"
    ok = {"state": "success", "context": "greenlight/shop", "description": "Live"}
    assert refusal(github_openapi, "POST", f"/repos/acme/shop/statuses/{sha}", ok) is None
    bogus = {**ok, "state": "bogus"}
    assert "bogus" in str(
        refusal(github_openapi, "POST", f"/repos/acme/shop/statuses/{sha}", bogus)
    )
    assert refusal(github_openapi, "POST", "/repos/acme/shop/deployments", {"environment": "x"})
    assert refusal(github_openapi, "PUT", f"/repos/acme/shop/statuses/{sha}", ok)  # no such method
    assert refusal(github_openapi, "POST", "/repos/acme/shop/deployment", {"ref": sha})  # no path
    assert refusal(
        github_openapi, "POST", "/repos/acme/shop/deployments/7/statuses", {"state": "done"}
    )


def test_every_request_of_a_rollouts_life_matches_githubs_description(aws, github_openapi):
    with GitHubStandIn(tokens={TOKEN}) as api:
        world = World(aws, api, {"token": TOKEN})
        world.run(
            detail("deploying", 0, rid=OLD_RID, sha=OLD_SHA),
            detail("live", 1, rid=OLD_RID, sha=OLD_SHA),
        )
        world.run(
            detail("deploying", 0),
            detail("gating", 1),
            detail("awaiting_approval", 2),
            detail("promoting", 3),
            detail("watching", 4),
            detail("live", 5),
            detail("settled", 6),
        )
        world.run(
            detail("deploying", 0, rid="1795684600000-v3", sha="ab" * 20),
            detail("rolled_back", 1, rid="1795684600000-v3", sha="ab" * 20, reason="x" * 300),
        )
        sent = api.requests()
    kinds = {(r.method, r.path.split("/")[-1]) for r in sent}
    assert kinds >= {("POST", "deployments"), ("POST", "statuses")}
    assert {r.body["state"] for r in sent if "/deployments/" in r.path} >= {
        "queued", "in_progress", "success", "failure", "inactive",
    }  # fmt: skip
    check(github_openapi, sent)


def test_the_app_token_exchange_matches_githubs_description(github_openapi):
    # the exchange sends no body: POST /app/installations/{installation_id}/access_tokens
    assert refusal(github_openapi, "POST", "/app/installations/678/access_tokens", None) is None
