"""``greenlight status``, ``greenlight history APP`` and ``greenlight trace COMMIT_OR_ID``.

Each reads the rollouts table through :class:`greenlight.inquire.Reader`: the running sandbox's
(moto, through the sandbox's state file), or with ``--aws`` the deployed stack's (the default
boto3 session, ``GREENLIGHT_TABLE`` and ``GREENLIGHT_NIGHT_GROUP`` from the environment).
``--json`` prints the documents as they are; otherwise a few aligned lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from greenlight.inquire import InquiryError, Reader, span

DEFAULT_LIMIT = 10


class Unreadable(Exception):
    """No table to read: the sandbox is not running, or a variable is missing."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def reader(command: str, *, aws: bool) -> Reader:
    """The reader of the deployed stack's table (``aws``) or the running sandbox's."""
    if aws:
        import boto3

        table = os.environ.get("GREENLIGHT_TABLE")
        if not table:
            raise Unreadable(
                f"greenlight {command} --aws: set GREENLIGHT_TABLE to the stack's rollouts table"
            )
        group = os.environ.get("GREENLIGHT_NIGHT_GROUP", "")
        return Reader(boto3.client("dynamodb"), table, group)
    from . import sandbox as sb
    from .cli import _running_sandbox

    state = _running_sandbox(command)
    if state is None:
        raise Unreadable("")  # _running_sandbox said what to do
    env = state["env"]
    return Reader(
        sb.client(env, "dynamodb"), env["GREENLIGHT_TABLE"], env.get("GREENLIGHT_NIGHT_GROUP", "")
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _run(
    command: str, args: argparse.Namespace, build: Callable[[Reader, int], dict[str, Any]]
) -> tuple[int, dict[str, Any] | None, int]:
    now = _now_ms()
    try:
        document = build(reader(command, aws=args.aws), now)
    except Unreadable as exc:
        if str(exc):
            print(str(exc), file=sys.stderr)
        return exc.code, None, now
    except InquiryError as exc:
        print(f"greenlight {command}: {exc}", file=sys.stderr)
        return 1, None, now
    if args.json:
        print(json.dumps(document, indent=2))
    return 0, document, now


def cmd_status(args: argparse.Namespace) -> int:
    code, document, _ = _run("status", args, lambda r, now: r.status(now))
    if document is not None and not args.json:
        print("\n".join(status_lines(document)))
    return code


def cmd_history(args: argparse.Namespace) -> int:
    if args.limit < 1:
        print("greenlight history: --limit must be at least 1", file=sys.stderr)
        return 2
    code, document, _ = _run(
        "history", args, lambda r, now: r.history(args.app, limit=args.limit, now_ms=now)
    )
    if document is not None and not args.json:
        print("\n".join(history_lines(document)))
    return code


def cmd_trace(args: argparse.Namespace) -> int:
    code, document, now = _run("trace", args, lambda r, now: r.trace(args.target))
    if document is not None and not args.json:
        print("\n".join(trace_lines(document, now)))
    return code


def add_parsers(sub: Any) -> None:
    """The three subcommands, on the CLI's subparsers."""
    where = "real AWS: the table GREENLIGHT_TABLE (night: GREENLIGHT_NIGHT_GROUP)"
    status = sub.add_parser("status", help="per app: what is live, what is in flight; the edge")
    status.add_argument("--json", action="store_true", help="the document as it is")
    status.add_argument("--aws", action="store_true", help=where)
    status.set_defaults(fn=cmd_status)
    history = sub.add_parser("history", help="an app's last rollouts, their outcome and reason")
    history.add_argument("app")
    history.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="how many (10)")
    history.add_argument("--json", action="store_true", help="the document as it is")
    history.add_argument("--aws", action="store_true", help=where)
    history.set_defaults(fn=cmd_history)
    trace = sub.add_parser(
        "trace", help="a commit's or a rollout's chain, from its delivery to what was sent"
    )
    trace.add_argument("target", metavar="COMMIT_OR_ROLLOUT_ID")
    trace.add_argument("--json", action="store_true", help="the document as it is")
    trace.add_argument("--aws", action="store_true", help=where)
    trace.set_defaults(fn=cmd_trace)


# ------------------------------------------------------------------ the text
def _short(commit: str | None, version: str | None = None) -> str:
    return (commit or "")[:12] or (version or "-")


def _ago(seconds: int | None) -> str:
    return "-" if seconds is None else f"{span(seconds)} ago"


def _app_lines(app: dict[str, Any]) -> list[str]:
    name = f"{app['app']:<8}"
    live, flight, newest = app["live"], app["in_flight"], app["newest"]
    lines = []
    if live is None:
        lines.append(f"{name} not deployed")
    else:
        lines.append(
            f"{name} live {live['colour']:<6} {_short(live['commit'], live['version']):<12}  "
            f"rollout {live['rollout_id'] or '-'} ({live['phase'] or 'before greenlight'})"
            + (f", {live['backup_colour']} warm behind it" if live["backup_colour"] else "")
        )
    pad = " " * len(name)
    if flight is not None:
        lines.append(
            f"{pad} in flight {flight['phase']} for {span(flight['in_phase_seconds'])}: "
            f"{_short(flight['commit'], flight['version'])} on {flight['colour']}, "
            f"rollout {flight['rollout_id']}"
        )
    elif newest is not None and newest["rollout_id"] != (live or {}).get("rollout_id"):
        lines.append(
            f"{pad} last rollout {newest['rollout_id']} {newest['phase']}: {newest['reason'] or ''}"
        )
    return lines


def status_lines(doc: dict[str, Any]) -> list[str]:
    lines = [line for app in doc["apps"] for line in _app_lines(app)] or ["no apps deployed yet"]
    fleet = doc["fleet"]
    if fleet is None:
        lines.append("edge     no fleet reload recorded yet")
    else:
        lines.append(
            f"edge     {fleet['status']}: config {fleet['config_version']} "
            f"(sha256 {fleet['config_sha256'][:12]}) {_ago(fleet['age_seconds'])}: {fleet['why']}"
        )
        for i in fleet["instances"]:
            behind = "" if i["current"] else "  (behind)"
            lines.append(
                f"         {i['instance']:<20} {i['config_version'] or 'none applied':<36} "
                f"{i['outcome']:<13} {i['command_id'] or '-'}{behind}"
            )
    night = doc["night"]
    if night is None:
        lines.append("night    no worker group (GREENLIGHT_NIGHT_GROUP not set)")
    else:
        held = [f"paused until {night['paused_until']}"] if night["paused_until"] else []
        held += [f"skips {night['skip']}"] if night["skip"] else []
        held += [f"draining until {night['draining_until']}"] if night["draining"] else []
        run = night["last_run"]
        last = (
            f"last run {run['action']} {run['status']} {_ago(run['age_seconds'])}"
            if run
            else "no run yet"
        )
        lines.append(f"night    {night['group']}: {', '.join(held) or 'on schedule'}; {last}")
    return lines


def history_lines(doc: dict[str, Any]) -> list[str]:
    rollouts = doc["rollouts"]
    lines = [f"{doc['app']}: the last {len(rollouts)} rollouts, newest first"]
    for r in rollouts:
        lines.append(
            f"  {r['rollout_id']:<27} {_short(r['commit'], r['version']):<12}  "
            f"{r['outcome']:<17} {_ago(r['age_seconds']):<12} {r['reason'] or ''}".rstrip()
        )
    return lines


def _ms(stamp: str | None) -> int | None:
    if not stamp:
        return None
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def phase_lines(phases: list[dict[str, Any]], now_ms: int) -> list[str]:
    """Each phase with how long the rollout stayed in it (the last: until now)."""
    lines = []
    for n, p in enumerate(phases):
        start = _ms(p["at"]) or 0
        end = _ms(phases[n + 1]["at"]) if n + 1 < len(phases) else now_ms
        took = span(((end or now_ms) - start) / 1000)
        lines.append(f"{p['phase']:<17} {p['at']}  {took:>7}  {p['by'] or ''}: {p['why'] or ''}")
    return lines


def trace_lines(doc: dict[str, Any], now_ms: int) -> list[str]:
    dep = doc["deployment"]
    rows: list[tuple[str, list[str]]] = [
        ("commit", [f"{doc['commit'] or '-'} ({doc['source']} {doc['repository'] or ''})"]),
        ("delivery", [doc["delivery"] or "-"]),
        ("rollout", [f"{doc['app']} {doc['rollout_id']}: {doc['phase']}"]),
        ("image", [doc["image"]]),
        ("digest", [doc["digest"] or "-"]),
        ("deployment", [f"{dep['namespace'] or '?'}/{dep['name']}"]),
        ("phases", phase_lines(doc["phases"], now_ms)),
        ("edge config", [f"{doc['config_version'] or '-'} sha256 {doc['config_sha256'] or '-'}"]),
        ("ssm commands", [f"{i} {c}" for i, c in doc["ssm_commands"].items()] or ["-"]),
        (
            "statuses",
            [f"{s['target']:<19} {s['state']:<9} {s['at']}  {s['detail']}" for s in doc["statuses"]]
            or ["none sent yet"],
        ),
    ]
    if doc["reason"]:
        rows.insert(3, ("reason", [doc["reason"]]))
    if doc["other_rollouts"]:
        rows.append(("also", [", ".join(doc["other_rollouts"])]))
    return [
        f"{label if n == 0 else '':<13} {text}".rstrip()
        for label, texts in rows
        for n, text in enumerate(texts)
    ]
