"""What a deployment is (``Deployment``) and what its bill is made of (``Line``, ``Bill``).

Units: a *message* is what a device publishes (``samples_per_message`` samples, one IoT Core message
metered by its size and topic in 5 KB steps, one Kinesis record); a *sample* is what the processing
handles (the per-record measured figures are per sample). A month is 730 hours.

Sizes (``message_bytes``, ``record_bytes``): a single-sample message is the measured sample; a batch
is the contract's envelope ``{"deviceId":...,"samples":[...]}`` around samples without their
``deviceId`` (12 samples of the measured 146 bytes: 1,458 bytes). IoT Core meters the payload and the
topic; the template's rule (``SELECT *, topic(2) AS topicDeviceId``) adds ``topicDeviceId`` to the
Kinesis record.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from service.runtime.config import ConsumerSettings, LambdaArchive

HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
DEVICE_ID = "wearable-000001"  # the simulator's ids; a fleet's may be longer or shorter
DEVICE_ID_FIELD_BYTES = len(f'"deviceId":"{DEVICE_ID}",')  # what a sample in a batch leaves out
ENVELOPE_BYTES = len(f'{{"deviceId":"{DEVICE_ID}","samples":[]}}')
TOPIC_BYTES = len(f"wearables/{DEVICE_ID}/telemetry")
BASIC_INGEST_PREFIX_BYTES = len("$aws/rules/vitalstream_telemetry/")  # the template's rule name
RULE_ADDED_BYTES = len(f',"topicDeviceId":"{DEVICE_ID}"')
# the runtime's shipped heartbeat of the latest-state item (``latest_state_interval_ms``)
LATEST_STATE_HEARTBEAT_S: float = ConsumerSettings.model_fields["latest_state_interval_ms"].default / 1000
ALERTS_PER_DEVICE_DAY = 1.0  # an input (docs/cost.md says why this default); None: the measured rate


class Mode(Enum):
    CONSUMER = "consumer"
    LAMBDA = "lambda"


class Ingest(Enum):
    IOT_CORE = "iot-core"
    BASIC_INGEST = "basic-ingest"
    BRIDGE = "bridge"


SERVICES = ("iot-core", "kinesis", "lambda", "dynamodb", "s3", "sns", "sqs", "compute", "cloudwatch")


@dataclass(frozen=True, slots=True)
class Deployment:
    """The inputs that move the bill. Devices are connected 24/7 (``connected_fraction`` 1).
    ``alerts_per_device_day`` None takes the alert rate of the measured figures (a demo report's)."""

    devices: int
    sample_period_s: float = 5.0
    samples_per_message: int = 1
    mode: Mode = Mode.CONSUMER
    ingest: Ingest = Ingest.IOT_CORE
    # consumer: a device's item is written at once on a status change, otherwise once per heartbeat
    latest_state_interval_s: float = LATEST_STATE_HEARTBEAT_S
    window_s: float = 120.0  # Lambda: tumbling window; one read and one write per device per window
    window_writes_per_invocation: int = 50  # the template's WindowWritesPerInvocation (see hands_on)
    archive_file_bytes: int = 5_000_000
    archive_file_age_s: float = 60.0
    efo: bool = False
    shard_headroom: float = 1.25
    retention_hours: float = 24.0
    lambda_memory_mb: int = 512
    lambda_batch_size: int = 500  # the template's BatchSize
    lambda_batching_window_s: float = 1.0  # the template's MaximumBatchingWindowInSeconds
    # Lambda: files (the template's default: the archive function's own mapping writes one file per
    # invocation) or per-batch (the processor writes one object per invocation)
    lambda_archive: LambdaArchive = LambdaArchive.FILES
    archive_batch_size: int = 10_000  # the template's ArchiveBatchSize
    archive_batching_window_s: float = 300.0  # ... ArchiveBatchingWindowInSeconds
    archive_window_s: float = 900.0  # ... ArchiveTumblingWindowInSeconds
    lease_scan_strong: bool = True  # the lease table is scanned with strongly consistent reads today
    archive_months_kept: int = 12  # the template's lifecycle expires archive objects after 365 days
    archive_ia_after_days: float = 30.0  # ... moves them to Standard-IA after 30 days
    archive_glacier_after_days: float = 90.0  # ... and to Glacier Flexible Retrieval after 90
    snapshot_expiry_days: float = 7.0  # the template's shard-snapshots rule
    connected_fraction: float = 1.0
    alerts_per_device_day: float | None = ALERTS_PER_DEVICE_DAY

    @property
    def messages_per_s(self) -> float:
        return self.devices / (self.sample_period_s * self.samples_per_message)

    @property
    def samples_per_s(self) -> float:
        return self.devices / self.sample_period_s

    @property
    def samples_per_day(self) -> float:
        return 86_400 / self.sample_period_s

    def message_bytes(self, sample_bytes: float) -> float:
        """A message's payload: one sample as measured, or the batch envelope around N samples."""
        n = self.samples_per_message
        if n == 1:
            return sample_bytes
        return ENVELOPE_BYTES + n * (sample_bytes - DEVICE_ID_FIELD_BYTES) + (n - 1)

    def metered_bytes(self, sample_bytes: float) -> float:
        """What IoT Core meters (messaging, rules, actions): the payload and the topic."""
        prefix = BASIC_INGEST_PREFIX_BYTES if self.ingest is Ingest.BASIC_INGEST else 0
        return self.message_bytes(sample_bytes) + TOPIC_BYTES + prefix

    def hands_on(self, shards: int) -> bool:
        """Lambda: a shard's window ends with more devices than its final invocation writes, so it hands
        them on to the next window (one S3 object), which writes them without reading them again."""
        return self.devices / max(shards, 1) > self.window_writes_per_invocation

    def record_bytes(self, sample_bytes: float) -> float:
        """A Kinesis record: the message, plus ``topicDeviceId`` when an IoT rule wrote it."""
        added = 0 if self.ingest is Ingest.BRIDGE else RULE_ADDED_BYTES
        return self.message_bytes(sample_bytes) + added

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mode"], d["ingest"] = self.mode.value, self.ingest.value
        return d


@dataclass(frozen=True, slots=True)
class Line:
    """One billed item: ``quantity`` units a month at ``unit_price_usd`` each."""

    service: str
    item: str
    quantity: float
    unit: str
    unit_price_usd: float

    @property
    def usd_per_month(self) -> float:
        return self.quantity * self.unit_price_usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "item": self.item,
            "quantity": self.quantity,
            "unit": self.unit,
            "unit_price_usd": self.unit_price_usd,
            "usd_per_month": round(self.usd_per_month, 2),
        }


@dataclass(frozen=True, slots=True)
class Bill:
    """``lines`` make the total; ``alternatives`` are shown beside it (e.g. Kinesis on-demand) and not
    added."""

    deployment: Deployment
    lines: list[Line]
    alternatives: list[Line] = field(default_factory=list)
    prices_as_of: str = ""
    measured_at: str = ""

    @property
    def total(self) -> float:
        return sum(line.usd_per_month for line in self.lines)

    @property
    def per_device(self) -> float:
        return self.total / self.deployment.devices if self.deployment.devices else 0.0

    def by_service(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for line in self.lines:
            totals[line.service] = totals.get(line.service, 0.0) + line.usd_per_month
        return totals

    def biggest(self) -> Line:
        return max(self.lines, key=lambda line: line.usd_per_month)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_usd_per_month": round(self.total, 2),
            "per_device_usd_per_month": round(self.per_device, 6),
            "prices_as_of": self.prices_as_of,
            "measured_at": self.measured_at,
            "inputs": self.deployment.to_dict(),
            "lines": [line.to_dict() for line in self.lines],
            "alternatives_not_in_total": [line.to_dict() for line in self.alternatives],
        }


def shards(
    deployment: Deployment, record_bytes: float, records_per_shard: float, bytes_per_shard: float
) -> int:
    """Provisioned shards: the larger of records/s and bytes/s over a shard's write limits, times the
    headroom, rounded up; at least one."""
    by_records = deployment.messages_per_s / records_per_shard
    by_bytes = deployment.messages_per_s * record_bytes / bytes_per_shard
    return max(1, math.ceil(max(by_records, by_bytes) * deployment.shard_headroom))


def invocations_per_s(deployment: Deployment, shards: int) -> float:
    """Lambda invocations a second under the event source mapping: per shard, a batch when it holds
    ``lambda_batch_size`` records or its batching window has passed (never more than one a record),
    plus each window's final invocation. A short run's batches are small; a fleet's fill up."""
    if shards == 0:
        return 0.0
    per_shard = deployment.messages_per_s / shards
    batches = min(
        per_shard, max(per_shard / deployment.lambda_batch_size, 1 / deployment.lambda_batching_window_s)
    )
    return shards * (batches + 1 / deployment.window_s)


LAMBDA_PAYLOAD_BYTES = 6_000_000  # a synchronous invocation's payload (a batch's base64 records) at most


def archive_files_per_s(deployment: Deployment, shards: int, record_bytes: float) -> float:
    """The archive function's invocations with records a second (one archive file each): per shard, a
    batch when it holds ``archive_batch_size`` records or 6 MB of payload (base64: 4/3 of the records'
    bytes) or its batching window has passed, plus one batch cut at each window's end."""
    if shards == 0:
        return 0.0
    per_shard = deployment.messages_per_s / shards
    by_size = max(
        per_shard / deployment.archive_batch_size, per_shard * record_bytes * 4 / 3 / LAMBDA_PAYLOAD_BYTES
    )
    batches = min(per_shard, max(by_size, 1 / deployment.archive_batching_window_s))
    return shards * (batches + 1 / deployment.archive_window_s)


def units(size_bytes: float, unit_bytes: float) -> int:
    """Billing units of ``unit_bytes`` for an item of ``size_bytes`` (at least one)."""
    return max(1, math.ceil(size_bytes / unit_bytes))
