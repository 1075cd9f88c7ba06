"""``greenlight``: the local sandbox, local invokes and the demo.

greenlight sandbox up|down|status
greenlight invoke FUNCTION EVENT_FILE [--dry-run] [--aws] [--no-sign]
greenlight night plan [--json] [--aws]
greenlight redrive QUEUE [--dry-run] [--max N] [--aws]
greenlight edge releases|rollback [RELEASE]|unpin [--dry-run] [--json] [--aws]
greenlight status [--json] [--aws]
greenlight history APP [--limit N] [--json] [--aws]
greenlight trace COMMIT_OR_ROLLOUT_ID [--json] [--aws]
greenlight check-apps FILE [--namespaces NS[,NS...]]
greenlight rbac NAMESPACE... | kubectl apply -f -
greenlight demo
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from . import sandbox as sb
from .functions import FUNCTIONS, invoke


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def sign_event(event: dict[str, Any], secret: str) -> dict[str, Any]:
    """Re-sign a Function URL event's body with ``secret`` (what GitHub would send)."""
    from greenlight.webhook import sign

    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    headers = {
        k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "x-hub-signature-256"
    }
    headers["x-hub-signature-256"] = sign(raw, secret)
    return {**event, "headers": headers}


def cmd_sandbox(args: argparse.Namespace) -> int:
    if args.action == "up":
        import shutil

        if not (shutil.which("haproxy") and shutil.which("socat")):
            print(
                "greenlight sandbox up: needs haproxy and socat; install them with "
                "`make haproxy` (scripts/ensure-haproxy)",
                file=sys.stderr,
            )
            return 2
        state = sb.up()
        print(
            f"sandbox up (pid {state['pid']}): moto {state['moto_url']}, "
            f"kubernetes {state['kube_url']}"
        )
        for name, address in sorted(state.get("edge", {}).items()):
            print(f"  HAProxy {name}: https://{address}:18443 (try Host: shop.sandbox.test)")
        if state.get("kubeconfig"):
            print(f"  kubectl (read-only): KUBECONFIG={state['kubeconfig']} kubectl get pods -A -w")
        return 0
    if args.action == "down":
        print("sandbox down" if sb.down() else "sandbox was not running")
        return 0
    state = sb.read_state()
    if state is None:
        print("sandbox is not running")
        return 1
    _print({k: v for k, v in state.items() if k not in ("kube_token", "invoke_token")})
    return 0


def _running_sandbox(command: str) -> dict[str, Any] | None:
    """The running sandbox's state, or None (and the user told what to do)."""
    state = sb.read_state()
    if state is None or "invoke_url" not in state:
        print(
            f"greenlight {command}: the sandbox is not running; start it with "
            "`greenlight sandbox up`, or pass --aws to use real AWS",
            file=sys.stderr,
        )
        return None
    return state


def _invoke_sandbox(state: dict[str, Any], function: str, event: Any) -> Any:
    """Hand the event to the sandbox daemon, which runs the handler beside its fleet."""
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the sandbox's own loopback address
        f"{state['invoke_url']}/invoke/{function}",
        data=json.dumps(event).encode(),
        headers={
            "Authorization": f"Bearer {state['invoke_token']}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=330) as response:  # noqa: S310 - as above
        return json.loads(response.read())


def cmd_invoke(args: argparse.Namespace) -> int:
    try:
        event = json.loads(Path(args.event_file).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"greenlight invoke: cannot read {args.event_file}: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        manual = ("rollout", "haproxy", "gate", "night")
        if args.function not in manual or "source" in event or "Records" in event:
            print(
                "greenlight invoke: --dry-run applies to manual rollout, haproxy, gate and night"
                " payloads",
                file=sys.stderr,
            )
            return 2
        event = {**event, "dry_run": True}
    if args.aws:
        # Handler logs go to stderr so that stdout carries only the JSON result.
        with contextlib.redirect_stdout(sys.stderr):
            _print(invoke(args.function, event))
        return 0
    state = _running_sandbox("invoke")
    if state is None:
        return 2
    if args.function == "github-webhook" and not args.no_sign:
        env = state["env"]
        secret = sb.client(env, "secretsmanager").get_secret_value(
            SecretId=env["GREENLIGHT_WEBHOOK_SECRET"]
        )["SecretString"]
        event = sign_event(event, secret)
    answer = _invoke_sandbox(state, args.function, event)
    if "error" in answer:
        _print(answer["error"])
        return 1
    _print(answer if "delivered" in answer else answer["result"])
    return 0


def plan_lines(answer: dict[str, Any]) -> list[str]:
    """The night plan as a person reads it."""
    plan = answer["plan"]
    lines = [
        f"group {answer['group']}: {plan['nodes']} nodes in service, keep {plan['keep']} "
        "(the night size, min_nodes and the group's MinSize)"
    ]
    for node in plan["remove"]:
        moves = ", ".join(node["pods_to_move"]) or "no pods to move"
        lines.append(
            f"  remove {node['node']} ({node['instance_id']}, {node['zone']}, "
            f"load {node['load']:.0%}): {moves}"
        )
    for name, why in sorted(plan["kept"].items()):
        lines.append(f"  keep   {name}: {why}")
    for name, reasons in sorted(plan["blocked"].items()):
        lines.append(f"  keep   {name}: blocked: {'; '.join(reasons)}")
    cap = plan["capacity"]
    for label, key in (("today", "allocatable_today"), ("tonight", "allocatable_tonight")):
        c = cap[key]
        figures = f"{c['cpu_m']:>7}m CPU {c['memory_mi']:>8}Mi {c['pods']:>5} pods"
        lines.append(f"  allocatable {label:8} {figures}")
    r = cap["requested"]
    lines.append(
        f"  requested            {r['cpu_m']:>7}m CPU {r['memory_mi']:>8}Mi {r['pods']:>5} pods"
        f"  (headroom kept free on the nodes that stay: {cap['headroom']:.0%})"
    )
    return lines


def cmd_night(args: argparse.Namespace) -> int:
    event = {"action": "plan"}
    if args.aws:
        with contextlib.redirect_stdout(sys.stderr):
            answer = invoke("night", event)
    else:
        state = _running_sandbox("night")
        if state is None:
            return 2
        answer = _invoke_sandbox(state, "night", event)
        answer = answer.get("result", answer)
    if args.json or "plan" not in answer:
        _print(answer)
        return 0 if "plan" in answer else 1
    print("\n".join(plan_lines(answer)))
    return 0


def cmd_check_apps(args: argparse.Namespace) -> int:
    """Validate an apps file offline with the functions' rules: 0 valid, 1 invalid (every
    problem printed, by field), 2 unusable arguments."""
    import os

    from greenlight.appconfig import validate_apps
    from greenlight.errors import SettingsError
    from greenlight.settings import ENV_APP_NAMESPACES, app_namespaces

    raw = args.namespaces if args.namespaces is not None else os.environ.get(ENV_APP_NAMESPACES)
    if not raw:
        print(
            "greenlight check-apps: give the stack's app namespaces with --namespaces a,b "
            f"(or {ENV_APP_NAMESPACES})",
            file=sys.stderr,
        )
        return 2
    try:
        namespaces = app_namespaces({ENV_APP_NAMESPACES: raw})
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except (OSError, SettingsError) as exc:
        print(f"greenlight check-apps: {exc}", file=sys.stderr)
        return 2
    name = "stdin" if args.file == "-" else args.file
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        print(f"{name}: invalid, 1 problem\n  not UTF-8 text (byte {exc.start + 1})")
        return 1
    apps, problems = validate_apps(text, namespaces=namespaces)
    if apps is None:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        print(f"{name}: invalid, {count}")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(f"{name}: valid ({len(apps.apps)} apps: {', '.join(a.name for a in apps.apps)})")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from greenlight.errors import ConfigError

    from .render import main as render_main

    try:
        return render_main(args.snapshot, args.out)
    except (OSError, ConfigError) as exc:
        print(f"greenlight render: {exc}", file=sys.stderr)
        return 2


def cmd_rbac(args: argparse.Namespace) -> int:
    from .rbac_manifest import RbacError, manifest

    try:
        text = manifest(args.namespaces)
    except (OSError, RbacError) as exc:
        print(f"greenlight rbac: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run

    return run(scenario=args.scenario)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenlight", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sandbox = sub.add_parser("sandbox", help="start, stop or show the local sandbox")
    sandbox.add_argument("action", choices=("up", "down", "status"))
    sandbox.set_defaults(fn=cmd_sandbox)
    inv = sub.add_parser("invoke", help="run a function's handler locally with an event")
    inv.add_argument("function", choices=sorted(FUNCTIONS))
    inv.add_argument("event_file")
    inv.add_argument(
        "--dry-run",
        action="store_true",
        help="manual rollouts and haproxy actions: show what would change, change nothing",
    )
    inv.add_argument(
        "--aws",
        action="store_true",
        help="use real AWS and the configured cluster (GREENLIGHT_* variables)",
    )
    inv.add_argument(
        "--no-sign", action="store_true", help="github-webhook: keep the event's own signature"
    )
    inv.set_defaults(fn=cmd_invoke)
    sub.add_parser(  # dispatched in main(): the stand-in parses its own options
        "kube-standin",
        add_help=False,
        help="run the Kubernetes stand-in alone (--help for its options)",
    )
    night = sub.add_parser("night", help="the night shrink: show tonight's plan")
    night.add_argument("what", choices=("plan",))
    night.add_argument("--json", action="store_true", help="print the night function's answer")
    night.add_argument("--aws", action="store_true", help="real AWS and the configured cluster")
    night.set_defaults(fn=cmd_night)
    from .redrive import add_parser as add_redrive_parser

    add_redrive_parser(sub)  # dead letters back to their queue
    from .inquire import add_parsers as add_inquiry_parsers

    add_inquiry_parsers(sub)  # status, history, trace
    from .edge_cli import add_parser as add_edge_parser

    add_edge_parser(sub)  # releases, rollback (pins), unpin
    ren = sub.add_parser("render", help="render the HAProxy config of a cluster snapshot")
    ren.add_argument("--snapshot", required=True, help="snapshot JSON (docs/edge.md)")
    ren.add_argument("--out", required=True, help="directory for haproxy.cfg and its files")
    ren.set_defaults(fn=cmd_render)
    check = sub.add_parser(
        "check-apps", help="validate an apps file offline with the functions' rules"
    )
    check.add_argument("file", metavar="FILE", help="the apps file ('-': standard input)")
    check.add_argument(
        "--namespaces",
        metavar="NS[,NS...]",
        help="the stack's AppNamespaces (default: $GREENLIGHT_APP_NAMESPACES)",
    )
    check.set_defaults(fn=cmd_check_apps)
    rbac = sub.add_parser(
        "rbac",
        help="print docs/rbac.yaml rendered for the app namespaces (pipe to kubectl apply -f -)",
    )
    rbac.add_argument(
        "namespaces",
        nargs="+",
        metavar="NAMESPACE",
        help="an app namespace (the stack's AppNamespaces; commas also separate)",
    )
    rbac.set_defaults(fn=cmd_rbac)
    demo = sub.add_parser("demo", help="run the main job end to end in an in-process sandbox")
    from .demo import SCENARIO_NAMES

    demo.add_argument(
        "--scenario",
        default="main",
        choices=SCENARIO_NAMES,
        help="main: v1, then v2 promoted and v3 rolled back under load; all: every scenario",
    )
    demo.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["kube-standin"]:  # its own options, parsed by the stand-in's parser
        from .kube.__main__ import serve

        return serve(argv[1:])
    args = build_parser().parse_args(argv)
    code: int = args.fn(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
