"""Signing config bundles with the stack's KMS key (``EdgeSigningKey``), and checking a signature.

The haproxy function signs every bundle it publishes; the apply document on each instance
verifies the signature (``aws kms verify``) before it extracts anything. What is signed is
:func:`greenlight.edge.trust.statement_digest`: the SHA-256 of the purpose, ``bucket/key`` and
the bundle's SHA-256, as a KMS ``DIGEST`` with ``ECDSA_SHA_256``. The signature travels base64 in
the object's metadata (``signature``); an S3 copy of the object (a rollback) keeps it, and it
stays valid because the copy has the same bucket, key and bytes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from .trust import statement_digest

SIGNATURE_KEY = "signature"  # the object's metadata entry
ALGORITHM = "ECDSA_SHA_256"


@dataclass(frozen=True)
class KmsSigner:
    """``kms:Sign`` and ``kms:Verify`` with one asymmetric key (ECC_NIST_P256)."""

    kms: Any
    key_id: str

    def sign(self, bucket: str, key: str, sha256: str) -> str:
        """The base64 signature of the bundle ``sha256`` at ``bucket``/``key``."""
        signed = self.kms.sign(
            KeyId=self.key_id,
            Message=statement_digest(bucket, key, sha256),
            MessageType="DIGEST",
            SigningAlgorithm=ALGORITHM,
        )
        return base64.b64encode(signed["Signature"]).decode("ascii")

    def verify(self, bucket: str, key: str, sha256: str, signature: str | None) -> bool:
        """Whether ``signature`` (base64, from the object's metadata) is this key's signature of
        the bundle ``sha256`` at ``bucket``/``key``. A missing or malformed one is not."""
        if not signature:
            return False
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        try:
            answer = self.kms.verify(
                KeyId=self.key_id,
                Message=statement_digest(bucket, key, sha256),
                MessageType="DIGEST",
                Signature=raw,
                SigningAlgorithm=ALGORITHM,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "KMSInvalidSignatureException":
                return False
            raise
        return bool(answer.get("SignatureValid"))
