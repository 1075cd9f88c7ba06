"""Kubeconfig documents for the stand-in: what kubectl and Greenlight's kubeconfig mode read."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml


def kubeconfig(
    server: str,
    token: str,
    *,
    ca_pem: bytes | None = None,
    cluster: str = "sandbox",
    user: str = "greenlight",
) -> str:
    """A kubeconfig (YAML) for ``server`` with a bearer ``token``, trusting ``ca_pem`` (the
    stand-in's CA) when given (``certificate-authority-data``, as kubectl and the Python client
    read it)."""
    entry: dict[str, object] = {"server": server}
    if ca_pem is not None:
        entry["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": cluster,
            "clusters": [{"name": cluster, "cluster": entry}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        }
    )


def write_private(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by its owner only (0600), replacing any file there."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return target
