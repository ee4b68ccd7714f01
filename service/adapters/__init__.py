"""boto3 adapters for ``service.ports``. Clients are injected; nothing here does I/O at import."""

from service.adapters.dead_letter import S3DeadLetterStore, SqsDeadLetterStore
from service.adapters.dynamodb_state import DynamoDeviceStateStore
from service.adapters.s3_archive import S3Archive
from service.adapters.sns_alerts import SnsAlertPublisher

__all__ = [
    "DynamoDeviceStateStore",
    "S3Archive",
    "S3DeadLetterStore",
    "SnsAlertPublisher",
    "SqsDeadLetterStore",
]
