"""The cluster snapshot the HAProxy config is rendered from.

Everything the config depends on, and nothing else: the worker nodes HAProxy can reach, each
app's hosts, health check, live colour and the NodePort of each colour's Service, and the edge's
own settings. The same snapshot always renders the same bytes. Format: docs/edge.md; an example
is ``events/cluster-snapshot.json``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from .. import validate as rules
from ..colour import Colour
from ..errors import ConfigError

# The apps file's rules (greenlight.validate): a snapshot given by hand gets the same checks.
Host = Annotated[str, AfterValidator(rules.host)]
Account = Annotated[str, AfterValidator(rules.unix_account)]
NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NodePort = Annotated[int, Field(ge=30000, le=32767)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Node(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    address: str = Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}$")
    ready: bool = True
    schedulable: bool = True

    @property
    def serving(self) -> bool:
        """Only Ready, uncordoned nodes take traffic (a cordoned node is being drained)."""
        return self.ready and self.schedulable


class Health(_Model):
    path: Annotated[str, AfterValidator(rules.http_path)] = "/healthz"
    expect_status: int = Field(default=200, ge=100, le=599)
    interval_seconds: int = Field(default=2, ge=1, le=60)


class Hosts(_Model):
    live: list[Host] = Field(min_length=1)
    preview: Host


class App(_Model):
    name: str = Field(pattern=NAME, max_length=40)
    live_colour: Colour
    hosts: Hosts
    health: Health = Health()
    node_ports: dict[Colour, NodePort] = Field(
        description="The NodePort of each colour's Service; a colour with no Service is absent "
        "(before an app's first promotion the live colour has none: its live hosts get the 404 "
        "backend while the preview host already reaches the candidate)."
    )
    certificate: str | None = Field(
        default=None, description="Name of an entry in certificates; None: the default one."
    )
    backup_colour: Colour | None = Field(
        default=None,
        description="The previous live colour, kept warm after a promotion: its servers back up "
        "the live route (HAProxy sends live traffic to them only while every live server is "
        "down): the live hosts route to the backend <app>-live-<live colour> instead of "
        "<app>-<live colour>. Ignored unless both colours have a Service.",
    )
    preview_colour: Colour | None = Field(
        default=None,
        description="Where the preview host goes; None: the colour that is not live. Set to the "
        "live colour while a promotion is watched, so that checks through the preview host see "
        "the new colour alone, never its backup.",
    )
    gating: bool = Field(
        default=False,
        description="A rollout of this app is in flight (deploying through watching): the "
        "backend of the preview colour (its candidate) is checked every FAST_CHECK_MS while a "
        "server is down or changing state, so that HAProxy admits it within about half a second "
        "of its pods being ready. The same colour keeps them through the promotion (the preview "
        "host follows the new live colour while it is watched), so haproxy.cfg does not change.",
    )


class Certificate(_Model):
    name: str = Field(pattern=NAME)
    file: str = Field(pattern=r"^[A-Za-z0-9._-]+\.pem$", description="File name on the instance.")
    hosts: list[Host] = Field(
        default_factory=list, description="SNI names; none: only the default certificate."
    )


class Stats(_Model):
    port: int = Field(default=8404, ge=1, le=65535)
    bind_address: str = Field(
        default="127.0.0.1",
        pattern=r"^\d{1,3}(\.\d{1,3}){3}$",
        description="Where the stats page listens unless the instance names its management "
        "address (GREENLIGHT_STATS_ADDRESS in its environment). Never every address.",
    )
    user: Annotated[str, AfterValidator(rules.stats_user)] = "admin"
    password_hash: Annotated[str, AfterValidator(rules.crypt_hash)] = Field(
        description="crypt(3) hash (e.g. SHA-512, $6$...) of the stats password; never plain."
    )


class Edge(_Model):
    http_port: int = Field(default=80, ge=1, le=65535)
    https_port: int = Field(default=443, ge=1, le=65535)
    bind_address: str = "*"
    maxconn: int = Field(default=20000, ge=100)
    hsts_seconds: int = Field(default=63072000, ge=0)
    slowstart_seconds: int = Field(default=10, ge=0, le=600)
    hard_stop_after_seconds: int = Field(default=30, ge=1, le=3600)
    mworker_max_reloads: int = Field(default=50, ge=1, le=1000)
    user: Account = Field(
        default="haproxy",
        description="The user HAProxy's workers run as (the master starts as root and drops).",
    )
    group: Account = "haproxy"
    servers_per_backend: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="At most this many serving nodes per backend, chosen per app by rendezvous "
        "hashing (0: every serving node). Any node forwards a NodePort to the app's ready pods.",
    )
    stats: Stats


class Snapshot(_Model):
    version: Literal[1]
    edge: Edge
    nodes: list[Node]
    apps: list[App]
    certificates: list[Certificate] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Snapshot:
        names = [app.name for app in self.apps]
        if len(set(names)) != len(names):
            raise ValueError("app names repeat")
        hosts = [h for app in self.apps for h in (*app.hosts.live, app.hosts.preview)]
        if len(set(hosts)) != len(hosts):
            raise ValueError("a host is routed to more than one app")
        certs = {c.name for c in self.certificates}
        for app in self.apps:
            if app.certificate is not None and app.certificate not in certs:
                raise ValueError(f"app {app.name}: no certificate named {app.certificate!r}")
        return self


def _shown(loc: tuple[int | str, ...], value: object) -> str:
    if any(rules.is_secret_field(part) for part in loc):
        return "(withheld: may be a secret)"
    return repr(str(value)[:60])


def parse_snapshot(text: str | bytes, *, origin: str = "snapshot") -> Snapshot:
    try:
        return Snapshot.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: got "
            f"{_shown(err['loc'], err.get('input'))}; expected: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise ConfigError(f"{origin} is invalid: {problems}") from None
