"""GitHub credentials from one Secrets Manager secret: a token, or a GitHub App installation.

The secret is JSON, one of:

- ``{"token": "github_pat_..."}``: a fine-grained personal access token (or any token);
- ``{"app_id": 123, "installation_id": 456, "private_key": "-----BEGIN ..."}``: a GitHub App.
  A JWT (RS256, ``iat`` 60 s in the past against clock drift, ``exp`` 9 minutes ahead: GitHub
  allows 10) is exchanged at ``POST /app/installations/{id}/access_tokens`` for an
  installation token, kept until a minute before its ``expires_at``.

The JWT is made here (header and claims as RFC 7519 has them) and signed with python-rsa, a
pure-Python RSA (RSASSA-PKCS1-v1_5 with SHA-256: RS256, RFC 7518), imported only when an App
signs its first JWT. PyJWT with cryptography would add 15 MB of compiled code to the layer for
one signature every nine minutes. The key is the PEM GitHub hands out (PKCS#1, ``BEGIN RSA
PRIVATE KEY``) or its PKCS#8 form (``BEGIN PRIVATE KEY``). A 401 drops what is cached (the
secret and the token): the next call reads the secret again (rotation).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..deadline import Deadline
from ..errors import PermanentError
from .rest import Transport, github_headers

JWT_BACKDATE = 60  # seconds: iat this far in the past
JWT_LIFETIME = 540  # seconds from now: exp (GitHub's limit is 10 minutes)
TOKEN_MARGIN = 60  # seconds before expires_at the installation token is renewed


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rsa_key(pem: str) -> Any:
    """The RSA private key of a PKCS#1 or PKCS#8 PEM."""
    import rsa  # only App auth needs it

    text = pem.strip()
    try:
        if "BEGIN RSA PRIVATE KEY" in text:
            return rsa.PrivateKey.load_pkcs1(text.encode(), format="PEM")
        if "BEGIN PRIVATE KEY" in text:  # PKCS#8: PrivateKeyInfo wraps the PKCS#1 key
            from pyasn1.codec.der import decoder

            der = rsa.pem.load_pem(text.encode(), "PRIVATE KEY")
            info, _ = decoder.decode(der)
            return rsa.PrivateKey.load_pkcs1(bytes(info[2]), format="DER")
    except Exception as exc:  # never the key's text in the message
        raise PermanentError(
            f"GitHub secret: private_key is not a readable RSA key ({type(exc).__name__})"
        ) from None
    raise PermanentError("GitHub secret: private_key: expected an RSA private key in PEM")


def app_jwt(app_id: str, private_key: str, now: float) -> str:
    """The JWT a GitHub App signs to speak as itself (RS256)."""
    import rsa

    issued = int(now) - JWT_BACKDATE
    claims = {"iat": issued, "exp": int(now) + JWT_LIFETIME, "iss": str(app_id)}
    header = {"alg": "RS256", "typ": "JWT"}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = rsa.sign(signing_input.encode(), _rsa_key(private_key), "SHA-256")
    return f"{signing_input}.{_b64url(signature)}"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def parse_secret(text: str) -> dict[str, Any]:
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise PermanentError(
            'GitHub secret: expected JSON {"token": ...} or {"app_id", "installation_id", '
            '"private_key"}'
        )
    if found.get("token"):
        return {"token": str(found["token"])}
    missing = [k for k in ("app_id", "installation_id", "private_key") if not found.get(k)]
    if missing:
        raise PermanentError(f"GitHub secret: missing {', '.join(missing)}")
    return found


@dataclass
class SecretCredentials:
    """The token source the notifier uses: the secret decides token or App auth."""

    read_secret: Callable[[], str]
    base_url: str
    transport: Transport = field(default_factory=Transport)
    wall: Callable[[], float] = time.time
    _secret: dict[str, Any] | None = None
    _token: str = ""
    _expires: float = 0.0  # epoch seconds; 0: never (a plain token)

    def _read(self) -> dict[str, Any]:
        if self._secret is None:
            self._secret = parse_secret(self.read_secret())
        return self._secret

    def token(self, deadline: Deadline) -> str:
        secret = self._read()
        if "token" in secret:
            return str(secret["token"])
        if self._token and self.wall() < self._expires - TOKEN_MARGIN:
            return self._token
        bearer = app_jwt(str(secret["app_id"]), str(secret["private_key"]), self.wall())
        path = f"/app/installations/{int(secret['installation_id'])}/access_tokens"
        found = self.transport.send(
            "POST",
            self.base_url + path,
            None,
            github_headers(bearer),
            deadline,
            what="GitHub installation token",
        ).json()
        if not isinstance(found, dict) or not found.get("token"):
            raise PermanentError("GitHub installation token: no token in the answer")
        self._token = str(found["token"])
        self._expires = _epoch(str(found["expires_at"])) if found.get("expires_at") else 0.0
        return self._token

    def invalidate(self) -> None:
        self._secret, self._token, self._expires = None, "", 0.0
