"""Waiting, within a deadline, until an image tag exists in ECR."""

from __future__ import annotations

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


def image_digest(ecr: ECRClient, *, repository: str, tag: str) -> str | None:
    """The digest of ``repository:tag`` in ECR, or None while it is not there."""
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
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
