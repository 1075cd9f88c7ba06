"""What each function imports at cold start, checked in a fresh interpreter.

The heavy packages wait for their first use: pydantic and PyYAML for the apps file
(``AppsSource.load``), the kubernetes client for the first cluster call. A module-level import
that pulls one of them back into a handler's init fails here (the figures are in ``make bench``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFERRED = ("pydantic", "yaml", "kubernetes", "jinja2")

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
__import__(sys.argv[2])
if sys.argv[3] == "load":
    from greenlight.appsource import AppsSource
    class Body:
        def read(self, size=-1):
            return open(sys.argv[4], "rb").read(size)
    class S3:
        def get_object(self, **_):
            return {"ETag": "x", "Body": Body()}
    AppsSource(S3(), "bucket", "apps.yaml", ("shop", "blog")).load()
print(json.dumps(sorted(sys.modules)))
"""


def _imported(function: str, module: str, *, load: bool = False) -> set[str]:
    return {name.split(".")[0] for name in _modules(function, module, load=load)} & set(DEFERRED)


def _modules(function: str, module: str, *, load: bool = False) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers/greenlight")}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            str(ROOT / "functions" / function),
            module,
            "load" if load else "-",
            str(ROOT / "config/sandbox-apps.yaml"),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(json.loads(out))


@pytest.mark.parametrize(
    ("function", "module", "allowed"),
    [
        ("rollout", "app", set()),
        ("rollout", "webhook", set()),
        ("gate", "app", set()),
        ("night", "app", set()),
        # Powertools' metrics module comes with its Logger: the EMF writer adds nothing here.
        ("announce", "app", set()),
        ("notify", "app", set()),
        # The haproxy function renders and validates a snapshot on every invoke.
        ("haproxy", "app", {"pydantic", "jinja2"}),
    ],
)
def test_heavy_packages_wait_for_their_first_use(function, module, allowed):
    assert _imported(function, module) - allowed == set()


def test_the_haproxy_function_builds_the_apps_file_models_only_when_it_loads_the_file():
    # Its snapshot models share the apps file's rules (greenlight.validate), not its models:
    # building those costs about 90 ms, paid by the first apps-file load.
    assert "greenlight.appconfig" not in _modules("haproxy", "app")
    assert "greenlight.validate" in _modules("haproxy", "app")


def test_the_first_apps_file_load_brings_pydantic_and_yaml():
    assert _imported("rollout", "app", load=True) == {"pydantic", "yaml"}


def test_the_notifier_imports_rsa_only_for_github_app_auth():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers/greenlight")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "functions/notify"), "app", "-", "-"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    imported = {name.split(".")[0] for name in json.loads(out)}
    assert not {"rsa", "pyasn1", "jwt"} & imported
    # botocore's urllib3 brings cryptography only through pyOpenSSL (a dev dependency here,
    # not in the layer): never through greenlight.
    assert "cryptography" not in imported or "OpenSSL" in imported
