"""Waiting, within a deadline, until an image tag exists in ECR; and the reference a candidate
is deployed by: pinned to the digest ECR returned, so what was checked is what runs."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from ..deadline import Deadline

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

logger = Logger(child=True)
POLL_SECONDS = 5.0
DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")


def pinned(image: str, digest: str | None) -> str:
    """The reference a Deployment runs: ``repository@<digest>`` when ECR gave ``image``'s
    digest (a tag can be pushed again; a digest names one image for good), else ``image``
    unchanged (no check was made: another registry, or no wait asked for)."""
    if not digest or not DIGEST.match(digest):
        return image
    repository = image.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:  # a tag (a registry's port comes before a "/")
        repository = repository.rsplit(":", 1)[0]
    return f"{repository}@{digest}"


def image_digest(ecr: ECRClient, *, repository: str, tag: str) -> str | None:
    """The digest of ``repository:tag`` in ECR (``tag`` may be a ``sha256:`` digest), or None
    while it is not there."""
    image_id: dict[str, str] = {"imageDigest": tag} if DIGEST.match(tag) else {"imageTag": tag}
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[image_id])  # type: ignore[list-item]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ImageNotFoundException":
            return None
        raise
    details = found.get("imageDetails") or [{}]
    return details[0].get("imageDigest") or ""


def wait_for_image(
    ecr: ECRClient,
    *,
    repository: str,
    tag: str,
    deadline: Deadline,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float | None = None,
) -> str | None:
    """The digest of ``repository:tag`` once it exists; None if the deadline passes first."""
    poll = poll_seconds or POLL_SECONDS
    while (digest := image_digest(ecr, repository=repository, tag=tag)) is None:
        if deadline.expired():
            return None
        logger.info(
            "image not in ECR yet",
            extra={
                "repository": repository,
                "tag": tag,
                "remaining_s": round(deadline.remaining()),
            },
        )
        sleep(min(poll, deadline.remaining()))
    return digest
