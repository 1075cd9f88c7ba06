"""AWS clients, built at the edge and passed in, each made on its first use.

Client creation costs tens of milliseconds of a cold start, so a function's runtime holds
:class:`Clients` and hands out lazy clients: the real boto3 client is made the first time one
of its methods is called. The accessors are typed with the boto3 stubs (imported for the type
checker only: nothing is added to a cold start). No pydantic or YAML here: the webhook function
imports this module and must start fast.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_codecommit import CodeCommitClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=15, retries={"max_attempts": 4, "mode": "standard"}
)
# A synchronous invoke of the haproxy function (edgepush.py) waits for its fleet reload, within
# the caller's deadline: its client is made per push (``Clients.lambda_within``) with that read
# timeout, and without retries (a retried RequestResponse invoke is a second push).
PUSH_RETRIES: Any = {"total_max_attempts": 1, "mode": "standard"}  # one attempt


class LazyClient:
    """A boto3 client made on the first call of one of its methods."""

    def __init__(self, clients: Clients, service: str) -> None:
        self._clients = clients
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clients.client(self._service), name)


@dataclass
class Clients:
    """boto3 clients made on first use from one session."""

    session: boto3.session.Session = field(default_factory=boto3.session.Session)
    _made: dict[str, Any] = field(default_factory=dict)
    # A boto3 Session is not safe to make clients from on two threads at once.
    _making: threading.Lock = field(default_factory=threading.Lock)

    def client(self, service: str) -> Any:
        with self._making:
            if service not in self._made:
                self._made[service] = self.session.client(service, config=CLIENT_CONFIG)  # type: ignore[call-overload]
            return self._made[service]

    def lambda_within(self, seconds: float) -> LambdaClient:
        """A Lambda client that waits at most ``seconds`` for an answer and never retries."""
        config = CLIENT_CONFIG.merge(
            Config(
                connect_timeout=max(min(5.0, seconds), 1.0),
                read_timeout=max(seconds, 1.0),
                retries=PUSH_RETRIES,
            )
        )
        return self.session.client("lambda", config=config)

    def _lazy(self, service: str) -> Any:
        return LazyClient(self, service)

    @property
    def dynamodb(self) -> DynamoDBClient:
        return cast("DynamoDBClient", self._lazy("dynamodb"))

    @property
    def s3(self) -> S3Client:
        return cast("S3Client", self._lazy("s3"))

    @property
    def sqs(self) -> SQSClient:
        return cast("SQSClient", self._lazy("sqs"))

    @property
    def ecr(self) -> ECRClient:
        return cast("ECRClient", self._lazy("ecr"))

    @property
    def events(self) -> EventBridgeClient:
        return cast("EventBridgeClient", self._lazy("events"))

    @property
    def lambda_(self) -> LambdaClient:
        return cast("LambdaClient", self._lazy("lambda"))

    @property
    def secretsmanager(self) -> SecretsManagerClient:
        return cast("SecretsManagerClient", self._lazy("secretsmanager"))

    @property
    def ssm(self) -> SSMClient:
        return cast("SSMClient", self._lazy("ssm"))

    @property
    def ec2(self) -> EC2Client:
        return cast("EC2Client", self._lazy("ec2"))

    @property
    def autoscaling(self) -> AutoScalingClient:
        return cast("AutoScalingClient", self._lazy("autoscaling"))

    @property
    def sns(self) -> SNSClient:
        return cast("SNSClient", self._lazy("sns"))

    @property
    def codecommit(self) -> CodeCommitClient:
        return cast("CodeCommitClient", self._lazy("codecommit"))
