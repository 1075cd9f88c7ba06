"""``greenlight edge releases|rollback|unpin``: the edge's releases, a rollback that pins, unpin.

greenlight edge releases [--limit N] [--after VERSION] [--json] [--aws]
greenlight edge rollback [RELEASE] [--force] [--reason TEXT] [--dry-run] [--aws]
greenlight edge unpin [--reason TEXT] [--dry-run] [--aws]

Each is the haproxy function's action of that name (docs/edge.md, "Rollback and the pin"), in the
running sandbox or, with ``--aws``, on real AWS.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sys
from typing import Any


def release_lines(answer: dict[str, Any]) -> list[str]:
    """The releases as a table, newest first; the pin, if any, after it."""
    rows = [("", "VERSION", "SHA256", "WHEN", "SIGNED", "WHY")]
    for r in answer["releases"]:
        mark = "*" if r["live"] else ""
        signed = "yes" if r["signed"] else "NO"
        rows.append((mark, r["version_id"], r["sha256"][:12], r["when"], signed, r["why"]))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
        for row in rows
    ]
    lines = [line.rstrip() for line in lines]
    lines.append("* live")
    if answer.get("next"):
        lines.append(f"more: --after {answer['next']}")
    pin = answer.get("pin")
    if pin:
        lines.append(
            f"pinned to {pin['version_id']} ({pin['sha256'][:12]}) since {pin['since']}"
            f" by {pin['who']}: {pin['why']}"
        )
    return lines


def event_of(args: argparse.Namespace) -> dict[str, Any]:
    """The haproxy function's event for the command line."""
    if args.what == "releases":
        event: dict[str, Any] = {"action": "releases", "limit": args.limit}
        if args.after:
            event["after"] = args.after
        return event
    reason = args.reason or f"greenlight edge {args.what} by {getpass.getuser()}"
    event = {"action": args.what, "reason": reason, "dry_run": args.dry_run}
    if args.what == "rollback" and args.release:
        event["release"] = args.release
    if args.what == "rollback" and args.force:
        event["force"] = True
    return event


def cmd_edge(args: argparse.Namespace) -> int:
    from .cli import _invoke_sandbox, _print, _running_sandbox
    from .functions import invoke

    event = event_of(args)
    if args.aws:
        with contextlib.redirect_stdout(sys.stderr):
            answer = invoke("haproxy", event)
    else:
        state = _running_sandbox("edge")
        if state is None:
            return 2
        reply = _invoke_sandbox(state, "haproxy", event)
        if "error" in reply and "result" not in reply:
            _print(reply["error"])
            return 1
        answer = reply.get("result", reply)
    if answer.get("status") == "rejected":
        print(f"greenlight edge {args.what}: {answer.get('error')}", file=sys.stderr)
        return 1
    if args.what == "releases" and not args.json:
        print("\n".join(release_lines(answer)))
    else:
        print(json.dumps(answer, indent=2, default=str))
    return 0


def add_parser(sub: Any) -> None:
    edge = sub.add_parser("edge", help="the edge's releases, a rollback that pins, unpin")
    what = edge.add_subparsers(dest="what", required=True)
    releases = what.add_parser("releases", help="the published releases, newest first")
    releases.add_argument("--limit", type=int, default=20, help="at most this many (1-100)")
    releases.add_argument("--after", help="list from after this version id (a page's 'more')")
    releases.add_argument("--json", action="store_true", help="the function's answer as JSON")
    rollback = what.add_parser("rollback", help="a release live again, the edge pinned to it")
    rollback.add_argument(
        "release", nargs="?", help="a version id or a sha256 prefix (12+ hex); default: previous"
    )
    rollback.add_argument(
        "--force",
        action="store_true",
        help="pin without checking first (the backends it sends live hosts to not UP"
        " everywhere, the apps file or the served bundle unreadable)",
    )
    unpin = what.add_parser("unpin", help="remove the pin, then push the cluster's render")
    for parser in (rollback, unpin):
        parser.add_argument("--reason", help="why (recorded with the release and the pin)")
        parser.add_argument("--dry-run", action="store_true", help="say what, change nothing")
    for parser in (releases, rollback, unpin):
        parser.add_argument("--aws", action="store_true", help="real AWS (GREENLIGHT_* variables)")
        parser.set_defaults(fn=cmd_edge)
