"""Loading the Lambda handlers under functions/ and invoking them locally."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .context import LambdaContext

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS: dict[str, tuple[str, str]] = {
    "rollout": ("functions/rollout/app.py", "handler"),
    "github-webhook": ("functions/rollout/webhook.py", "handler"),
    "haproxy": ("functions/haproxy/app.py", "handler"),
    "gate": ("functions/gate/app.py", "handler"),
    "night": ("functions/night/app.py", "handler"),
    "announce": ("functions/announce/app.py", "handler"),
    "notify": ("functions/notify/app.py", "handler"),
}


def load(name: str) -> ModuleType:
    """A fresh copy of a function's module (its warm state starts empty)."""
    if name not in FUNCTIONS:
        raise KeyError(f"unknown function {name!r}; known: {', '.join(sorted(FUNCTIONS))}")
    path = ROOT / FUNCTIONS[name][0]
    spec = importlib.util.spec_from_file_location(f"greenlight_fn_{name.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    _own_environment(name, module)
    return module


def _own_environment(name: str, module: ModuleType) -> None:
    """In the sandbox a function that talks to the cluster builds its runtime (on first use, as
    before) with its own kubeconfig secret, as Lambda gives each function its own environment
    (resources.function_env). Outside the sandbox nothing changes."""
    from greenlight.handler import Lazy

    from .resources import function_env
    from .sandbox import environment

    inner = getattr(module, "runtime", None)
    if not isinstance(inner, Lazy):
        return
    runtime: Lazy[Any] = inner

    def build() -> Any:
        own = function_env(name, os.environ)
        changed = {k: v for k, v in own.items() if os.environ.get(k) != v}
        with environment(changed):
            return runtime.get()

    module.runtime = Lazy(build)  # type: ignore[attr-defined]


def handler(name: str) -> Callable[[Any, Any], Any]:
    fn: Callable[[Any, Any], Any] = getattr(load(name), FUNCTIONS[name][1])
    return fn


def invoke(name: str, event: Any, *, timeout_seconds: float = 300.0) -> Any:
    return handler(name)(
        event, LambdaContext(function_name=f"greenlight-{name}", timeout_seconds=timeout_seconds)
    )
