"""The apps file: which repository and branch deploy which app, and how.

One YAML document (format in docs/configuration.md), kept as an S3 object in the Greenlight
bucket (versioned, so every change is kept and can be restored). It is validated with pydantic:
a bad file fails with every problem, each with the field, the value (never one of a field named
like a password, secret, token or key) and what was expected, and nothing is deployed. The
string rules live in ``validate``; the namespace allow-list comes from the stack
(``GREENLIGHT_APP_NAMESPACES``). The YAML is read without anchors or aliases, at most
``MAX_APPS_FILE_BYTES`` long.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import validate as rules
from .errors import ConfigError

COMMIT = re.compile(r"^[0-9a-f]{40}$")
TAG_FIELDS = rules.TAG_FIELDS
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"
MAX_APPS_FILE_BYTES = 256 * 1024  # refused before parsing; a real file is a few KiB per app
MAX_APP_NAME = 40  # <app>-green and <app>-blue-<hash> names must stay within 63 characters

Name = Annotated[str, AfterValidator(lambda value: rules.dns_label(value, MAX_APP_NAME))]
Label = Annotated[str, AfterValidator(rules.dns_label)]
Host = Annotated[str, AfterValidator(rules.host)]
CertificateRef = Annotated[str, AfterValidator(rules.certificate_ref)]


Account = Annotated[str, AfterValidator(rules.unix_account)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Model):
    provider: Literal["codecommit", "github"]
    repository: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-/]+$")
    branch: Annotated[str, AfterValidator(rules.git_branch)] = "main"


class Image(_Model):
    repository: Annotated[str, AfterValidator(rules.image_repository)]
    tag: Annotated[str, AfterValidator(rules.tag_rule)] = Field(
        default="{commit}",
        description="Tag rule: a format string over {commit} (40 hex), {short} (12) and {branch}.",
    )
    wait_for_ecr: bool = False

    def reference(self, *, commit: str, branch: str) -> str:
        """The image reference ``repository:tag`` for ``commit``."""
        if not COMMIT.match(commit):
            raise ConfigError(f"commit {commit!r}: expected 40 lowercase hex digits")
        safe_branch = re.sub(r"[^A-Za-z0-9_.-]", "-", branch)
        tag = self.tag.format(commit=commit, short=commit[:12], branch=safe_branch)
        if not rules.TAG.fullmatch(tag):
            raise ConfigError(f"image tag {tag!r} from rule {self.tag!r} is not a valid tag")
        return f"{self.repository}:{tag}"

    @property
    def ecr_repository_name(self) -> str | None:
        """The ECR repository name when the image lives in ECR, else None."""
        match = re.match(
            r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/(.+)$", self.repository
        )
        return match.group(2) if match else None


class Health(_Model):
    path: Annotated[str, AfterValidator(rules.http_path)] = "/healthz"
    expect_status: int = Field(default=200, ge=100, le=599)
    successes: int = Field(default=3, ge=1, le=100)
    interval_seconds: int = Field(default=2, ge=1, le=60)
    timeout_seconds: int = Field(default=2, ge=1, le=30)
    ready_deadline_seconds: int = Field(default=300, ge=10, le=3600)
    failures: int = Field(
        default=3, ge=1, le=100, description="Consecutive failed checks that roll back."
    )
    max_restarts: int = Field(
        default=2, ge=0, le=100, description="Container restarts a candidate may have."
    )
    verdict_deadline_seconds: int | None = Field(
        default=None,
        ge=10,
        le=86400,
        description="The gate's verdict (promote or roll back) within this long of gating; "
        "default: ready_deadline_seconds + 4 x (successes + failures) x interval_seconds.",
    )

    @property
    def verdict_deadline(self) -> int:
        if self.verdict_deadline_seconds is not None:
            return self.verdict_deadline_seconds
        passes = 4 * (self.successes + self.failures) * self.interval_seconds
        return self.ready_deadline_seconds + passes


class Promotion(_Model):
    watch_seconds: int = Field(
        default=30, ge=0, le=3600, description="After promotion, the live route is watched."
    )
    warm_seconds: int = Field(
        default=600,
        ge=0,
        le=86400,
        description="The previous colour stays scaled up this long: an instant rollback.",
    )
    approval_deadline_seconds: int = Field(
        default=86400,
        ge=60,
        le=7 * 86400,
        description="With manual_approval: a candidate not promoted by hand within this long "
        "of being found healthy is rolled back.",
    )


class Analysis(_Model):
    """The gate's analysis of the candidate's traffic from the edge's own counters
    (docs/gate.md, "Analysis")."""

    enabled: bool = True
    min_requests: int = Field(
        default=50,
        ge=1,
        le=10_000_000,
        description="Fewer candidate requests than this: too little to judge (said, not a pass).",
    )
    max_error_ratio: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="(5xx + connection errors + response errors) / requests above this fails.",
    )
    max_response_ms: int | None = Field(
        default=None,
        ge=1,
        le=600_000,
        description="A ceiling on the candidate's mean response time (null: off).",
    )
    max_response_ratio: float | None = Field(
        default=2.0,
        ge=1,
        le=1000,
        description="The candidate's mean response time over the live colour's (judged when "
        "both have min_requests; null: off).",
    )


class Hosts(_Model):
    live: list[Host] = Field(min_length=1)
    preview: Host

    @model_validator(mode="after")
    def _distinct(self) -> Hosts:
        if self.preview in self.live:
            raise ValueError(f"preview host {self.preview!r} is also a live host")
        if len(set(self.live)) != len(self.live):
            raise ValueError("live hosts repeat")
        return self


class Tls(_Model):
    certificate: CertificateRef = Field(
        description="s3://bucket/key.pem or a Secrets Manager secret ARN (PEM: cert + key).",
    )


class Resources(_Model):
    cpu: str = Field(default="100m", pattern=QUANTITY)
    memory: str = Field(default="128Mi", pattern=QUANTITY)


class App(_Model):
    name: Name
    source: Source
    # Checked against the stack's allow-list (validation context "namespaces") when one is given.
    namespace: str = Field(default="default", validate_default=True)
    image: Image
    container: Label = "app"
    replicas: int = Field(default=2, ge=1, le=500)
    container_port: int = Field(default=8080, ge=1, le=65535)
    service_port: int = Field(default=80, ge=1, le=65535)
    resources: Resources = Resources()
    health: Health = Health()
    hosts: Hosts
    tls: Tls | None = None
    manual_approval: bool = False
    promotion: Promotion = Promotion()
    analysis: Analysis = Analysis()

    @field_validator("namespace")
    @classmethod
    def _allowed_namespace(cls, namespace: str, info: ValidationInfo) -> str:
        rules.app_namespace(namespace)
        allowed = (info.context or {}).get("namespaces")
        if allowed is not None and namespace not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise ValueError(
                f"not one of the stack's app namespaces (AppNamespaces, "
                f"GREENLIGHT_APP_NAMESPACES: {listed})"
            )
        return namespace


class EdgeSettings(_Model):
    """The HAProxy edge's own settings (docs/edge.md)."""

    default_certificate: CertificateRef = Field(
        description="Served to hosts no app certificate names."
    )
    stats_user: Annotated[str, AfterValidator(rules.stats_user)] = "admin"
    stats_password_hash: Annotated[str, AfterValidator(rules.crypt_hash)] = Field(
        description="crypt(3) hash, never the password."
    )
    node_selector: Annotated[str, AfterValidator(rules.label_selector)] = Field(
        default="", description="Label selector of the worker nodes HAProxy sends traffic to."
    )
    http_port: int = Field(default=80, ge=1, le=65535)
    https_port: int = Field(default=443, ge=1, le=65535)
    servers_per_backend: int = Field(
        default=20, ge=0, le=1000, description="Nodes per backend (0: every serving node)."
    )
    stats_port: int = Field(default=8404, ge=1, le=65535)
    maxconn: int = Field(
        default=20000, ge=100, description="HAProxy needs about two open files per connection."
    )
    user: Account = Field(
        default="haproxy", description="HAProxy's workers run as this user (never root)."
    )
    group: Account = "haproxy"


class NightSettings(_Model):
    """The night shrink of the worker Auto Scaling Group (docs/night.md). The times and the time
    zone of the two schedules are template parameters; what they do is set here."""

    keep: int | None = Field(default=None, ge=0, description="Nodes to keep at night.")
    keep_fraction: float | None = Field(
        default=None, ge=0, le=1, description="Or: the fraction of today's nodes to keep."
    )
    min_nodes: int = Field(default=1, ge=1)
    headroom: float = Field(default=0.1, ge=0, lt=1)
    node_selector: dict[
        Annotated[str, AfterValidator(rules.label_key)],
        Annotated[str, AfterValidator(rules.label_value)],
    ] = Field(default_factory=dict, description="Labels of the group's worker nodes.")
    weekends_small: bool = True
    small_dates: list[date] = Field(default_factory=list)
    no_shrink_dates: list[date] = Field(default_factory=list)
    drain_deadline_seconds: int = Field(default=600, ge=30, le=840)

    @model_validator(mode="after")
    def _one_size(self) -> NightSettings:
        if (self.keep is None) == (self.keep_fraction is None):
            raise ValueError("night: give exactly one of keep and keep_fraction")
        both = set(self.small_dates) & set(self.no_shrink_dates)
        if both:
            raise ValueError(
                f"night: {sorted(map(str, both))} both in small_dates and no_shrink_dates"
            )
        return self


class AppsFile(_Model):
    version: Literal[1]
    apps: list[App] = Field(min_length=1)
    edge: EdgeSettings | None = None
    night: NightSettings | None = None

    @model_validator(mode="after")
    def _unique(self) -> AppsFile:
        seen: dict[Any, str] = {}
        for app in self.apps:
            keys = [
                ("name", app.name),
                ("source", (app.source.provider, app.source.repository, app.source.branch)),
                *(("host", host) for host in (*app.hosts.live, app.hosts.preview)),
            ]
            for key in keys:
                if key in seen:
                    raise ValueError(
                        f"app {app.name!r}: {key[0]} {key[1]!r} is already used "
                        f"by app {seen[key]!r}"
                    )
                seen[key] = app.name
        return self

    def app(self, name: str) -> App:
        for app in self.apps:
            if app.name == name:
                return app
        raise ConfigError(f"no app named {name!r} in the apps file")

    def app_for(self, *, provider: str, repository: str, branch: str) -> App | None:
        """The app that a push to ``repository``/``branch`` deploys, if any."""
        for app in self.apps:
            src = app.source
            if (src.provider, src.repository, src.branch) == (provider, repository, branch):
                return app
        return None


def _describe(error: Mapping[str, Any], names: list[str]) -> str:
    loc = list(error["loc"])
    if len(loc) >= 2 and loc[0] == "apps" and isinstance(loc[1], int) and loc[1] < len(names):
        loc[1] = names[loc[1]]  # apps.shop.replicas reads better than apps.0.replicas
    where = ".".join(str(part) for part in loc) or "(top level)"
    value = error.get("input")
    if error["type"] == "missing":
        return f"{where}: missing; expected: a value"
    if isinstance(value, dict | list):  # a section: its fields are named on their own
        return f"{where}: {error['msg']}"
    if any(rules.is_secret_field(part) for part in loc):
        return f"{where}: got (withheld: may be a secret); expected: {error['msg']}"
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{where}: got {shown}; expected: {error['msg']}"


def validate_apps(
    text: str, *, namespaces: Collection[str] | None = None
) -> tuple[AppsFile | None, list[str]]:
    """The apps file in ``text`` and every problem in it, each naming its field (pure).

    ``namespaces`` is the stack's allow-list (``GREENLIGHT_APP_NAMESPACES``); None checks only
    that no app deploys to a ``kube-*`` namespace. The file is None when there is a problem."""
    try:
        raw = rules.load_yaml(text, max_bytes=MAX_APPS_FILE_BYTES)
    except rules.YamlRefused as exc:
        return None, [f"not valid YAML: {exc}"]
    if not isinstance(raw, dict):
        return None, ["expected a mapping with 'version' and 'apps'"]
    apps = raw.get("apps")
    names: list[str] = []
    if isinstance(apps, dict):  # the documented form: apps keyed by name
        names = [str(name) for name in apps]
        raw = {
            **raw,
            "apps": [
                {"name": name, **body} if isinstance(body, dict) else body
                for name, body in apps.items()
            ],
        }
    context = {"namespaces": None if namespaces is None else frozenset(namespaces)}
    try:
        return AppsFile.model_validate(raw, context=context), []
    except ValidationError as exc:
        return None, [_describe(err, names) for err in exc.errors(include_url=False)]


def parse_apps(
    text: str, *, origin: str = "apps file", namespaces: Collection[str] | None = None
) -> AppsFile:
    """Parse and validate an apps file; every problem is reported with its field path."""
    apps, problems = validate_apps(text, namespaces=namespaces)
    if apps is None:
        raise ConfigError(f"{origin} is invalid: {'; '.join(problems)}")
    return apps
