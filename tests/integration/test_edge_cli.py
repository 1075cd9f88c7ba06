"""``greenlight edge releases|rollback|unpin`` as a user runs them (``--aws``: the real handler
in process, on moto and the stand-in)."""

from __future__ import annotations

import json

from greenlight_sandbox.cli import main
from greenlight_sandbox.edge_cli import release_lines
from tests.integration.test_haproxy_function import deployed  # noqa: F401 - fixture


def cli(capsys, *args):
    code = main(["edge", *args, "--aws"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_releases_rollback_and_unpin_from_the_command_line(deployed, kube, aws_env, capsys):  # noqa: F811
    from greenlight_sandbox.functions import invoke

    first = invoke("haproxy", {"action": "push", "reason": "first"})
    kube.cordon("worker-1")
    invoke("haproxy", {"action": "push", "reason": "second"})

    code, table, _ = cli(capsys, "releases")
    header, newest, older, legend = table.splitlines()[:4]
    assert code == 0 and header.split() == ["VERSION", "SHA256", "WHEN", "SIGNED", "WHY"]
    assert newest.startswith("*") and newest.endswith("second") and " yes " in newest
    assert older.split()[0] == first["version_id"] and older.endswith("first")
    assert legend == "* live"

    code, out, _ = cli(capsys, "rollback", first["sha256"][:12], "--dry-run")
    plan = json.loads(out)
    assert (
        code == 0 and plan["status"] == "would-roll-back" and plan["pin"]["status"] == "would-pin"
    )

    code, out, _ = cli(capsys, "rollback", first["sha256"][:12], "--reason", "incident 9")
    assert code == 0 and json.loads(out)["pin"]["status"] == "pinned"
    code, table, _ = cli(capsys, "releases", "--limit", "1")
    assert "more: --after " in table and table.splitlines()[-1].endswith(": incident 9")

    code, _, err = cli(capsys, "rollback", "feedfacefeed")
    assert code == 1 and "release: " in err  # rejected, by name

    code, out, _ = cli(capsys, "unpin")
    assert code == 0 and json.loads(out)["unpin"]["status"] == "unpinned"
    code, out, _ = cli(capsys, "releases", "--json")
    assert json.loads(out)["pin"] is None


def test_the_table_marks_an_unsigned_release():
    answer = {
        "releases": [
            {
                "version_id": "v2",
                "sha256": "a" * 64,
                "when": "2026-12-01T10:00:00Z",
                "why": "",
                "live": True,
                "signed": False,
            }
        ],
        "next": None,
        "pin": None,
    }
    lines = release_lines(answer)
    assert lines[1].split() == ["*", "v2", "a" * 12, "2026-12-01T10:00:00Z", "NO"]
    assert lines[-1] == "* live"
