"""Rendered configs checked by the real HAProxy (`haproxy -c`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from greenlight.edge.snapshot import parse_snapshot
from greenlight_sandbox.render import render_to

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "events" / "cluster-snapshot.json"


@pytest.fixture(scope="module")
def haproxy() -> str:
    path = shutil.which("haproxy")
    assert path, "HAProxy is required (apt-get install haproxy; .ci/run installs it)"
    return path


def cli_render(snapshot: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "greenlight_sandbox.cli",
            "render",
            "--snapshot",
            str(snapshot),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def check(haproxy: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_render_of_the_example_passes_haproxy_check(haproxy, tmp_path):
    out = tmp_path / "edge"
    result = cli_render(SNAPSHOT, out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "certs",
        "crt-list",
        "haproxy.cfg",
        "hosts.map",
        "run",
        "state",
    ]
    checked = check(haproxy, out / "haproxy.cfg")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout + checked.stderr
    assert "[WARNING]" not in checked.stdout + checked.stderr


def variant(mutate):
    data = json.loads(SNAPSHOT.read_text())
    mutate(data)
    return parse_snapshot(json.dumps(data))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(nodes=[]),  # no node can serve: backends without servers
        lambda d: d["apps"][0]["node_ports"].pop("green"),  # one colour only
        lambda d: d.update(apps=[]),  # nothing routed: every host gets the 404 backend
        lambda d: d["apps"].extend(
            {
                "name": f"app{i}",
                "live_colour": "blue",
                "hosts": {
                    "live": [f"app{i}.example.com"],
                    "preview": f"preview.app{i}.example.com",
                },
                "node_ports": {"blue": 30100 + 2 * i, "green": 30101 + 2 * i},
            }
            for i in range(50)
        ),
        lambda d: d["apps"][0].update(gating=True),  # the candidate's brisk checks
        # Promoted and watched: the live hosts on green's tracking servers, blue warm behind.
        lambda d: d["apps"][0].update(
            live_colour="green", backup_colour="blue", preview_colour="green", gating=True
        ),
    ],
    ids=["no-nodes", "one-colour", "no-apps", "fifty-apps", "gating", "warm-backup"],
)
def test_variants_pass_haproxy_check(haproxy, tmp_path, mutate):
    render_to(variant(mutate), tmp_path)
    checked = check(haproxy, tmp_path / "haproxy.cfg")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[WARNING]" not in checked.stdout + checked.stderr


def test_bad_snapshot_is_refused_and_nothing_is_written(tmp_path):
    bad = tmp_path / "bad.json"
    data = json.loads(SNAPSHOT.read_text())
    data["apps"][0]["live_colour"] = "purple"
    bad.write_text(json.dumps(data))
    out = tmp_path / "out"
    result = cli_render(bad, out)
    assert result.returncode == 2
    assert "apps.0.live_colour" in result.stderr
    assert not out.exists()
