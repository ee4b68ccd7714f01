"""Shared pieces of the composition roots (Lambda shim, bridge): clients and stores from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.adapters import S3DeadLetterStore, SqsDeadLetterStore
from service.config import DeadLetterTarget, Settings

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config

    from service.ports import DeadLetterStore


def client(session: boto3.Session, service: str, settings: Settings, config: Config | None = None) -> Any:
    """A client at the settings' region and endpoint; S3 uses path-style addressing on an emulator."""
    from botocore.config import Config  # noqa: PLC0415 - botocore on demand (cold import of the shim)

    if service == "s3" and settings.endpoint_url:
        path_style = Config(s3={"addressing_style": "path"})
        config = config.merge(path_style) if config is not None else path_style
    return session.client(  # type: ignore[call-overload]
        service, region_name=settings.region, endpoint_url=settings.endpoint_url, config=config
    )


def build_dead_letter_store(
    settings: Settings, session: boto3.Session, config: Config | None = None
) -> DeadLetterStore:
    """SQS (oversized bodies overflow to S3 when a bucket is set) or S3, as the settings choose."""
    overflow = (
        S3DeadLetterStore(
            client(session, "s3", settings, config), settings.dead_letter_bucket, settings.dead_letter_prefix
        )
        if settings.dead_letter_bucket
        else None
    )
    if settings.dead_letter_target is DeadLetterTarget.S3:
        if overflow is None:
            raise ValueError("dead_letter_target=s3 needs dead_letter_bucket")
        return overflow
    queue = client(session, "sqs", settings, config)
    return SqsDeadLetterStore(queue, settings.dead_letter_queue_url, overflow=overflow)
