"""The HAProxy fleet on this machine: the SSM document's own script, run locally.

``template.yaml`` holds the only copy of the script that applies a config bundle on an instance
(``EdgeApplyConfigDocument``). This module reads it from there, fills in its parameters the way
SSM does (defaults, ``allowedPattern``/``allowedValues`` checked, ``{{ Name }}`` replaced), and
runs it with bash against a local HAProxy (:class:`LocalInstance`) and the AWS CLI pointed at the
sandbox's moto server. Nothing here changes the script.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
DOCUMENT = "EdgeApplyConfigDocument"
STATS_DOCUMENT = "EdgeStatsDocument"
# The documents' names in the sandbox (GREENLIGHT_EDGE_DOCUMENT, GREENLIGHT_EDGE_STATS_DOCUMENT)
# -> their resources in template.yaml: what LocalSsm runs for a SendCommand's DocumentName.
DOCUMENTS = {"greenlight-apply": DOCUMENT, "greenlight-stats": STATS_DOCUMENT}


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (``!Ref x`` -> ``{"Ref": x}``)."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    assert isinstance(node, yaml.MappingNode)
    return {name: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - safe loader subclass
    return data


@cache
def document(path: Path = TEMPLATE, name: str = DOCUMENT) -> dict[str, Any]:
    """The SSM document's content (``name``: its resource in the template), as SSM receives it."""
    content: dict[str, Any] = load_template(path)["Resources"][name]["Properties"]["Content"]
    return content


class ParameterError(ValueError):
    pass


def resolve_parameters(params: dict[str, str], doc: dict[str, Any] | None = None) -> dict[str, str]:
    """What SSM would run with: defaults filled in, every value checked against the document."""
    doc = doc or document()
    declared: dict[str, Any] = doc["parameters"]
    unknown = set(params) - set(declared)
    if unknown:
        raise ParameterError(f"unknown parameter(s) {sorted(unknown)}")
    values = {}
    for name, spec in declared.items():
        if name in params:
            value = params[name]
        elif "default" in spec:
            value = str(spec["default"])
        else:
            raise ParameterError(f"parameter {name} is required")
        if "allowedPattern" in spec and not re.search(spec["allowedPattern"], value):
            raise ParameterError(f"{name}={value!r} does not match {spec['allowedPattern']}")
        if "allowedValues" in spec and value not in spec["allowedValues"]:
            raise ParameterError(f"{name}={value!r}: expected one of {spec['allowedValues']}")
        values[name] = value
    return values


def script(params: dict[str, str], doc: dict[str, Any] | None = None) -> str:
    doc = doc or document()
    values = resolve_parameters(params, doc)
    (step,) = doc["mainSteps"]
    text = "\n".join(step["inputs"]["runCommand"])
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: values[m.group(1)], text)


@dataclass(frozen=True)
class ApplyResult:
    returncode: int
    status: dict[str, Any]
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.status.get("status") in (
            "applied",
            "unchanged",
            "staged",
            "switched",
            "up",
        )


@dataclass
class LocalInstance:
    """One HAProxy "instance" in a directory: master-worker, master socket, releases."""

    base: Path
    name: str = "edge-1"
    bind_address: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    # Run before HAProxy's start command (e.g. setpriv, to start it as the systemd unit would).
    start_wrapper: str = ""

    @property
    def root(self) -> Path:
        return self.base / "greenlight"

    @property
    def master_socket(self) -> Path:
        return self.base / "run" / "master.sock"

    @property
    def pid_file(self) -> Path:
        return self.base / "run" / "haproxy.pid"

    @property
    def log_file(self) -> Path:
        return self.base / "haproxy.log"

    def prepare(self) -> LocalInstance:
        for sub in ("greenlight", "run", "state", "certs"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        haproxy = shutil.which("haproxy") or "haproxy"
        start = (
            f"{self.start_wrapper + ' ' if self.start_wrapper else ''}"
            f"{haproxy} -W -D -S {self.master_socket} -p {self.pid_file}"
            f" -f {self.root}/current/haproxy.cfg -C {self.root}/current"
        )
        settings = {
            "GREENLIGHT_RUN_DIR": str(self.base / "run"),
            "GREENLIGHT_STATE_DIR": str(self.base / "state"),
            "GREENLIGHT_CERTS_DIR": str(self.base / "certs"),
            "GREENLIGHT_BIND_ADDRESS": self.bind_address,
            # The stats page on the instance's own address (its "management address").
            "GREENLIGHT_STATS_ADDRESS": self.bind_address,
            "GREENLIGHT_HAPROXY": haproxy,
            "GREENLIGHT_START_COMMAND": start,
            **self.env,
        }
        # The same file an instance's systemd unit reads (EnvironmentFile=).
        (self.root / "environment").write_text(
            "".join(f'{k}="{v}"\n' for k, v in sorted(settings.items()))
        )
        return self

    def parameters(self, **params: str) -> dict[str, str]:
        return {"ConfigRoot": str(self.root), "MasterSocket": str(self.master_socket), **params}

    def apply(self, env: dict[str, str], timeout: float = 120, **params: str) -> ApplyResult:
        """Run the document's script for this instance (``env``: AWS settings for the CLI)."""
        return run_script(script(self.parameters(**params)), env, timeout)

    def current_release(self) -> str | None:
        link = self.root / "current"
        return os.readlink(link) if link.is_symlink() else None

    def master(self, command: str) -> str:
        proc = subprocess.run(
            ["socat", "-t", "5", "stdio", f"unix-connect:{self.master_socket}"],
            input=command + "\n",
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return proc.stdout

    def workers(self) -> list[int]:
        """The master's current workers (``show proc``). An answer with no worker section (the
        master busy: seen on a loaded machine) is asked again, three times at most."""
        for _ in range(3):
            answer = self.master("show proc")
            if "# workers" in answer:
                break
            time.sleep(0.2)
        out, in_workers = [], False
        for line in answer.splitlines():
            if line.startswith("# workers"):
                in_workers = True
            elif line.startswith("#"):
                in_workers = False
            elif in_workers and line.split()[1:2] == ["worker"]:
                out.append(int(line.split()[0]))
        return out

    def stop(self) -> None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def run_script(text: str, env: dict[str, str], timeout: float) -> ApplyResult:
    """Run a document's script with bash, as the agent would (``env``: AWS settings for the
    CLI); its last line of output is its JSON status."""
    venv_bin = str(Path(sys.executable).parent)
    run_env = {
        "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "/usr/bin:/bin")]),
        "HOME": os.environ.get("HOME", "/root"),
        **env,
    }
    started = time.perf_counter()
    proc = subprocess.run(
        ["bash", "-c", text],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    status: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return ApplyResult(
        proc.returncode,
        status,
        proc.stdout + proc.stderr,
        time.perf_counter() - started,
    )


def read_stats(
    instance: LocalInstance, env: dict[str, str], timeout: float = 30, **params: str
) -> ApplyResult:
    """Run the stats document's script (``EdgeStatsDocument``) on ``instance``; ``params``:
    its parameters (``Backends``)."""
    text = script({"ConfigRoot": str(instance.root), **params}, document(name=STATS_DOCUMENT))
    return run_script(text, env, timeout)


# ---------------------------------------------------------------- local fleet kit
# What the fleet tests, the reload benchmark and the sandbox share: free loopback ports, a
# snapshot of loopback "nodes", and a moto server holding the bucket the script fetches from.


def free_port(address: str = "127.0.0.1", low: int = 20000, high: int = 29999) -> int:
    """A TCP port free on ``address`` within [low, high] (NodePorts want 30000-32767)."""
    import random
    import socket

    candidates = list(range(low, high + 1))
    random.shuffle(candidates)
    for port in candidates[:500]:
        with socket.socket() as sock:
            try:
                sock.bind((address, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on {address} in {low}-{high}")


STATS_HASH = (  # crypt(3) SHA-512 of "greenlight-example" (config/sandbox-apps.yaml)
    "$6$greenlightexampl$wA/piR7GVcT8mo8ItICHfJ/d6p0vr1xqRnYwmpHqmZ4WBnAHh9pff/"
    "rLOxuDrDr7Lbi1ZxjiiOxD4JzTQKqux/"
)


def edge_identity() -> tuple[str, str]:
    """The user and group a local HAProxy's workers can drop to (``edge.user``/``edge.group``).

    As root: ``haproxy`` (the user Debian's package creates), as in production, or ``nobody``
    where it does not exist. As anyone else: that user and group, since HAProxy cannot change
    its identity without root.
    """
    import grp
    import pwd

    if os.geteuid() == 0:
        try:
            pwd.getpwnam("haproxy")
            grp.getgrnam("haproxy")
        except KeyError:
            return "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
        return "haproxy", "haproxy"
    return pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name


def apps_for_local_edge(text: bytes, identity: tuple[str, str] | None = None) -> bytes:
    """The apps file as this machine's HAProxy can run it: ``edge.user`` and ``edge.group`` set
    to ``identity`` (default: :func:`edge_identity`) unless the file sets them. Unchanged where
    that identity is production's own (``haproxy``), as when the sandbox runs as root."""
    user, group = identity or edge_identity()
    if (user, group) == ("haproxy", "haproxy"):
        return text
    data = yaml.safe_load(text)
    edge = data.get("edge") if isinstance(data, dict) else None
    if not isinstance(edge, dict):
        return text
    edge.setdefault("user", user)
    edge.setdefault("group", group)
    return yaml.safe_dump(data, sort_keys=False).encode()


def local_snapshot(
    *,
    nodes: list[tuple[str, str]],
    node_ports: dict[str, int],
    live: str,
    https_port: int,
    http_port: int,
    stats_port: int,
    app: str = "shop",
    host: str = "shop.sandbox.test",
    health_interval: int = 1,
) -> Any:
    """One app on loopback nodes, served on loopback ports, with one default certificate."""
    from greenlight.edge.snapshot import Snapshot

    user, group = edge_identity()

    return Snapshot.model_validate(
        {
            "version": 1,
            "edge": {
                "http_port": http_port,
                "https_port": https_port,
                "bind_address": "127.0.0.1",
                "slowstart_seconds": 0,
                "maxconn": 2000,  # within the open-file limit of a test machine
                "hard_stop_after_seconds": 30,
                "user": user,
                "group": group,
                "stats": {"port": stats_port, "user": "admin", "password_hash": STATS_HASH},
            },
            "nodes": [{"name": n, "address": a} for n, a in nodes],
            "apps": [
                {
                    "name": app,
                    "live_colour": live,
                    "hosts": {"live": [host], "preview": f"preview.{host}"},
                    "health": {"path": "/healthz", "interval_seconds": health_interval},
                    "node_ports": node_ports,
                }
            ],
            "certificates": [{"name": "default", "file": "default.pem", "hosts": [host]}],
        }
    )


BUNDLE_KEY = "haproxy/config.tar.gz"


class MotoBucket:
    """A moto server on loopback with a versioned bucket and the edge's signing key (KMS,
    ECC_NIST_P256), as the instances' AWS. ``publish*`` sign the way the haproxy function does
    (its own ``ConfigStore`` and ``KmsSigner``); :attr:`signing_key` is the documents'
    ``SigningKeyArn``."""

    def __init__(self, bucket: str = "greenlight-fleet", region: str = "eu-west-1") -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.bucket, self.region = bucket, region
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.s3: Any = None
        self.kms: Any = None
        self.signing_key = ""

    @property
    def env(self) -> dict[str, str]:
        host, port = self._server.get_host_and_port()
        return {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "sandbox",
            "AWS_SECRET_ACCESS_KEY": "sandbox",
            "AWS_DEFAULT_REGION": self.region,
        }

    def start(self) -> MotoBucket:
        import boto3

        self._server.start()
        env = self.env
        self.s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=self.region,
            aws_access_key_id="sandbox",
            aws_secret_access_key="sandbox",  # noqa: S106 - moto accepts any key
        )
        self.s3.create_bucket(
            Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": self.region}
        )
        self.s3.put_bucket_versioning(
            Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"}
        )
        self.kms = boto3.client(
            "kms",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=self.region,
            aws_access_key_id="sandbox",
            aws_secret_access_key="sandbox",  # noqa: S106 - moto accepts any key
        )
        self.signing_key = create_signing_key(self.kms)
        return self

    def store(self, key: str = BUNDLE_KEY, signing_key: str | None = None) -> Any:
        """The haproxy function's ``ConfigStore`` for ``key``, signing with our key (or
        ``signing_key``: another key, as a writer who is not the function would)."""
        from greenlight.edge.publish import ConfigStore
        from greenlight.edge.signing import KmsSigner

        signer = KmsSigner(self.kms, signing_key or self.signing_key)
        return ConfigStore(self.s3, self.bucket, key, signer)

    def stop(self) -> None:
        self._server.stop()

    def put_certificate(self, name: str, hosts: list[str], workdir: Path) -> str:
        """A self-signed certificate in the bucket; its s3:// reference."""
        from .render import self_signed

        pem = workdir / name
        self_signed(pem, hosts)
        key = f"certs/{name}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=pem.read_bytes())
        pem.unlink()
        return f"s3://{self.bucket}/{key}"

    def publish(self, snapshot: Any, certificates: dict[str, str], key: str = BUNDLE_KEY) -> Any:
        """Render ``snapshot`` for the fleet and publish the bundle (``Published``)."""
        from greenlight.edge.render import render
        from greenlight.edge.state import MANIFEST, certificate_manifest

        files = render(snapshot) | {MANIFEST: certificate_manifest(certificates)}
        return self.publish_files(files, key)

    def publish_files(self, files: dict[str, bytes], key: str = BUNDLE_KEY) -> Any:
        """Check, sign and publish ``files`` as the function does (``Published``)."""
        return self.store(key).publish(files, dry_run=False)

    def publish_unchecked(self, files: dict[str, bytes], key: str = BUNDLE_KEY) -> Any:
        """Sign and publish ``files`` without the function's checks: a signer that signs
        anything, to test what the instances check themselves."""
        from greenlight.edge.publish import bundle

        return self.store(key).put(bundle(files))


def create_signing_key(kms: Any) -> str:
    """The edge's signing key as template.yaml makes it (``EdgeSigningKey``); its ARN."""
    made = kms.create_key(
        Description="Greenlight edge bundles (sandbox)",
        KeySpec="ECC_NIST_P256",
        KeyUsage="SIGN_VERIFY",
    )
    return str(made["KeyMetadata"]["Arn"])


class LocalSsm:
    """The two SSM calls the haproxy function makes, carried out on local instances.

    ``send_command`` runs the script of the document its ``DocumentName`` names (``documents``:
    name -> resource in template.yaml; another name is SSM's ``InvalidDocument``), with the
    command's parameters, on each named instance, one thread per instance and at most
    ``MaxConcurrency`` at a time, like the agent would; ``get_command_invocation`` reports what
    SSM would: ``InvocationDoesNotExist`` before an instance's run is registered,
    ``InProgress``, then ``Success`` or ``Failed`` with the script's output and exit code.
    """

    def __init__(
        self,
        instances: dict[str, LocalInstance],
        env: dict[str, str],
        documents: dict[str, str] | None = None,
    ) -> None:
        import threading

        self.instances = instances
        self.env = env
        self.documents = DOCUMENTS if documents is None else documents
        self.commands: dict[str, dict[str, dict[str, Any]]] = {}
        self.sent: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        import threading
        import uuid

        from botocore.exceptions import ClientError

        resource = self.documents.get(kwargs["DocumentName"])
        if resource is None:
            raise ClientError(
                {"Error": {"Code": "InvalidDocument", "Message": kwargs["DocumentName"]}},
                "SendCommand",
            )
        command_id = str(uuid.uuid4())
        params = {k: v[0] for k, v in kwargs["Parameters"].items()}
        params.pop("ExecutionTimeoutSeconds", None)  # SSM's own limit on the step
        ids = list(kwargs["InstanceIds"])
        limit = _concurrency(kwargs.get("MaxConcurrency", "50"), len(ids))
        gate = threading.Semaphore(limit)
        self.commands[command_id] = {}
        self.sent.append({"CommandId": command_id, **kwargs})

        def run(instance_id: str) -> None:
            with gate:
                with self._lock:
                    self.commands[command_id][instance_id] = {"Status": "InProgress"}
                instance = self.instances.get(instance_id)
                if instance is None:
                    outcome = {"Status": "Failed", "StatusDetails": "Undeliverable"}
                else:
                    runner = read_stats if resource == STATS_DOCUMENT else LocalInstance.apply
                    result = runner(instance, self.env, **params)
                    outcome = {
                        "Status": "Success" if result.returncode == 0 else "Failed",
                        "StatusDetails": "Success" if result.returncode == 0 else "Failed",
                        "ResponseCode": result.returncode,
                        "StandardOutputContent": result.output[-24000:],
                    }
                with self._lock:
                    self.commands[command_id][instance_id] = outcome

        for instance_id in ids:
            threading.Thread(target=run, args=(instance_id,), daemon=True).start()
        return {"Command": {"CommandId": command_id}}

    def get_command_invocation(self, *, CommandId: str, InstanceId: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        with self._lock:
            found = self.commands.get(CommandId, {}).get(InstanceId)
        if found is None:
            raise ClientError(
                {"Error": {"Code": "InvocationDoesNotExist", "Message": "not yet"}},
                "GetCommandInvocation",
            )
        return {"CommandId": CommandId, "InstanceId": InstanceId, **found}


def _concurrency(value: str, total: int) -> int:
    if value.endswith("%"):
        return max(1, total * int(value[:-1]) // 100)
    return max(1, int(value))
