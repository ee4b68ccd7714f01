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
from service.core.envelope import DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES, MessageLimits


class DeadLetterTarget(StrEnum):
    SQS = "sqs"
    S3 = "s3"


class LambdaArchive(StrEnum):
    """How Lambda mode archives: ``files``, by the archive role's own mapping (``lambda_shim.
    archive_handler``; the detection function archives nothing); ``per-batch``, one object per
    detection invocation (no archive mapping deployed)."""

    FILES = "files"
    PER_BATCH = "per-batch"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VITALSTREAM_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    region: str = "us-east-1"
    endpoint_url: str | None = Field(default=None, description="AWS API endpoint override (emulators)")
    kinesis_endpoint_url: str | None = Field(
        default=None, description="Kinesis endpoint (default: endpoint_url)"
    )
    stream_name: str = "vitalstream-telemetry"
    archive_bucket: str = "vitalstream-archive"
    archive_prefix: str = "telemetry/"
    device_state_table: str = "vitalstream-device-state"
    alert_history_table: str = "vitalstream-alerts"
    alert_history_retention_days: int = Field(
        default=90,
        ge=1,
        description="an alert-history row expires (DynamoDB TTL) this long after it is written",
    )
    alert_topic_arn: str = ""
    dead_letter_target: DeadLetterTarget = DeadLetterTarget.SQS
    dead_letter_queue_url: str = ""
    dead_letter_bucket: str = ""
    dead_letter_prefix: str = "dead-letter/"
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    max_samples_per_message: int = Field(
        default=DEFAULT_MAX_SAMPLES,
        ge=1,
        le=10_000,
        description="a batched message with more samples is one reject (too_many_samples)",
    )
    max_message_bytes: int = Field(
        default=DEFAULT_MAX_BYTES,
        ge=1_024,
        le=1_048_576,
        description="a message (a KPL user record) bigger than this is one reject (message_too_large)",
    )
    service_name: str = Field(
        default="vitalstream",
        min_length=1,
        max_length=250,
        description="the ``service`` of every log line and the EMF lines' service dimension (Powertools)",
    )
    metrics_namespace: str = Field(
        default="VitalStream",
        min_length=1,
        max_length=1_024,
        description="Lambda mode: the CloudWatch namespace of the EMF metrics",
    )
    lambda_archive: LambdaArchive = Field(
        default=LambdaArchive.PER_BATCH,
        description="Lambda mode: files (the archive role's mapping archives) or per-batch (this function)",
    )
    window_state_budget_bytes: int = Field(
        default=900_000,
        ge=1_000,
        le=1_048_576,
        description="Lambda tumbling windows: a window state past this (JSON bytes) is written out early",
    )
    window_writes_per_invocation: int = Field(
        default=50,
        ge=1,
        le=100_000,
        description="Lambda tumbling windows: device writes an invocation makes (the rest wait for the next "
        "ones), and the most a window's end writes (past it, it hands them on to the next window)",
    )
    window_handoff_prefix: str = Field(
        default="window-handoffs/",
        description="Lambda tumbling windows: archive-bucket prefix of each shard's window handoff",
    )

    @property
    def stream_endpoint_url(self) -> str | None:
        """Where the Kinesis calls go: ``kinesis_endpoint_url``, else ``endpoint_url``."""
        return self.kinesis_endpoint_url or self.endpoint_url

    @property
    def message_limits(self) -> MessageLimits:
        return MessageLimits(self.max_samples_per_message, self.max_message_bytes)


class ConsumerSettings(Settings):
    """Kubernetes mode (``vitalstream consume``): the shared settings plus the shard consumer's own.

    KCL's defaults where KCL has one (failover 10 s, shard sync 60 s, 10,000 records per read).
    """

    lease_table: str = Field(default="vitalstream-leases", description="DynamoDB lease table (one per app)")
    worker_id: str = Field(default="", description="this replica's lease owner name (default: host-pid)")
    failover_ms: int = Field(default=10_000, ge=1_000, description="a lease unrenewed this long is taken")
    shard_sync_ms: int = Field(default=60_000, ge=100, description="ListShards re-sync period")
    max_records: int = Field(default=10_000, ge=1, le=10_000, description="GetRecords Limit")
    idle_read_ms: int = Field(default=200, ge=200, description="wait between reads at the shard's tip")
    archive_file_max_records: int = Field(
        default=100_000, ge=1, description="an archive file is cut at this many Kinesis records"
    )
    archive_file_max_bytes: int = Field(
        default=5_000_000, ge=1_000, description="... or at this many bytes of Kinesis payload"
    )
    archive_file_max_age_ms: int = Field(
        default=60_000, ge=1_000, description="... or this long after its first record arrived"
    )
    latest_state_interval_ms: int = Field(
        default=600_000,
        ge=0,
        description="a device's item at most this often, a heartbeat (at once on a status change)",
    )
    device_idle_evict_ms: int = Field(
        default=86_400_000,
        ge=0,
        description="a device silent this long (Kinesis arrival time) leaves memory and snapshots; 0: never",
    )
    snapshot_prefix: str = Field(
        default="snapshots/", description="archive-bucket prefix of the shard snapshots"
    )
    max_leases_per_worker: int = Field(default=256, ge=1)
    enhanced_fan_out: bool = Field(default=False, description="SubscribeToShard instead of GetRecords")
    consumer_name: str = Field(default="vitalstream", description="stream consumer for enhanced fan-out")
    metrics_host: str = Field(default="127.0.0.1", description="bind address of /metrics, /healthz, /readyz")
    metrics_port: int = Field(default=9400, ge=0, le=65_535, description="0 picks a free port")
    log_level: str = Field(default="INFO")
