"""Shared pieces of the composition roots (Lambda shim, consumer, bridge): clients, stores, the pipeline.

boto3 and botocore are imported inside the functions, so importing the Lambda handler stays cheap and
the clients are built once per process, on first use. Given a ``RequestCounter``, every client built
here is attached to it, so each request it sends is counted (``service.runtime.accounting``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.core import Detector
from service.runtime.accounting import RequestCounter
from service.runtime.adapters import (
    DynamoDeviceStateStore,
    S3Archive,
    S3DeadLetterStore,
    SnsAlertPublisher,
    SqsDeadLetterStore,
)
from service.runtime.adapters.window_handoffs import KinesisShardLineage, S3HandoffStore
from service.runtime.archive_role import ArchiveRole
from service.runtime.config import DeadLetterTarget, LambdaArchive, Settings
from service.runtime.pipeline import Pipeline
from service.runtime.window_handoffs import WindowHandoffs

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config

    from service.runtime.ports import DeadLetterStore


def client(
    session: boto3.Session,
    service: str,
    settings: Settings,
    config: Config | None = None,
    requests: RequestCounter | None = None,
) -> Any:
    """A client at the settings' region and endpoint, counted by ``requests`` when given; S3 uses
    path-style addressing on an emulator."""
    from botocore.config import Config  # noqa: PLC0415 - botocore on demand (cold import of the shim)

    if service == "s3" and settings.endpoint_url:
        path_style = Config(s3={"addressing_style": "path"})
        config = config.merge(path_style) if config is not None else path_style
    built = session.client(  # type: ignore[call-overload]
        service, region_name=settings.region, endpoint_url=settings.endpoint_url, config=config
    )
    return built if requests is None else requests.attach(built)


def build_dead_letter_store(
    settings: Settings,
    session: boto3.Session,
    config: Config | None = None,
    requests: RequestCounter | None = None,
) -> DeadLetterStore:
    """SQS (oversized bodies overflow to S3 when a bucket is set) or S3, as the settings choose."""
    overflow = (
        S3DeadLetterStore(
            client(session, "s3", settings, config, requests),
            settings.dead_letter_bucket,
            settings.dead_letter_prefix,
        )
        if settings.dead_letter_bucket
        else None
    )
    if settings.dead_letter_target is DeadLetterTarget.S3:
        if overflow is None:
            raise ValueError("dead_letter_target=s3 needs dead_letter_bucket")
        return overflow
    queue = client(session, "sqs", settings, config, requests)
    return SqsDeadLetterStore(queue, settings.dead_letter_queue_url, overflow=overflow)


def sink_config(connections: int) -> Config:
    """The sinks' client settings; ``connections`` sizes each client's HTTP pool."""
    from botocore.config import Config  # noqa: PLC0415 - deferred: the handler's cold import

    return Config(
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=5,
        read_timeout=20,
        max_pool_connections=connections,
    )


def build_pipeline(
    settings: Settings,
    session: boto3.Session | None = None,
    connections: int = 10,
    requests: RequestCounter | None = None,
) -> Pipeline:
    """The core and every sink, with clients from ``session`` (a new default session when None), each
    counted by ``requests`` when given."""
    import boto3  # noqa: PLC0415 - deferred: the handler's cold import must not pay for boto3

    session = session or boto3.Session()
    config = sink_config(connections)
    dynamodb = client(session, "dynamodb", settings, config, requests)
    s3 = client(session, "s3", settings, config, requests)

    def kinesis() -> Any:  # built when a shard's first window asks for its parents
        stream_at = settings.model_copy(update={"endpoint_url": settings.stream_endpoint_url})
        return client(session, "kinesis", stream_at, config, requests)

    handoffs = WindowHandoffs(
        S3HandoffStore(s3, settings.archive_bucket, settings.window_handoff_prefix),
        KinesisShardLineage(kinesis),
    )
    return Pipeline(
        detector=Detector(settings.detection),
        states=DynamoDeviceStateStore(dynamodb, settings.device_state_table),
        archive=S3Archive(s3, settings.archive_bucket, settings.archive_prefix),
        alerts=SnsAlertPublisher(
            dynamodb,
            settings.alert_history_table,
            client(session, "sns", settings, config, requests),
            settings.alert_topic_arn,
            retention_days=settings.alert_history_retention_days,
        ),
        dead_letters=build_dead_letter_store(settings, session, config, requests),
        limits=settings.message_limits,
        archive_per_batch=settings.lambda_archive is LambdaArchive.PER_BATCH,
        handoffs=handoffs,
    )


def build_archive_role(
    settings: Settings, session: boto3.Session | None = None, requests: RequestCounter | None = None
) -> ArchiveRole:
    """Lambda mode's archive role: an S3 client on the archive bucket, nothing else."""
    import boto3  # noqa: PLC0415 - deferred: the handler's cold import must not pay for boto3

    session = session or boto3.Session()
    s3 = client(session, "s3", settings, sink_config(2), requests)
    return ArchiveRole(
        S3Archive(s3, settings.archive_bucket, settings.archive_prefix), settings.message_limits
    )
