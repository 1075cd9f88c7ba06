"""Trim the layer that `sam build` made, in place: what Greenlight never imports.

- kubernetes' asyncio client (`kubernetes/aio`, about 40 MB) and its tests, with the aiohttp
  stack that only the asyncio client uses;
- boto3/botocore/s3transfer, which the python3.12 Lambda runtime provides (aws-xray-sdk pulls
  in a second botocore);
- `future`/`past`, which nothing in the layer imports;
- the docstrings of kubernetes' generated API classes (half of their 23 MB), exactly what
  `python -OO` drops: code, annotations and pydantic field descriptions are kept.

kubernetes' generated API and model modules are then kept as .pyc only, and the rest compiled
to .pyc as well (Lambda cannot write them to /opt at run time). Run it
with the runtime's Python minor version (3.12), which `make build` does.

Usage: python scripts/prune_layer.py .aws-sam/build/GreenlightLayer
"""

from __future__ import annotations

import ast
import compileall
import json
import re
import shutil
import sys
from pathlib import Path

REMOVE_PACKAGES = (
    "aiohttp",
    "aiohttp_retry",
    "aiosignal",
    "aiohappyeyeballs",
    "multidict",
    "frozenlist",
    "propcache",
    "yarl",
    "attr",
    "attrs",
    "boto3",
    "botocore",
    "s3transfer",
    "future",
    "past",
    "libfuturize",
    "libpasteurize",
)
REMOVE_PATHS = (
    "kubernetes/aio",
    "kubernetes/test",
    "kubernetes/utils/retry_test.py",
    "kubernetes/utils/keepalive_test.py",
)


def _dist_name(dist_info: Path) -> str:
    return re.sub(r"[-_.]+", "_", dist_info.name.split("-")[0]).lower()


STRIP_DOCSTRINGS = ("kubernetes/client/api",)
SOURCELESS = ("kubernetes/client/api", "kubernetes/client/models")


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def strip_docstrings(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and _is_docstring(node.body[0])
        ):
            node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree) + "\n"


def size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _unwanted(path: Path, wanted: set[str]) -> bool:
    if path.name.endswith((".dist-info", ".data")):
        return _dist_name(path) in wanted
    return re.sub(r"[-_.]+", "_", path.name.removesuffix(".py")).lower() in wanted


def prune(layer: Path) -> tuple[int, int]:
    site = layer / "python"
    if not site.is_dir():
        raise SystemExit(f"prune_layer: {site} is not a built layer")
    before = size(layer)
    wanted = {re.sub(r"[-_.]+", "_", n).lower() for n in REMOVE_PACKAGES}
    for path in [p for p in site.iterdir() if _unwanted(p, wanted)]:
        _remove(path)
    for rel in REMOVE_PATHS:
        _remove(site / rel)
    for rel in STRIP_DOCSTRINGS:
        for source in (site / rel).glob("*.py"):
            source.write_text(strip_docstrings(source.read_text()))
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache)
    # Lambda cannot write to /opt: without .pyc files every cold start compiles the sources.
    # kubernetes' generated API and model modules ship as sourceless .pyc (legacy layout, next
    # to where the .py was): 20 MB less, and they are generated code nobody steps through.
    for rel in SOURCELESS:
        compileall.compile_dir(site / rel, quiet=1, legacy=True, workers=0)
        for source in (site / rel).glob("*.py"):
            source.unlink()
    compileall.compile_dir(site, quiet=1, workers=0)
    return before, size(layer)


if __name__ == "__main__":
    layer_dir = Path(sys.argv[1])
    before, after = prune(layer_dir)
    # Kept beside the layer for the benchmark, which reports both figures.
    layer_dir.with_name(layer_dir.name + ".size.json").write_text(
        json.dumps({"built_bytes": before, "pruned_bytes": after})
    )
    print(f"layer pruned: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB unzipped")
