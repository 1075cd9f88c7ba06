"""The GitHub App JWT: made by hand and signed with python-rsa, checked here with PyJWT and
cryptography (another implementation), for both PEM forms GitHub keys come in."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from greenlight.errors import PermanentError
from greenlight.notify.auth import JWT_BACKDATE, JWT_LIFETIME, app_jwt

NOW = 1_795_684_502.0
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC = KEY.public_key()


def pem(fmt: serialization.PrivateFormat) -> str:
    return KEY.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8]
)
def test_the_app_jwt_verifies_as_rs256_with_github_s_claims(fmt):
    token = app_jwt("12345", pem(fmt), NOW)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT"}
    claims = jwt.decode(
        token, PUBLIC, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False}
    )
    assert claims == {
        "iss": "12345",
        "iat": int(NOW) - JWT_BACKDATE,
        "exp": int(NOW) + JWT_LIFETIME,
    }
    assert claims["exp"] - NOW <= 600  # GitHub refuses a JWT that lives longer than 10 minutes


def test_a_jwt_signed_with_another_key_does_not_verify():
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    text = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(app_jwt("1", text, NOW), PUBLIC, algorithms=["RS256"])


@pytest.mark.parametrize(
    "text",
    [
        "not a key at all",
        "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----",
    ],
)
def test_an_unreadable_key_is_refused_without_echoing_it(text):
    with pytest.raises(PermanentError) as refused:
        app_jwt("1", text, NOW)
    assert "private_key" in str(refused.value)
    assert "c2VjcmV0" not in str(refused.value) and "not a key" not in str(refused.value)
