"""Cold start of each function and the size of the built layer (``make bench``).

Prints, measured side by side in one run:
- the built layer's unzipped size after ``sam build`` and after ``scripts/prune_layer.py``;
- for each function, the median over fresh interpreters of its cold start (imports + init: the
  handler module and the runtime object a first invoke builds) and, separately, what the first
  apps-file load and the first Kubernetes API use import later (both are deferred to their first
  use, so an invoke that needs neither never pays them), next to ``import boto3`` alone.

The arm64 layer that ``sam build`` makes cannot be imported on an x86_64 machine, so the cold
start runs on a replica for this machine: the same pinned requirements installed with ``uv pip
install --target``, pruned by the same script.

``--against REV`` measures the layer and handlers of git revision ``REV`` too, in the same
rounds (probes interleaved), and prints each function's cold init beside it with the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILT = ROOT / ".aws-sam" / "build" / "GreenlightLayer"
RUNS = 11
# The interpreter the venv was made from, without site-packages (-S): like the Lambda runtime,
# it sees only the standard library, the layer and boto3.
PYTHON = getattr(sys, "_base_executable", sys.executable)

FAKE_ENV = {
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "GREENLIGHT_TABLE": "t",
    "GREENLIGHT_IDEMPOTENCY_TABLE": "i",
    "GREENLIGHT_CONFIG_BUCKET": "b",
    "GREENLIGHT_GATE_QUEUE_URL": "https://sqs/q",
    "GREENLIGHT_ROLLOUT_QUEUE_URL": "https://sqs/r.fifo",
    "GREENLIGHT_CLUSTER_MODE": "eks",
    "GREENLIGHT_EKS_CLUSTER": "bench",
    "GREENLIGHT_APP_NAMESPACES": "shop,blog",
    "GREENLIGHT_WEBHOOK_SECRET": "s",
    "GREENLIGHT_EDGE_ENDPOINT": "edge.example.com:443",
    "GREENLIGHT_EDGE_FUNCTION": "haproxy",
    "GREENLIGHT_NIGHT_GROUP": "workers",
    "GREENLIGHT_NIGHT_TIME_ZONE": "Europe/Amsterdam",
    "GREENLIGHT_NOTIFY_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:bench",
    "GREENLIGHT_GITHUB_SECRET": "github",
    "GREENLIGHT_SLACK_SECRET": "slack",
}

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
module_dir, module, build = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, module_dir)
handler_module = __import__(module)
if hasattr(handler_module, "runtime"):  # what a first invoke does: the handler's Lazy runtime
    handler_module.runtime.get()
elif build == "rollout":  # a revision from before the Lazy holder
    from greenlight.rollout.entry import RolloutRuntime
    from greenlight.settings import RolloutSettings
    RolloutRuntime.build(RolloutSettings.from_env())
elif build == "edge":
    from greenlight.edge.entry import EdgeRuntime
    from greenlight.settings import EdgeFunctionSettings
    EdgeRuntime.build(EdgeFunctionSettings.from_env())
elif build == "gate":
    from greenlight.gate.entry import GateRuntime
    from greenlight.settings import GateSettings
    GateRuntime.build(GateSettings.from_env())
elif build == "night":
    from greenlight.night.entry import NightRuntime
    try:
        from greenlight.settings import NightFunctionSettings
    except ImportError:  # a revision from before the night settings moved there
        from greenlight.night.entry import NightFunctionSettings
    NightRuntime.build(NightFunctionSettings.from_env())
elif build == "webhook":
    from greenlight.github import WebhookRuntime
    from greenlight.settings import WebhookSettings
    WebhookRuntime.build(WebhookSettings.from_env())
t1 = time.perf_counter()
# What the first apps-file load imports (greenlight.appsource defers it): pydantic, PyYAML and
# the apps file's models ...
import greenlight.appconfig
t_apps = time.perf_counter()
# ... what the first cluster call imports (greenlight.cluster.rest over ApiClient) ...
import kubernetes.client.api_client, kubernetes.client.exceptions, kubernetes.utils
t2 = time.perf_counter()
# ... and what the typed API classes would add on top (not used by Greenlight).
from kubernetes import client
client.AppsV1Api, client.CoreV1Api
t3 = time.perf_counter()
print(json.dumps({"init": t1 - t0, "apps": t_apps - t1, "kube": t2 - t_apps, "typed": t3 - t2}))
"""


def mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def uv_install(target: Path, *requirements: str) -> None:
    """``uv pip install --target`` for this machine's Python, compiled to bytecode."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "uv",
            "pip",
            "install",
            "--quiet",
            "--compile-bytecode",
            "--target",
            str(target),
            "--python",
            sys.executable,
            *requirements,
        ],
        check=True,
    )


def install_requirements(target: Path) -> None:
    """The layer's pinned requirements, installed for this machine into ``target``."""
    uv_install(target, "-r", str(ROOT / "layers/greenlight/requirements.txt"))


def tree_at(rev: str, workdir: Path) -> Path:
    """The layer's package and the handlers as they are at git revision ``rev``."""
    tree = workdir / f"tree-{rev}"
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "layers/greenlight/greenlight", "functions"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def replica(workdir: Path, source: Path = ROOT) -> Path:
    """The layer's pinned requirements for this machine, pruned like the real one."""
    layer = workdir / "layer"
    site = layer / "python"
    install_requirements(site)
    shutil.copytree(source / "layers/greenlight/greenlight", site / "greenlight")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/prune_layer.py"), str(layer)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return site


_RUNTIME: list[Path] = []


def boto3_path() -> str:
    """boto3 as the Lambda runtime has it: plain, without the CRT extra that the dev venv has
    (botocore imports awscrt when present, which the runtime does not have)."""
    if not _RUNTIME:
        import boto3

        target = Path(tempfile.mkdtemp(prefix="greenlight-runtime-"))
        uv_install(target, f"boto3=={boto3.__version__}")
        _RUNTIME.append(target)
    return str(_RUNTIME[0])


def _probe_once(site: Path, function_dir: Path, module: str, build: str) -> dict[str, float]:
    env = {
        **FAKE_ENV,
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(site), boto3_path()]),
    }
    out = subprocess.run(
        [PYTHON, "-S", "-c", PROBE, str(function_dir), module, build],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


def _boto3_once() -> float:
    """``import boto3`` alone, in the same kind of fresh interpreter: the runtime's share."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": boto3_path()}
    probe = "import time; t = time.perf_counter(); import boto3; print(time.perf_counter() - t)"
    out = subprocess.run(
        [PYTHON, "-S", "-c", probe], env=env, check=True, capture_output=True, text=True
    ).stdout
    return float(out)


Row = tuple[str, Path, Path, str, str]  # name, site, function dir, module, runtime


def measure(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Every probe once per round, RUNS rounds: load on the machine hits all rows alike."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name, *_ in rows}
    samples["boto3"] = {}
    for _ in range(RUNS):
        for name, site, function_dir, module, build in rows:
            for key, value in _probe_once(site, function_dir, module, build).items():
                samples[name].setdefault(key, []).append(value)
        samples["boto3"].setdefault("init", []).append(_boto3_once())
    out = {
        name: {key: statistics.median(values) for key, values in figures.items()}
        for name, figures in samples.items()
    }
    for name, figures in samples.items():  # the least-disturbed run, as timeit reports
        out[name]["init_min"] = min(figures["init"])
    return out


FUNCTIONS = [
    ("rollout", "rollout", "app", "rollout"),
    ("github-webhook", "rollout", "webhook", "webhook"),
    ("haproxy", "haproxy", "app", "edge"),
    ("gate", "gate", "app", "gate"),
    ("night", "night", "app", "night"),
    ("announce", "announce", "app", "announce"),
    ("notify", "notify", "app", "notify"),
]


def _layer_size() -> None:
    sizes = BUILT.with_name(BUILT.name + ".size.json")
    if BUILT.exists() and sizes.exists():
        built = json.loads(sizes.read_text())["built_bytes"] / 1e6
        print(
            f"built layer (sam build, arm64): {built:.1f} MB unzipped; after pruning "
            f"{mb(BUILT):.1f} MB (ratio {mb(BUILT) / built:.2f}; goal <= 50 MB)"
        )
    else:
        print("built layer: run `make build` first for its size")


def _report(figures: dict[str, dict[str, float]], against: str | None) -> None:
    boto3_ms = figures["boto3"]["init"] * 1000
    print(
        f"{'function':16} {'cold init (ms)':>15} {'min (ms)':>9} {'/ boto3 import':>14} "
        f"{'first apps-file load (ms)':>26} {'first k8s use (ms)':>19} "
        f"{'typed API classes would add (ms)':>33}"
        + (f" {'at ' + against + ' (ms)':>18} {'now / then':>10}" if against else "")
    )
    for name, *_ in FUNCTIONS:
        row = figures[name]
        line = (
            f"{name:16} {row['init'] * 1000:15.0f} {row['init_min'] * 1000:9.0f} "
            f"{row['init'] * 1000 / boto3_ms:14.2f} {row['apps'] * 1000:26.0f} "
            f"{row['kube'] * 1000:19.0f} {row['typed'] * 1000:33.0f}"
        )
        if against and f"{name}@{against}" in figures:
            then = figures[f"{name}@{against}"]["init"]
            line += f" {then * 1000:18.0f} {row['init'] / then:10.2f}"
        print(line)
    print(
        f"{'import boto3':16} {boto3_ms:15.0f} {figures['boto3']['init_min'] * 1000:9.0f} {1:14.2f}"
    )
    print(
        f"(medians and minimum of {RUNS} fresh interpreters, probes interleaved; "
        "goal: cold init <= 500 ms)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", metavar="REV", help="also measure git revision REV")
    parser.add_argument(
        "--only",
        metavar="NAME",
        action="append",
        choices=[name for name, *_ in FUNCTIONS],
        help="measure only this function (repeatable)",
    )
    args = parser.parse_args()
    if args.only:
        FUNCTIONS[:] = [f for f in FUNCTIONS if f[0] in args.only]
    print(
        f"machine: {platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} cores"
    )
    _layer_size()
    with tempfile.TemporaryDirectory() as tmp:
        site = replica(Path(tmp))
        raw_site = Path(tmp) / "raw" / "python"
        install_requirements(raw_site)
        print(
            f"replica for this machine: {mb(raw_site):.1f} MB as installed, "
            f"{mb(site.parent):.1f} MB pruned (ratio {mb(site.parent) / mb(raw_site):.2f})"
        )
        rows: list[Row] = [
            (name, site, ROOT / "functions" / fn, module, build)
            for name, fn, module, build in FUNCTIONS
        ]
        if args.against:
            tree = tree_at(args.against, Path(tmp))
            then = replica(Path(tmp) / "then", tree)
            rows += [
                (f"{name}@{args.against}", then, tree / "functions" / fn, module, build)
                for name, fn, module, build in FUNCTIONS
                if (tree / "functions" / fn / f"{module}.py").exists()
            ]
        _report(measure(rows), args.against)
    return 0


if __name__ == "__main__":
    sys.exit(main())
