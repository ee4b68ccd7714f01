"""The composition root for Lambda mode: settings → boto3 clients → adapters → ``Pipeline``.

boto3 is imported here, inside ``build_pipeline``, so importing the handler module stays cheap and
the clients are built once per container, on the first invocation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.adapters import (
    DynamoDeviceStateStore,
    S3Archive,
    S3DeadLetterStore,
    SnsAlertPublisher,
    SqsDeadLetterStore,
)
from service.config import DeadLetterTarget, Settings
from service.core import Detector
from service.pipeline import Pipeline

if TYPE_CHECKING:
    import boto3

    from service.ports import DeadLetterStore


def build_pipeline(settings: Settings, session: boto3.Session | None = None) -> Pipeline:
    """Clients from ``session`` (a new default session when None) at ``settings.endpoint_url``."""
    import boto3  # noqa: PLC0415 - deferred: the handler's cold import must not pay for boto3
    from botocore.config import Config  # noqa: PLC0415 - as above

    session = session or boto3.Session()
    config = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=20)
    s3_config = config.merge(Config(s3={"addressing_style": "path"})) if settings.endpoint_url else config
    region, endpoint = settings.region, settings.endpoint_url
    dynamodb = session.client("dynamodb", region_name=region, endpoint_url=endpoint, config=config)
    s3 = session.client("s3", region_name=region, endpoint_url=endpoint, config=s3_config)
    sns = session.client("sns", region_name=region, endpoint_url=endpoint, config=config)

    dead_letters: DeadLetterStore
    overflow = (
        S3DeadLetterStore(s3, settings.dead_letter_bucket, settings.dead_letter_prefix)
        if settings.dead_letter_bucket
        else None
    )
    if settings.dead_letter_target is DeadLetterTarget.S3:
        if overflow is None:
            raise ValueError("dead_letter_target=s3 needs dead_letter_bucket")
        dead_letters = overflow
    else:
        sqs = session.client("sqs", region_name=region, endpoint_url=endpoint, config=config)
        dead_letters = SqsDeadLetterStore(sqs, settings.dead_letter_queue_url, overflow=overflow)

    return Pipeline(
        detector=Detector(settings.detection),
        states=DynamoDeviceStateStore(dynamodb, settings.device_state_table),
        archive=S3Archive(s3, settings.archive_bucket, settings.archive_prefix),
        alerts=SnsAlertPublisher(dynamodb, settings.alert_history_table, sns, settings.alert_topic_arn),
        dead_letters=dead_letters,
    )
