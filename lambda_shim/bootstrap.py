"""The composition root for Lambda mode: settings → boto3 clients → adapters → ``Pipeline``.

boto3 is imported here, inside ``build_pipeline``, so importing the handler module stays cheap and
the clients are built once per container, on the first invocation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.adapters import DynamoDeviceStateStore, S3Archive, SnsAlertPublisher
from service.composition import build_dead_letter_store, client
from service.config import Settings
from service.core import Detector
from service.pipeline import Pipeline

if TYPE_CHECKING:
    import boto3


def build_pipeline(settings: Settings, session: boto3.Session | None = None) -> Pipeline:
    """Clients from ``session`` (a new default session when None) at ``settings.endpoint_url``."""
    import boto3  # noqa: PLC0415 - deferred: the handler's cold import must not pay for boto3
    from botocore.config import Config  # noqa: PLC0415 - as above

    session = session or boto3.Session()
    config = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=20)
    dynamodb = client(session, "dynamodb", settings, config)
    return Pipeline(
        detector=Detector(settings.detection),
        states=DynamoDeviceStateStore(dynamodb, settings.device_state_table),
        archive=S3Archive(
            client(session, "s3", settings, config), settings.archive_bucket, settings.archive_prefix
        ),
        alerts=SnsAlertPublisher(
            dynamodb,
            settings.alert_history_table,
            client(session, "sns", settings, config),
            settings.alert_topic_arn,
        ),
        dead_letters=build_dead_letter_store(settings, session, config),
    )
