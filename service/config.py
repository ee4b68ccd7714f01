"""Settings for every mode, read once at a composition root (env prefix ``VITALSTREAM_``).

Detection thresholds are the core's ``DetectionConfig`` fields, nested under ``detection``:
``VITALSTREAM_DETECTION__TACHYCARDIA_BPM=125``. Helm values and the Lambda environment use the same
names.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.core import DetectionConfig


class DeadLetterTarget(StrEnum):
    SQS = "sqs"
    S3 = "s3"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VITALSTREAM_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    region: str = "us-east-1"
    endpoint_url: str | None = Field(default=None, description="AWS API endpoint override (emulators)")
    stream_name: str = "vitalstream-telemetry"
    archive_bucket: str = "vitalstream-archive"
    archive_prefix: str = "telemetry/"
    device_state_table: str = "vitalstream-device-state"
    alert_history_table: str = "vitalstream-alerts"
    alert_topic_arn: str = ""
    dead_letter_target: DeadLetterTarget = DeadLetterTarget.SQS
    dead_letter_queue_url: str = ""
    dead_letter_bucket: str = ""
    dead_letter_prefix: str = "dead-letter/"
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
