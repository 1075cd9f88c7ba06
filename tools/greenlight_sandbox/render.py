"""``greenlight render --snapshot FILE --out DIR``: a config HAProxy can check and run.

Writes haproxy.cfg, hosts.map and crt-list into DIR with every path pointing inside DIR, and a
self-signed certificate (openssl) for each certificate the snapshot names, so that
``haproxy -c -f DIR/haproxy.cfg`` passes on any machine.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from greenlight.edge.render import Paths, render
from greenlight.edge.snapshot import Snapshot, parse_snapshot


def self_signed(pem: Path, hosts: list[str]) -> None:
    """A throwaway certificate + key (one PEM file, as HAProxy reads it) for ``hosts``."""
    key, crt = pem.with_suffix(".key"), pem.with_suffix(".crt")
    san = ",".join(f"DNS:{h}" for h in hosts)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "7",
            "-subj",
            f"/CN={hosts[0]}",
            "-addext",
            f"subjectAltName={san}",
            "-keyout",
            str(key),
            "-out",
            str(crt),
        ],
        check=True,
        capture_output=True,
    )
    pem.write_bytes(crt.read_bytes() + key.read_bytes())
    pem.chmod(0o600)
    key.unlink()
    crt.unlink()


def render_to(snapshot: Snapshot, out: Path) -> dict[str, Path]:
    out = out.resolve()
    paths = Paths(
        config_dir=str(out),
        certs_dir=str(out / "certs"),
        run_dir=str(out / "run"),
        state_dir=str(out / "state"),
    )
    for sub in ("certs", "run", "state"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    state = out / "state" / "server-state"
    if not state.exists():  # HAProxy warns when it is missing or has no version line
        state.write_text("1\n")
    written = {}
    for name, content in render(snapshot, paths).items():
        target = out / name
        target.write_bytes(content)
        written[name] = target
    for cert in snapshot.certificates:
        pem = out / "certs" / cert.file
        if not pem.exists():
            self_signed(pem, cert.hosts)
    return written


def main(snapshot_file: str, out: str) -> int:
    snapshot = parse_snapshot(Path(snapshot_file).read_bytes(), origin=snapshot_file)
    written = render_to(snapshot, Path(out))
    for path in written.values():
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0
