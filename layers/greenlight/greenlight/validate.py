"""Input rules: what a string from the apps file may hold, and how YAML input is read.

Every apps-file string that reaches the HAProxy config, a Kubernetes object or the edge bundle is
checked by one function here (docs/configuration.md lists them); ``appconfig`` and the cluster
snapshot apply them, ``settings`` applies the namespace rule to the allow-list. Each function
returns the value unchanged or raises ``ValueError`` with what is wrong (never echoing a value
that could be a secret), so pydantic reports it under the field's name.

Nothing is imported from the rest of the layer: this is the bottom of it. PyYAML is imported only
by :func:`load_yaml`, on first use.
"""

from __future__ import annotations

import re
import string
from typing import Any

# RFC 3986: pchar = unreserved / pct-encoded / sub-delims / ":" / "@"; a path is "/" + pchars
# and "/"; a query is pchars, "/" and "?". HAProxy reads "'" as a quote: the renderer escapes it.
_PATH_CHARS = frozenset(string.ascii_letters + string.digits + "-._~" + "!$&'()*+,;=" + ":@/")
_QUERY_CHARS = _PATH_CHARS | {"?"}
MAX_HTTP_PATH = 1024
MAX_HOST = 253
MAX_LABEL = 63
MAX_IMAGE_REPOSITORY = 255
MAX_TAG = 128
MAX_CERTIFICATE_REF = 2048
MAX_BRANCH = 255

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_HOST_LABEL = _DNS_LABEL
_DOMAIN = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
# The distribution reference grammar (lowercase): [domain[:port]/]component(/component)*.
_IMAGE_REPOSITORY = re.compile(
    rf"(?:{_DOMAIN}(?::[0-9]{{1,5}})?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
)
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
TAG_FIELDS = frozenset({"commit", "short", "branch"})
_TAG_LITERAL = re.compile(r"[A-Za-z0-9_.-]*")
_STATS_USER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_CRYPT_HASH = re.compile(r"\$(5|6|2[aby]|y)\$[A-Za-z0-9./$=,]{1,500}")
_S3_REF = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9._/+=@-]+")
_SECRET_ARN = re.compile(
    r"arn:aws(-cn|-us-gov)?:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+"
)
_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"(?:{_DOMAIN}/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"(?:{_LABEL_NAME})?")
_REQUIREMENT = (
    rf"(?:! *{_LABEL_KEY.pattern}"
    rf"|{_LABEL_KEY.pattern}(?: *(?:==?|!=) *{_LABEL_VALUE.pattern}"
    rf"| +(?:in|notin) *\( *{_LABEL_VALUE.pattern}(?: *, *{_LABEL_VALUE.pattern})* *\))?)"
)
_SELECTOR = re.compile(rf"(?: *{_REQUIREMENT}(?: *, *{_REQUIREMENT})* *)?")
_BRANCH_FORBIDDEN = frozenset(" ~^:?*[\\\x7f")

SECRET_WORDS = ("password", "secret", "token", "key")


def is_secret_field(name: object) -> bool:
    """A field whose value is never echoed in an error (its name holds one of SECRET_WORDS)."""
    return isinstance(name, str) and any(word in name.lower() for word in SECRET_WORDS)


def _char(value: str, index: int) -> str:
    return f"character {value[index]!r} at position {index + 1}"


def http_path(value: str) -> str:
    """An origin-form HTTP path: "/", RFC 3986 path characters, then optionally "?" and a query."""
    if len(value) > MAX_HTTP_PATH:
        raise ValueError(f"at most {MAX_HTTP_PATH} characters")
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    allowed, index = _PATH_CHARS, 0
    while index < len(value):
        char = value[index]
        if char == "%":
            if not re.fullmatch(r"[0-9A-Fa-f]{2}", value[index + 1 : index + 3]):
                raise ValueError(f"'%' at position {index + 1} must start a %XX escape")
            index += 3
            continue
        if char == "?" and allowed is _PATH_CHARS:
            allowed = _QUERY_CHARS
        elif char not in allowed:
            raise ValueError(
                f"{_char(value, index)} is not allowed: RFC 3986 path characters only "
                "(letters, digits, -._~!$&'()*+,;=:@/ and %XX; after '?', also '?')"
            )
        index += 1
    return value


def dns_label(value: str, max_length: int = MAX_LABEL) -> str:
    """A DNS-1123 label: lowercase letters, digits and '-', starting and ending alphanumeric."""
    if not 1 <= len(value) <= max_length:
        raise ValueError(f"1 to {max_length} characters")
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            "a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def app_namespace(value: str) -> str:
    """A namespace Greenlight may deploy to: a DNS-1123 label, never a ``kube-*`` namespace."""
    dns_label(value)
    if value.startswith("kube-"):
        raise ValueError("kube-* namespaces belong to the cluster: Greenlight never deploys there")
    return value


def host(value: str) -> str:
    """An RFC 1123 host name in lowercase with at least two labels, optionally ``*.`` first."""
    if len(value) > MAX_HOST:
        raise ValueError(f"at most {MAX_HOST} characters")
    labels = value.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if len(labels) < 2:
        raise ValueError("a host name with at least two labels (name.domain)")
    for label in labels:
        if len(label) > MAX_LABEL or not _HOST_LABEL.fullmatch(label):
            raise ValueError(
                f"label {label!r}: 1 to 63 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit (RFC 1123)"
            )
    return value


def image_repository(value: str) -> str:
    """An image repository (no tag, no digest): ``[registry[:port]/]path``, lowercase."""
    if len(value) > MAX_IMAGE_REPOSITORY:
        raise ValueError(f"at most {MAX_IMAGE_REPOSITORY} characters")
    if not _IMAGE_REPOSITORY.fullmatch(value):
        raise ValueError(
            "an image repository without tag or digest: [registry[:port]/]name(/name)*, "
            "lowercase letters and digits separated by '.', '_', '__' or '-'"
        )
    return value


def tag_rule(rule: str) -> str:
    """A tag rule: literal tag characters and the fields {commit}, {short}, {branch}."""
    fields = set()
    for literal, name, spec, conversion in string.Formatter().parse(rule):
        bad = re.sub(r"[A-Za-z0-9_.-]", "", literal)
        if bad:
            raise ValueError(f"character {bad[0]!r} is not allowed in a tag (A-Z a-z 0-9 _ . -)")
        if name is None:
            continue
        if name not in TAG_FIELDS:
            raise ValueError(f"unknown field(s) [{name!r}]; allowed: commit, short, branch")
        if spec or conversion:
            raise ValueError(f"field {{{name}}}: no conversion or format spec is allowed")
        fields.add(name)
    if not fields & {"commit", "short"}:
        raise ValueError("must contain {commit} or {short} so each commit gets its own tag")
    sample = rule.format(commit="0" * 40, short="0" * 12, branch="main")
    if not TAG.fullmatch(sample):
        raise ValueError(
            f"makes tags such as {sample[:40]!r}...: a tag starts with a letter, digit or '_' "
            f"and has at most {MAX_TAG} characters"
        )
    return rule


def git_branch(value: str) -> str:
    """A branch name git accepts (``git check-ref-format --branch``), ASCII only."""
    if not 1 <= len(value) <= MAX_BRANCH:
        raise ValueError(f"1 to {MAX_BRANCH} characters")
    for index, char in enumerate(value):
        if ord(char) < 0x20 or ord(char) > 0x7E or char in _BRANCH_FORBIDDEN:
            raise ValueError(f"{_char(value, index)} is not allowed in a branch name")
    if (
        value.startswith(("-", "/", "."))
        or value.endswith(("/", ".", ".lock"))
        or "//" in value
        or ".." in value
        or "@{" in value
        or "/." in value
        or value == "@"
    ):
        raise ValueError("not a valid git branch name (git check-ref-format)")
    return value


_ACCOUNT = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def unix_account(value: str) -> str:
    """A Unix user or group name other than root (HAProxy keeps root for uid or gid 0)."""
    if not _ACCOUNT.fullmatch(value):
        raise ValueError("a Unix name: a-z or _, then up to 31 of a-z 0-9 _ -")
    if value == "root":
        raise ValueError("must not be root: HAProxy's workers drop to this user and group")
    return value


def stats_user(value: str) -> str:
    if not _STATS_USER.fullmatch(value):
        raise ValueError("1 to 64 letters, digits, '_', '.' or '-'")
    return value


def crypt_hash(value: str) -> str:
    """A crypt(3) hash ($5$, $6$, $2a/b/y$ or $y$); the message never repeats the value."""
    if not _CRYPT_HASH.fullmatch(value):
        raise ValueError(
            "a crypt(3) hash ($5$, $6$, $2b$ or $y$...: letters, digits, '.', '/', '$', '=', ','), "
            "never the password"
        )
    return value


def certificate_ref(value: str) -> str:
    """``s3://bucket/key`` or a Secrets Manager secret ARN, in characters the instance's script
    can pass on safely."""
    if len(value) > MAX_CERTIFICATE_REF:
        raise ValueError(f"at most {MAX_CERTIFICATE_REF} characters")
    if not (_S3_REF.fullmatch(value) or _SECRET_ARN.fullmatch(value)):
        raise ValueError(
            "s3://bucket/key (key: letters, digits and ._/+=@-) or a Secrets Manager secret ARN"
        )
    return value


def label_key(value: str) -> str:
    if len(value) > MAX_HOST + 1 + MAX_LABEL or not _LABEL_KEY.fullmatch(value):
        raise ValueError("a label key: [dns-subdomain/]name (name: up to 63 of A-Z a-z 0-9 -_.)")
    return value


def label_value(value: str) -> str:
    if not _LABEL_VALUE.fullmatch(value):
        raise ValueError("a label value: up to 63 of A-Z a-z 0-9 -_., alphanumeric at both ends")
    return value


def label_selector(value: str) -> str:
    """A Kubernetes label selector (``key``, ``!key``, ``key=value``, ``key!=value``,
    ``key in (a,b)``, ``key notin (a,b)``, comma-separated); empty selects everything."""
    if len(value) > 1024 or not _SELECTOR.fullmatch(value):
        raise ValueError(
            "a label selector: comma-separated key, !key, key=value, key!=value, "
            "key in (v1,v2) or key notin (v1,v2)"
        )
    return value


# --- YAML -------------------------------------------------------------------------------------


class YamlRefused(ValueError):
    """A YAML document that is too big, too deep, uses anchors, aliases or duplicate keys, or does
    not parse. ``line`` and ``column`` are 1-based (0: unknown); the message never quotes the
    document's text (PyYAML's own messages show the offending line: it may hold a secret)."""

    def __init__(self, problem: str, line: int = 0, column: int = 0) -> None:
        where = f"line {line}, column {column}: " if line else ""
        super().__init__(f"{where}{problem}")
        self.problem, self.line, self.column = problem, line, column


MAX_YAML_DEPTH = 32
_LOADER: Any = None


def _loader() -> Any:
    global _LOADER  # noqa: PLW0603 - the class is built once, on first use (PyYAML is deferred)
    if _LOADER is not None:
        return _LOADER
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader without anchors, aliases or duplicate keys, and with a nesting limit."""

        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                mark = event.start_mark
                raise YamlRefused(
                    "YAML anchors and aliases (&name, *name) are not allowed",
                    mark.line + 1,
                    mark.column + 1,
                )
            self.depth += 1
            if self.depth > MAX_YAML_DEPTH:
                mark = event.start_mark
                raise YamlRefused(
                    f"nested more than {MAX_YAML_DEPTH} levels deep", mark.line + 1, mark.column + 1
                )
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable: the base class refuses it
                if duplicate:
                    mark = key_node.start_mark
                    shown = f" {key!r}" if isinstance(key, str) and len(key) <= 60 else ""
                    raise YamlRefused(f"duplicate key{shown}", mark.line + 1, mark.column + 1)
            return super().construct_mapping(node, deep=deep)

    _LOADER = StrictLoader
    return _LOADER


def load_yaml(text: str, *, max_bytes: int) -> Any:
    """One YAML document, read by :class:`StrictLoader`; :class:`YamlRefused` when it cannot be.

    The size is checked before parsing, so a big document costs nothing to refuse."""
    size = len(text) if len(text) > max_bytes else len(text.encode("utf-8", "replace"))
    if size > max_bytes:
        raise YamlRefused(f"{size} bytes; at most {max_bytes} bytes")
    import yaml

    try:
        loader = _loader()(text)  # the reader refuses control characters here, at once
    except yaml.reader.ReaderError as exc:
        raise YamlRefused(
            f"unacceptable character #x{exc.character:04x} at position {exc.position}"
            if isinstance(exc.character, int)
            else "not valid text"
        ) from None
    try:
        return loader.get_single_data()
    except YamlRefused:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "not valid YAML"
        raise YamlRefused(
            problem, mark.line + 1 if mark else 0, mark.column + 1 if mark else 0
        ) from None
    except yaml.YAMLError as exc:
        raise YamlRefused(type(exc).__name__) from None
    except RecursionError:
        raise YamlRefused(f"nested more than {MAX_YAML_DEPTH} levels deep") from None
    finally:
        loader.dispose()
