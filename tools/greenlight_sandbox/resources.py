"""The AWS resources of the sandbox, made in moto the way template.yaml makes them in AWS."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .fleet import apps_for_local_edge
from .functions import ROOT

REGION = "eu-west-1"
ACCOUNT = "123456789012"
TABLE = "greenlight-rollouts"
IDEMPOTENCY_TABLE = "greenlight-idempotency"
BUCKET = "greenlight-sandbox-artifacts"
CONFIG_KEY = "config/apps.yaml"
GATE_QUEUE = "greenlight-gate"
ROLLOUT_QUEUE = "greenlight-rollout.fifo"
CODECOMMIT_QUEUE = "greenlight-codecommit"
# Each queue's dead-letter queue, where the functions send what can never succeed. Unlike
# template.yaml, no RedrivePolicy moves messages there after maxReceiveCount: tests peek at the
# queues, and every peek is a receive.
DEAD_LETTER_QUEUES = {
    GATE_QUEUE: "greenlight-gate-dlq",
    ROLLOUT_QUEUE: "greenlight-rollout-dlq.fifo",
    CODECOMMIT_QUEUE: "greenlight-codecommit-dlq",
}
NOTIFY_QUEUE = "greenlight-notify"
NOTIFY_DEAD_LETTER_QUEUE = "greenlight-notify-dlq"
NOTIFY_RULE = "greenlight-notify"
NOTIFY_TOPIC = "greenlight-notifications"
# Each function that talks to the cluster reads its own kubeconfig secret,
# KUBECONFIG_SECRET/<function> (its own identity): the functions' environment names the prefix in
# SANDBOX_KUBECONFIG, and function_env() gives each function its GREENLIGHT_KUBECONFIG_SECRET.
KUBECONFIG_SECRET = "greenlight/sandbox/kubeconfig"  # noqa: S105 - a secret's name
SANDBOX_KUBECONFIG = "GREENLIGHT_SANDBOX_KUBECONFIG"
CLUSTER_FUNCTIONS = ("rollout", "gate", "haproxy", "night")
WEBHOOK_SECRET = "greenlight/sandbox/github-webhook"  # noqa: S105 - a secret's name
SAMPLE_IMAGE_TAGS = ("3f9d2a41c0b7",)
APPS_FILE = ROOT / "config" / "sandbox-apps.yaml"
APP_NAMESPACES = ("shop", "blog")  # the stack's AppNamespaces: the apps file's namespaces
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def kubeconfig(url: str, token: str, ca_pem: bytes | None = None) -> str:
    """The kubeconfig the functions read from Secrets Manager: ``server``, the bearer token and,
    for the HTTPS stand-in, its CA as ``certificate-authority-data``."""
    from .kube.kubeconfig import kubeconfig as document

    return document(url, token, ca_pem=ca_pem)


def kubeconfig_secret(function: str) -> str:
    """The name of ``function``'s kubeconfig secret in the sandbox."""
    return f"{KUBECONFIG_SECRET}/{function}"


def function_env(function: str, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` as ``function`` gets it: in the sandbox (``SANDBOX_KUBECONFIG`` set) a function
    that talks to the cluster reads its own kubeconfig secret, as in AWS each has its own role
    and access entry. Any other environment is returned as it is."""
    own = dict(env)
    prefix = own.get(SANDBOX_KUBECONFIG)
    if prefix and function in CLUSTER_FUNCTIONS:
        own["GREENLIGHT_KUBECONFIG_SECRET"] = f"{prefix}/{function}"
    return own


def _ensure(fn: Any, *ok_codes: str, **kwargs: Any) -> Any:
    from botocore.exceptions import ClientError

    try:
        return fn(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ok_codes:
            raise
        return None


def create_tables(session: Any) -> None:
    """The rollouts table and the idempotency table, as template.yaml makes them."""
    ddb = session.client("dynamodb", region_name=REGION)
    _ensure(
        ddb.create_table,
        "ResourceInUseException",
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        # The announce function's outbox (greenlight/announce/decide.py).
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    _ensure(
        ddb.create_table,
        "ResourceInUseException",
        TableName=IDEMPOTENCY_TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )


def bootstrap(
    session: Any,
    *,
    kube_url: str,
    kube_tokens: Mapping[str, str],
    kube_ca: bytes | None = None,
    apps_file: Path = APPS_FILE,
    webhook_secret: str | None = None,
) -> dict[str, str]:
    """Create (or find) every sandbox resource; return the functions' environment.
    ``kube_tokens``: each cluster function's bearer token (one kubeconfig secret each)."""
    missing = sorted(set(CLUSTER_FUNCTIONS) - set(kube_tokens))
    if missing:
        raise ValueError(f"kube_tokens: no token for {', '.join(missing)}")
    create_tables(session)
    s3 = session.client("s3", region_name=REGION)
    _ensure(
        s3.create_bucket,
        "BucketAlreadyOwnedByYou",
        "BucketAlreadyExists",
        Bucket=BUCKET,
        CreateBucketConfiguration={"LocationConstraint": REGION},
    )
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(
        Bucket=BUCKET,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_object(
        Bucket=BUCKET,
        Key=CONFIG_KEY,
        Body=apps_for_local_edge(apps_file.read_bytes()),  # HAProxy drops to a user it can
        ServerSideEncryption="AES256",
    )
    _default_certificate(s3)
    signing_key = _signing_key(session)
    sqs = session.client("sqs", region_name=REGION)
    gate_url = sqs.create_queue(QueueName=GATE_QUEUE)["QueueUrl"]
    rollout_url = sqs.create_queue(
        QueueName=ROLLOUT_QUEUE,
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    )["QueueUrl"]
    codecommit_url = sqs.create_queue(QueueName=CODECOMMIT_QUEUE)["QueueUrl"]
    dead_letters = {
        source: sqs.create_queue(
            QueueName=name, Attributes={"FifoQueue": "true"} if name.endswith(".fifo") else {}
        )["QueueUrl"]
        for source, name in DEAD_LETTER_QUEUES.items()
    }
    notify_url, notify_dead, topic = _notifications(session)
    sm = session.client("secretsmanager", region_name=REGION)
    for name, value in (
        *(
            (kubeconfig_secret(f), kubeconfig(kube_url, kube_tokens[f], kube_ca))
            for f in CLUSTER_FUNCTIONS
        ),
        (WEBHOOK_SECRET, webhook_secret or secrets.token_hex(32)),
    ):
        if (
            _ensure(sm.create_secret, "ResourceExistsException", Name=name, SecretString=value)
            is None
        ):
            sm.put_secret_value(SecretId=name, SecretString=value)
    ecr = session.client("ecr", region_name=REGION)
    _ensure(ecr.create_repository, "RepositoryAlreadyExistsException", repositoryName="shop-web")
    for tag in SAMPLE_IMAGE_TAGS:  # the images that the sample events in events/ refer to
        push_image(session, "shop-web", tag)
    return {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "GREENLIGHT_TABLE": TABLE,
        "GREENLIGHT_IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
        "GREENLIGHT_CONFIG_BUCKET": BUCKET,
        "GREENLIGHT_CONFIG_KEY": CONFIG_KEY,
        "GREENLIGHT_GATE_QUEUE_URL": gate_url,
        "GREENLIGHT_ROLLOUT_QUEUE_URL": rollout_url,
        "GREENLIGHT_CODECOMMIT_QUEUE_URL": codecommit_url,  # EventBridge's target (the rule)
        "GREENLIGHT_ROLLOUT_DLQ_URL": dead_letters[ROLLOUT_QUEUE],
        "GREENLIGHT_CODECOMMIT_DLQ_URL": dead_letters[CODECOMMIT_QUEUE],
        "GREENLIGHT_GATE_DLQ_URL": dead_letters[GATE_QUEUE],
        "GREENLIGHT_NOTIFY_QUEUE_URL": notify_url,
        "GREENLIGHT_NOTIFY_DLQ_URL": notify_dead,
        "GREENLIGHT_NOTIFY_TOPIC_ARN": topic,
        "GREENLIGHT_CLUSTER_MODE": "kubeconfig",
        "GREENLIGHT_APP_NAMESPACES": ",".join(APP_NAMESPACES),  # the stack's AppNamespaces
        SANDBOX_KUBECONFIG: KUBECONFIG_SECRET,  # function_env(): each its own secret
        "GREENLIGHT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GREENLIGHT_GATE_DELAY_SECONDS": "1",
        # The sandbox's edge pushes take seconds (the sweep waits this plus 15 s, not 315 s).
        "GREENLIGHT_EDGE_PUSH_MAX_SECONDS": "15",
        "GREENLIGHT_ECR_WAIT_SECONDS": "10",
        "GREENLIGHT_EDGE_SIGNING_KEY": signing_key,  # the haproxy function's; SigningKeyArn
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


def _notifications(session: Any) -> tuple[str, str, str]:
    """The notify queue, fed by a rule on the default bus as in template.yaml (moto's
    EventBridge delivers to it) and handing what fails five times to its dead-letter queue,
    and the notifications topic; the queue's URL, its dead-letter queue's and the topic's ARN."""
    import json

    sqs = session.client("sqs", region_name=REGION)
    dead = sqs.create_queue(QueueName=NOTIFY_DEAD_LETTER_QUEUE)["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 5})
    url = sqs.create_queue(
        QueueName=NOTIFY_QUEUE, Attributes={"VisibilityTimeout": "10", "RedrivePolicy": redrive}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = session.client("events", region_name=REGION)
    events.put_rule(
        Name=NOTIFY_RULE,
        EventPattern=json.dumps(
            {"source": ["greenlight"], "detail-type": ["Greenlight Rollout State Change"]}
        ),
    )
    events.put_targets(Rule=NOTIFY_RULE, Targets=[{"Id": "notify", "Arn": arn}])
    topic = session.client("sns", region_name=REGION).create_topic(Name=NOTIFY_TOPIC)["TopicArn"]
    return url, dead, str(topic)


WORKER_GROUP = "greenlight-sandbox-workers"
NIGHT_TIME_ZONE = "Europe/Amsterdam"


def worker_group(session: Any, count: int) -> list[str]:
    """The workers' Auto Scaling Group (for the night shrink): ``count`` instances, whose ids the
    sandbox's nodes carry in their providerID."""
    ec2 = session.client("ec2", region_name=REGION)
    asg = session.client("autoscaling", region_name=REGION)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    _ensure(
        lambda: asg.create_launch_configuration(
            LaunchConfigurationName=WORKER_GROUP, ImageId=image, InstanceType="m6g.large"
        ),
        "AlreadyExists",
    )
    _ensure(
        lambda: asg.create_auto_scaling_group(
            AutoScalingGroupName=WORKER_GROUP,
            LaunchConfigurationName=WORKER_GROUP,
            MinSize=1,
            MaxSize=max(count * 2, 2),
            DesiredCapacity=count,
            AvailabilityZones=[f"{REGION}a"],
        ),
        "AlreadyExists",
    )
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[WORKER_GROUP])
    return sorted(i["InstanceId"] for i in group["AutoScalingGroups"][0]["Instances"])


def push_image(session: Any, repository: str, tag: str) -> None:
    """Put an image manifest into (moto's) ECR, as a CI build would."""
    import hashlib
    import json

    ecr = session.client("ecr", region_name=REGION)
    layer = "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "digest": "sha256:" + hashlib.sha256(tag.encode()).hexdigest(),
                "size": 1,
                "mediaType": "application/vnd.docker.container.image.v1+json",
            },
            # One layer of its own: a registry's digest names the content, and moto's is
            # made from the layers' digests (none: every image would share one digest).
            "layers": [
                {
                    "digest": layer,
                    "size": 1,
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                }
            ],
        }
    )
    _ensure(
        ecr.put_image,
        "ImageAlreadyExistsException",
        repositoryName=repository,
        imageManifest=manifest,
        imageTag=tag,
    )


SIGNING_KEY_ALIAS = "alias/greenlight-sandbox-edge-signing"


def _signing_key(session: Any) -> str:
    """The edge's signing key (``EdgeSigningKey``: ECC_NIST_P256, sign and verify), made once
    and found again by its alias; its ARN."""
    from botocore.exceptions import ClientError

    from .fleet import create_signing_key

    kms = session.client("kms", region_name=REGION)
    try:
        return str(kms.describe_key(KeyId=SIGNING_KEY_ALIAS)["KeyMetadata"]["Arn"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NotFoundException":
            raise
    arn = create_signing_key(kms)
    kms.create_alias(AliasName=SIGNING_KEY_ALIAS, TargetKeyId=arn)
    return arn


def _default_certificate(s3: Any) -> None:
    """The edge's default certificate (self-signed, made once) where the apps file names it."""
    import tempfile

    from botocore.exceptions import ClientError

    from .render import self_signed

    key = "certs/default.pem"
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
        return
    except ClientError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        pem = Path(tmp) / "default.pem"
        self_signed(pem, ["sandbox.test", "*.sandbox.test"])
        s3.put_object(Bucket=BUCKET, Key=key, Body=pem.read_bytes(), ServerSideEncryption="AES256")
