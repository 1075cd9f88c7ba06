"""The apps file: which repository and branch deploy which app, and how.

One YAML document (format in docs/configuration.md), kept as an S3 object in the Greenlight
bucket (versioned, so every change is kept and can be restored). It is validated with pydantic:
a bad file fails with the field, the value and what was expected, and nothing is deployed.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
HOST = r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
COMMIT = re.compile(r"^[0-9a-f]{40}$")
TAG_FIELDS = frozenset({"commit", "short", "branch"})
TAG_CHARS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"

Name = Annotated[str, Field(pattern=DNS_LABEL, max_length=40)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Model):
    provider: Literal["codecommit", "github"]
    repository: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-/]+$")
    branch: str = Field(default="main", min_length=1, max_length=255)


class Image(_Model):
    repository: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9._\-/:]*[a-z0-9]$")
    tag: str = Field(
        default="{commit}",
        description="Tag rule: a format string over {commit} (40 hex), {short} (12) and {branch}.",
    )
    wait_for_ecr: bool = False

    @field_validator("tag")
    @classmethod
    def _tag_rule(cls, rule: str) -> str:
        fields = {name for _, name, _, _ in string.Formatter().parse(rule) if name is not None}
        unknown = fields - TAG_FIELDS
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}; allowed: commit, short, branch")
        if not fields & {"commit", "short"}:
            raise ValueError("must contain {commit} or {short} so each commit gets its own tag")
        return rule

    def reference(self, *, commit: str, branch: str) -> str:
        """The image reference ``repository:tag`` for ``commit``."""
        if not COMMIT.match(commit):
            raise ConfigError(f"commit {commit!r}: expected 40 lowercase hex digits")
        safe_branch = re.sub(r"[^A-Za-z0-9_.-]", "-", branch)
        tag = self.tag.format(commit=commit, short=commit[:12], branch=safe_branch)
        if not TAG_CHARS.match(tag):
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
    path: str = Field(default="/healthz", pattern=r"^/[\x21-\x7e]*$")
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


class Hosts(_Model):
    live: list[Annotated[str, Field(pattern=HOST, max_length=253)]] = Field(min_length=1)
    preview: Annotated[str, Field(pattern=HOST, max_length=253)]

    @model_validator(mode="after")
    def _distinct(self) -> Hosts:
        if self.preview in self.live:
            raise ValueError(f"preview host {self.preview!r} is also a live host")
        if len(set(self.live)) != len(self.live):
            raise ValueError("live hosts repeat")
        return self


class Tls(_Model):
    certificate: str = Field(
        pattern=r"^(s3://[a-z0-9.\-]{3,63}/.+|arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+)$",
        description="s3://bucket/key.pem or a Secrets Manager secret ARN (PEM: cert + key).",
    )


class Resources(_Model):
    cpu: str = Field(default="100m", pattern=QUANTITY)
    memory: str = Field(default="128Mi", pattern=QUANTITY)


class App(_Model):
    name: Name
    source: Source
    namespace: Name = "default"
    image: Image
    container: Name = "app"
    replicas: int = Field(default=2, ge=1, le=500)
    container_port: int = Field(default=8080, ge=1, le=65535)
    service_port: int = Field(default=80, ge=1, le=65535)
    resources: Resources = Resources()
    health: Health = Health()
    hosts: Hosts
    tls: Tls | None = None
    manual_approval: bool = False
    promotion: Promotion = Promotion()


CERTIFICATE_REF = (
    r"^(s3://[a-z0-9.\-]{3,63}/.+|arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+)$"
)


class EdgeSettings(_Model):
    """The HAProxy edge's own settings (docs/edge.md)."""

    default_certificate: str = Field(
        pattern=CERTIFICATE_REF, description="Served to hosts no app certificate names."
    )
    stats_user: str = Field(default="admin", pattern=r"^[A-Za-z0-9_.-]+$")
    stats_password_hash: str = Field(
        pattern=r"^\$(5|6|2[aby]|y)\$\S+$", description="crypt(3) hash, never the password."
    )
    node_selector: str = Field(
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


class NightSettings(_Model):
    """The night shrink of the worker Auto Scaling Group (docs/night.md). The times and the time
    zone of the two schedules are template parameters; what they do is set here."""

    keep: int | None = Field(default=None, ge=0, description="Nodes to keep at night.")
    keep_fraction: float | None = Field(
        default=None, ge=0, le=1, description="Or: the fraction of today's nodes to keep."
    )
    min_nodes: int = Field(default=1, ge=1)
    headroom: float = Field(default=0.1, ge=0, lt=1)
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Labels of the group's worker nodes."
    )
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
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{where}: got {shown}; expected: {error['msg']}"


def parse_apps(text: str, *, origin: str = "apps file") -> AppsFile:
    """Parse and validate an apps file; every problem is reported with its field path."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping with 'version' and 'apps'")
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
    try:
        return AppsFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(err, names) for err in exc.errors(include_url=False))
        raise ConfigError(f"{origin} is invalid: {problems}") from None
