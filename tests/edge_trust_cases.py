"""The one table of bad bundles that both sides refuse: the haproxy function before it publishes
(``greenlight.edge.trust``) and the apply document on an instance before ``haproxy -c``
(its ``refusals``). tests/unit/test_edge_trust.py drives the first, tests/integration/
test_edge_trust.py the second, with the same cases.

Each case puts ``lines`` into a good rendered bundle: after the header of ``section`` in
haproxy.cfg, at its end (``section="end"``), or at the end of crt-list (``section="crt-list"``).
``{lua}`` stands for a Lua file outside the release (the reproduction's payload), ``{marker}``
for the file it would write.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    id: str
    section: str
    lines: tuple[str, ...]
    why: str  # what the refusal says (both sides)


CASES = (
    # Code.
    Case("lua-load", "global", ("lua-load {lua}",), "lua-load is not allowed"),
    Case("lua-load-quoted", "global", ('"lua-load" "{lua}"',), "lua-load is not allowed"),
    Case("lua-load-split-quotes", "global", ("lua'-'load {lua}",), "lua-load is not allowed"),
    Case("lua-load-escaped", "global", ("lua\\-load {lua}",), "lua-load is not allowed"),
    Case("lua-load-hex-escape", "global", ("lua\\x2dload {lua}",), "hex escapes are not allowed"),
    Case(
        "lua-load-if-guarded",
        "global",
        (".if defined(HAPROXY_MWORKER)", "    lua-load {lua}", ".endif"),
        "lua-load is not allowed",
    ),
    Case("lua-load-per-thread", "global", ("lua-load-per-thread {lua}",), "lua-load-per-thread"),
    Case("lua-prepend-path", "global", ("lua-prepend-path /tmp/?.lua",), "lua-prepend-path"),
    Case(
        "program",
        "end",
        ("program evil", "    command /bin/sh -c 'touch {marker}'"),
        "program is not allowed",
    ),
    Case("external-check", "global", ("external-check",), "external-check is not allowed"),
    Case(
        "option-external-check",
        "backend no-route",
        ("option external-check", "external-check command /bin/true"),
        "external-check is not allowed",
    ),
    Case("insecure-fork-wanted", "global", ("insecure-fork-wanted",), "insecure-fork-wanted"),
    Case("insecure-setuid-wanted", "global", ("insecure-setuid-wanted",), "insecure-setuid"),
    Case("ssl-engine", "global", ("ssl-engine rdrand",), "ssl-engine is not allowed"),
    Case("set-dumpable", "global", ("set-dumpable",), "set-dumpable is not allowed"),
    Case(
        "expose-experimental-directives",
        "global",
        ("expose-experimental-directives",),
        "expose-experimental-directives is not allowed",
    ),
    # HAProxy's environment.
    Case(
        "presetenv",
        "global",
        ("presetenv GREENLIGHT_BIND_ADDRESS 0.0.0.0",),
        "presetenv is not allowed",
    ),
    Case("setenv", "global", ("setenv GREENLIGHT_RUN_DIR /etc",), "setenv is not allowed"),
    Case("resetenv", "global", ("resetenv PATH",), "resetenv is not allowed"),
    Case("unsetenv", "global", ("unsetenv GREENLIGHT_RUN_DIR",), "unsetenv is not allowed"),
    Case(
        "foreign-variable",
        "frontend https-in",
        ('http-response set-header X-Leak "${AWS_SECRET_ACCESS_KEY}"',),
        "expands a variable that is not the instance",
    ),
    Case(
        "variable-default-path",
        "frontend http-in",
        ('bind "${GREENLIGHT_NOT_SET-/tmp/greenlight-evil.sock}"',),
        "expands a variable that is not the instance",
    ),
    # A variable's default spells a keyword: HAProxy expands it in the keyword's place too.
    Case(
        "variable-default-keyword",
        "global",
        ('"${GREENLIGHT_NOPE-lua-load}" hosts.map',),
        "expands a variable that is not the instance",
    ),
    Case(
        "variable-default-keyword-part",
        "global",
        ('"${GREENLIGHT_X-lua}-load" hosts.map',),
        "expands a variable that is not the instance",
    ),
    Case(
        "variable-default-program",
        "end",
        ('"${GREENLIGHT_X-program}" x',),
        "expands a variable that is not the instance",
    ),
    Case(
        "stats-address-default-not-an-address",
        "frontend http-in",
        ('bind "${GREENLIGHT_STATS_ADDRESS-*}:9000"',),
        "expands a variable that is not the instance",
    ),
    # Files and sockets outside their directories.
    Case("pidfile", "global", ("pidfile /etc/passwd",), "pidfile is not allowed"),
    Case("key-base", "global", ("key-base /etc",), "key-base is not allowed"),
    Case(
        "http-request-return-errorfile",
        "frontend https-in",
        ("http-request return status 200 errorfile /etc/shadow",),
        "only a file of the release",
    ),
    Case(
        "http-error-errorfile",
        "frontend https-in",
        ("http-error status 503 errorfile /etc/passwd",),
        "only a file of the release",
    ),
    Case(
        "stats-socket-elsewhere",
        "global",
        ("stats socket /tmp/greenlight-evil.sock mode 666 level admin",),
        "stats socket must be in ${GREENLIGHT_RUN_DIR}",
    ),
    Case(
        "stats-socket-dot-dot",
        "global",
        ('stats socket "${GREENLIGHT_RUN_DIR}/../greenlight-evil.sock" level admin',),
        "stats socket must be in ${GREENLIGHT_RUN_DIR}",
    ),
    Case(
        "server-state-file-elsewhere",
        "global",
        ("server-state-file /etc/shadow",),
        "server-state-file must be in ${GREENLIGHT_STATE_DIR}",
    ),
    Case("crt-base-elsewhere", "global", ("crt-base /etc",), "crt-base must be"),
    Case("ca-base", "global", ("ca-base /etc",), "ca-base is not allowed"),
    Case("dh-param-file", "global", ("ssl-dh-param-file /etc/shadow",), "ssl-dh-param-file"),
    Case(
        "httpclient-ca-file",
        "global",
        ("httpclient.ssl.ca-file /etc/shadow",),
        "httpclient.ssl.ca-file is not allowed",
    ),
    Case("module-data-file", "global", ("51degrees-data-file /etc/shadow",), "51degrees-data"),
    Case("errorfile", "defaults", ("errorfile 503 /etc/shadow",), "only a file of the release"),
    Case(
        "http-error-file",
        "defaults",
        ("http-error status 500 content-type text/plain file /etc/shadow",),
        "only a file of the release",
    ),
    Case(
        "return-file",
        "frontend https-in",
        ("http-request return status 200 content-type text/plain file /etc/shadow",),
        "only a file of the release",
    ),
    Case(
        "return-lf-file",
        "frontend https-in",
        ("http-request return status 200 content-type text/plain lf-file /etc/shadow",),
        "only a file of the release",
    ),
    Case(
        "bind-crt-elsewhere",
        "frontend http-in",
        ("bind 127.0.0.1:9 ssl crt /etc/ssl/private/greenlight-evil.pem",),
        "only a file of the release",
    ),
    Case(
        "server-ca-file",
        "backend no-route",
        ("server evil 127.0.0.1:9 ssl ca-file /etc/shadow",),
        "only a file of the release",
    ),
    Case(
        "map-elsewhere",
        "frontend https-in",
        ("http-request set-header X-Leak %[req.hdr(host),map(/etc/shadow)]",),
        "map(/etc/shadow): only a file of the release",
    ),
    Case(
        "acl-file",
        "frontend https-in",
        ("acl evil hdr(host) -f /etc/shadow",),
        "only a file of the release",
    ),
    Case(
        "bind-unix-socket",
        "frontend http-in",
        ("bind unix@/tmp/greenlight-evil.sock",),
        "only an address and a port",
    ),
    Case(
        "bind-path",
        "frontend http-in",
        ("bind /tmp/greenlight-evil.sock",),
        "only an address and a port",
    ),
    Case(
        "crt-list-file-elsewhere",
        "crt-list",
        ("/etc/ssl/private/greenlight-evil.pem shop.example.com",),
        "only FILE.pem and SNI names",
    ),
    Case(
        "crt-list-options",
        "crt-list",
        ("default.pem [ca-file /etc/shadow] shop.example.com",),
        "only FILE.pem and SNI names",
    ),
)


def fill(line: str, **values: str) -> str:
    """``line`` with ``{lua}`` and ``{marker}`` replaced (HAProxy's own ``${...}`` left alone)."""
    for name, value in values.items():
        line = line.replace("{" + name + "}", value)
    return line


def bad_files(good: dict[str, bytes], case: Case, **values: str) -> dict[str, bytes]:
    """``good`` with the case's lines in place (``values`` fill ``{lua}`` and ``{marker}``)."""
    lines = [fill(line, **values) for line in case.lines]
    if case.section == "crt-list":
        text = good["crt-list"].decode() + "".join(f"{line}\n" for line in lines)
        return good | {"crt-list": text.encode()}
    config = good["haproxy.cfg"].decode()
    if case.section == "end":
        config += "\n" + "".join(f"{line}\n" for line in lines)
    else:
        header = f"\n{case.section}\n"
        assert header in config, f"no section {case.section!r} in the rendered config"
        inserted = "".join(
            f"    {line.strip()}\n" if not line.startswith(".") else f"{line}\n" for line in lines
        )
        config = config.replace(header, header + inserted, 1)
    return good | {"haproxy.cfg": config.encode()}


MEMBER_CASES = (
    # (id, members as (name, content, type), why)
    ("extra-lua-file", (("evil.lua", b"os.execute('id')", "file"),), "evil.lua"),
    ("hidden-file", ((".evil", b"x", "file"),), ".evil"),
    ("symlink", (("hosts.map", b"/etc/shadow", "symlink"),), "hosts.map"),
)
