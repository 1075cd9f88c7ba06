"""Who is asking: bearer tokens mapped to users, with an expiry, as a kube-apiserver's token
authenticators do it.

- Static tokens (``--token-auth-file``) and minted tokens: a token maps to an :class:`Identity`
  (name, groups) and, optionally, an expiry; an unknown or expired token is a 401
  ``Unauthorized`` Status, exactly as the apiserver answers it
  (AS/pkg/endpoints/handlers/responsewriters/errors.go, filters/authentication.go).
- EKS tokens (``k8s-aws-v1.`` + a presigned STS GetCallerIdentity URL, as
  ``aws eks get-token`` and Greenlight's :mod:`greenlight.cluster.eks_token` make them): checked
  the way aws-iam-authenticator checks them without calling STS: the URL's shape, the signed
  ``x-k8s-aws-id`` header naming the trusted cluster, and its age (``X-Amz-Date``) under 15
  minutes. The identity is what the trust maps the signing access key to (an access entry).

Every authenticated identity carries ``system:authenticated``, as on a real cluster.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from .errors import ApiError

AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"  # the privileged group: RBAC is not consulted
EKS_TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - a format prefix, not a secret
EKS_TOKEN_LIFETIME = 15 * 60.0  # aws-iam-authenticator's presignedURLExpiration


@dataclass(frozen=True)
class Identity:
    name: str
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        groups = tuple(dict.fromkeys([*self.groups, AUTHENTICATED]))
        object.__setattr__(self, "groups", groups)

    @property
    def superuser(self) -> bool:
        return MASTERS in self.groups

    def as_dict(self) -> dict[str, object]:
        return {"username": self.name, "groups": list(self.groups)}


SUPERUSER = Identity("kubernetes-admin", (MASTERS,))


def service_account(namespace: str, name: str) -> Identity:
    """A ServiceAccount's identity, as its tokens authenticate."""
    return Identity(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}"),
    )


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


@dataclass
class _Grant:
    identity: Identity
    expires_at: float | None


@dataclass
class EksTrust:
    """Tokens for ``cluster``, signed by ``access_keys`` (access key id -> identity; ``"*"``
    for any key), are accepted while younger than ``lifetime`` seconds."""

    cluster: str
    access_keys: dict[str, Identity]
    lifetime: float = EKS_TOKEN_LIFETIME


@dataclass
class Authenticator:
    """Bearer tokens -> identities. ``clock`` (epoch seconds) decides expiry; tests move it."""

    clock: Callable[[], float] = time.time
    _tokens: dict[str, _Grant] = field(default_factory=dict)
    eks: list[EksTrust] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (user name, token kind), bounded
    requests_by_user: Counter[str] = field(default_factory=Counter)  # every request, per user

    def add(self, token: str, identity: Identity, *, ttl: float | None = None) -> str:
        """Accept ``token`` as ``identity`` (for ``ttl`` seconds; None: until the end)."""
        with self.lock:
            expires = None if ttl is None else self.clock() + ttl
            self._tokens[token] = _Grant(identity, expires)
        return token

    def mint(self, identity: Identity, *, ttl: float | None = None) -> str:
        """A new random token for ``identity``."""
        return self.add(secrets.token_urlsafe(24), identity, ttl=ttl)

    def revoke(self, token: str) -> None:
        with self.lock:
            self._tokens.pop(token, None)

    def expire(self, token: str) -> None:
        """End ``token``'s validity now (it stays known: an expired token, not an unknown one)."""
        with self.lock:
            grant = self._tokens.get(token)
            if grant is not None:
                grant.expires_at = self.clock() - 1

    def trust_eks(
        self,
        cluster: str,
        identity: Identity,
        *,
        access_key: str = "*",
        lifetime: float = EKS_TOKEN_LIFETIME,
    ) -> None:
        """Accept EKS tokens for ``cluster`` signed with ``access_key`` as ``identity``."""
        with self.lock:
            for trust in self.eks:
                if trust.cluster == cluster:
                    trust.access_keys[access_key] = identity
                    trust.lifetime = lifetime
                    return
            self.eks.append(EksTrust(cluster, {access_key: identity}, lifetime))

    def authenticate(self, header: str | None) -> Identity:
        """The identity of an ``Authorization`` header's bearer token, or a 401."""
        scheme, _, token = (header or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        if token.startswith(EKS_TOKEN_PREFIX):
            identity = self._eks(token)
            kind = "eks"
        else:
            identity = self._static(token)
            kind = "token"
        with self.lock:
            self.seen.append((identity.name, kind))
            del self.seen[:-1000]
            self.requests_by_user[identity.name] += 1
        return identity

    def _static(self, token: str) -> Identity:
        now = self.clock()
        with self.lock:
            found = None
            for known, grant in self._tokens.items():  # constant time per comparison
                if hmac.compare_digest(known.encode(), token.encode()):
                    found = grant
            if found is None or (found.expires_at is not None and now >= found.expires_at):
                raise unauthorized()
            return found.identity

    def _eks(self, token: str) -> Identity:
        encoded = token[len(EKS_TOKEN_PREFIX) :]
        try:
            url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            raise unauthorized() from None
        parts = urlsplit(url)
        query = {k.lower(): v[-1] for k, v in parse_qs(parts.query).items()}
        host = (parts.hostname or "").lower()
        signed = query.get("x-amz-signedheaders", "").split(";")
        if (
            parts.scheme != "https"
            or not (host == "sts.amazonaws.com" or host.startswith("sts."))
            or query.get("action") != "GetCallerIdentity"
            or "x-k8s-aws-id" not in signed
            or not query.get("x-amz-signature")
        ):
            raise unauthorized()
        try:
            signed_at = datetime.strptime(query.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ")
        except ValueError:
            raise unauthorized() from None
        access_key = query.get("x-amz-credential", "").split("/")[0]
        age = self.clock() - signed_at.replace(tzinfo=UTC).timestamp()
        with self.lock:
            for trust in self.eks:
                identity = trust.access_keys.get(access_key) or trust.access_keys.get("*")
                # The cluster name is signed into the URL (x-k8s-aws-id); botocore puts the header
                # only into the signature, so the stand-in trusts the one cluster it serves.
                if identity is not None and -60 <= age < trust.lifetime:
                    return identity
        raise unauthorized()
