"""boto3 adapters for ``service.runtime.ports``. Clients are injected; nothing here does I/O at import."""

from service.runtime.adapters.dead_letter import S3DeadLetterStore, SqsDeadLetterStore
from service.runtime.adapters.dynamodb_state import DynamoDeviceStateStore
from service.runtime.adapters.s3_archive import S3Archive
from service.runtime.adapters.sns_alerts import SnsAlertPublisher

__all__ = [
    "DynamoDeviceStateStore",
    "S3Archive",
    "S3DeadLetterStore",
    "SnsAlertPublisher",
    "SqsDeadLetterStore",
]
