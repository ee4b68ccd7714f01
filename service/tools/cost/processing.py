"""The processing lines: DynamoDB, S3, SNS, SQS FIFO, and the compute of each mode (consumer pods, or
Lambda requests, GB-seconds and CloudWatch logs).

Per-record costs come from the measured figures (per sample); what the processing does per second is
modelled here from the settings, never spread over a run's records:

- device-state items: a consumer writes a device at most once per latest-state interval, a Lambda
  window reads and writes it once per window (and not more often than it sends a message); the
  measured writes less what the measurement's own settings (``REFERENCE``) explain are the rest
  (alerts, status changes, dead letters' bookkeeping);
- lease table (consumer): one renewal every 2 s per lease, two writes per archive file (prepare,
  checkpoint), and every replica Scans the whole table every 2 s (units by the table's size);
- archive files (consumer): one per shard when it reaches its size or age, each with a snapshot object
  that expires after ``snapshot_expiry_days``; in Lambda mode one object per invocation (measured);
- idle GetRecords (every 200 ms per shard) are not charged on a provisioned stream.
"""

from __future__ import annotations

import math

from service.tools.cost.data import Measured, Prices
from service.tools.cost.model import (
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    Deployment,
    Line,
    Mode,
    invocations_per_s,
    units,
)

GIB = 1024**3
REFERENCE_SAMPLE_PERIOD_S = 5.0  # the settings the measurement ran with (the product's defaults)
REFERENCE_STATE_INTERVAL_S = 60.0
REFERENCE_WINDOW_S = 120.0
STATE_ITEM_BYTES = 700  # ESTIMATE: one device-state item (≤ 1 KB: one write unit, one strong read unit)
LEASE_ITEM_BYTES = 400  # a lease item (the 196 units per Scan at 2,000 shards)
LEASE_RENEW_S = 2.0
LEASE_SCAN_S = 2.0
SNAPSHOT_BYTES_PER_DEVICE = 57  # gzip msgpack per device, tests/unit/test_window.py
POD_VCPU = 0.5  # a consumer pod's request
POD_TARGET_UTILISATION = 0.7
MIN_REPLICAS = 2
RESIDENT_BYTES_PER_DEVICE = 1024  # ESTIMATE: a device's resident detector state in a replica


def replicas(d: Deployment, m: Measured, shards: int) -> int:
    cores = d.samples_per_s * m.per_sample("cpu_seconds")
    wanted = max(MIN_REPLICAS, math.ceil(cores / (POD_VCPU * POD_TARGET_UTILISATION)))
    return min(wanted, max(shards, MIN_REPLICAS))


def dynamodb(d: Deployment, p: Prices, m: Measured, shards: int, pods: int) -> list[Line]:
    samples = d.samples_per_s * SECONDS_PER_MONTH
    message_period = d.sample_period_s * d.samples_per_message
    wu, ru = p.price("dynamodb", "write_unit"), p.price("dynamodb", "read_unit")
    state_units = units(STATE_ITEM_BYTES, p.price("dynamodb", "write_unit_bytes"))
    if d.mode is Mode.CONSUMER:
        every, reference = max(d.latest_state_interval_s, message_period), REFERENCE_STATE_INTERVAL_S
        what = f"at most once per {d.latest_state_interval_s:g} s"
    else:
        every, reference = max(d.window_s, message_period), REFERENCE_WINDOW_S
        what = f"once per {d.window_s:g} s window"
    state_writes = d.devices / every * SECONDS_PER_MONTH * state_units
    explained = 1000 * REFERENCE_SAMPLE_PERIOD_S / reference
    other_writes = max(0.0, m.per_1k.get("dynamodb_write_units", 0.0) - explained) / 1000 * samples
    lines = [
        Line("dynamodb", f"device-state write units ({what} per device)", state_writes, "write unit", wu),
        Line(
            "dynamodb", "other write units (alerts, status changes; measured)", other_writes, "write unit", wu
        ),
    ]
    reads = m.per_sample("dynamodb_read_units") * samples
    if d.mode is Mode.LAMBDA:
        state_reads = d.devices / every * SECONDS_PER_MONTH
        reads = max(0.0, m.per_1k.get("dynamodb_read_units", 0.0) - explained) / 1000 * samples
        lines.append(
            Line(
                "dynamodb", "device-state read units (strong, once per window)", state_reads, "read unit", ru
            )
        )
    lines.append(Line("dynamodb", "other read units (state restores; measured)", reads, "read unit", ru))
    if d.mode is Mode.CONSUMER:
        lines += _lease_table(d, p, shards, pods, m.per_sample("archive_bytes_gzip"))
    return lines


def _lease_table(d: Deployment, p: Prices, shards: int, pods: int, gzip_bytes: float) -> list[Line]:
    wu, ru = p.price("dynamodb", "write_unit"), p.price("dynamodb", "read_unit")
    files = _files_per_s(d, shards, gzip_bytes) if shards else 0.0
    scan_units = units(shards * LEASE_ITEM_BYTES, p.price("dynamodb", "read_unit_bytes"))
    scan_units_billed = scan_units if d.lease_scan_strong else scan_units / 2
    scans = pods / LEASE_SCAN_S * SECONDS_PER_MONTH
    kind = "strong" if d.lease_scan_strong else "eventual"
    return [
        Line(
            "dynamodb",
            "lease renewals (every 2 s per lease)",
            shards / LEASE_RENEW_S * SECONDS_PER_MONTH,
            "write unit",
            wu,
        ),
        Line(
            "dynamodb",
            "lease checkpoints (2 per archive file)",
            2 * files * SECONDS_PER_MONTH,
            "write unit",
            wu,
        ),
        Line(
            "dynamodb",
            f"lease-table Scans ({pods} replicas every 2 s, {scan_units} units each, {kind})",
            scans * scan_units_billed,
            "read unit",
            ru,
        ),
    ]


def _files_per_s(d: Deployment, shards: int, gzip_bytes_per_sample: float) -> float:
    """Archive files cut per second over all shards: each shard by age or by size, whichever first."""
    by_size = d.samples_per_s * gzip_bytes_per_sample / d.archive_file_bytes
    return max(shards / d.archive_file_age_s, by_size)


def s3(d: Deployment, p: Prices, m: Measured, shards: int) -> list[Line]:
    samples = d.samples_per_s * SECONDS_PER_MONTH
    gz = m.per_sample("archive_bytes_gzip")
    put, gb_month = p.price("s3", "put"), p.price("s3", "gb_month")
    archive_gb = samples * gz / GIB
    lines = []
    if d.mode is Mode.CONSUMER:
        files = _files_per_s(d, shards, gz) if shards else 0.0
        snapshot_bytes = d.devices / max(shards, 1) * SNAPSHOT_BYTES_PER_DEVICE
        kept = files * d.snapshot_expiry_days * 86400 * snapshot_bytes / GIB
        lines += [
            Line(
                "s3",
                f"archive file PUTs (per shard every {d.archive_file_age_s:g} s"
                f" or {d.archive_file_bytes / 1e6:g} MB)",
                files * SECONDS_PER_MONTH,
                "PUT",
                put,
            ),
            Line("s3", "snapshot object PUTs (one per file)", files * SECONDS_PER_MONTH, "PUT", put),
            Line(
                "s3",
                f"snapshot storage (expire after {d.snapshot_expiry_days:g} days)",
                kept,
                "GB-month",
                gb_month,
            ),
            Line(
                "s3",
                "other PUTs (flushes on lease moves; measured)",
                m.per_sample("s3_put") * samples,
                "PUT",
                put,
            ),
        ]
    else:
        lines.append(
            Line(
                "s3",
                "archive object PUTs (one per invocation, batches modelled)",
                invocations_per_s(d, shards) * SECONDS_PER_MONTH,
                "PUT",
                put,
            )
        )
    lines += [
        Line("s3", "GETs (measured)", m.per_sample("s3_get") * samples, "GET", p.price("s3", "get")),
        Line(
            "s3",
            f"archive storage ({d.archive_months_kept} months kept, gzip {_ratio(m.sample_bytes, gz)})",
            archive_gb * d.archive_months_kept,
            "GB-month",
            gb_month,
        ),
    ]
    return lines


def messaging(d: Deployment, p: Prices, m: Measured) -> list[Line]:
    samples = d.samples_per_s * SECONDS_PER_MONTH
    return [
        Line(
            "sns",
            "alert publishes (measured)",
            m.per_sample("sns_publish") * samples,
            "publish",
            p.price("sns", "publish"),
        ),
        Line(
            "sqs",
            "FIFO requests (dead letters, alert read-back; measured)",
            m.per_sample("sqs_requests") * samples,
            "request",
            p.price("sqs", "fifo_request"),
        ),
    ]


def consumer_compute(d: Deployment, p: Prices, m: Measured, pods: int) -> list[Line]:
    gb = pods * m.memory_bytes / GIB + d.devices * RESIDENT_BYTES_PER_DEVICE / GIB
    return [
        Line(
            "compute",
            f"consumer pods vCPU ({pods} x {POD_VCPU:g} vCPU, measured CPU per record)",
            pods * POD_VCPU * HOURS_PER_MONTH,
            "vCPU-hour",
            p.price("compute", "vcpu_hour"),
        ),
        Line(
            "compute",
            "consumer pods memory (measured RSS + resident state)",
            gb * HOURS_PER_MONTH,
            "GB-hour",
            p.price("compute", "gb_hour"),
        ),
    ]


def lambda_lines(d: Deployment, p: Prices, m: Measured, shards: int) -> list[Line]:
    """Invocations follow the event source mapping's batching (``invocations_per_s``), log bytes the
    invocations (measured bytes per invocation), duration the samples (measured GB-seconds per
    record: a fleet's fuller batches spend less per record, so this errs high)."""
    samples = d.samples_per_s * SECONDS_PER_MONTH
    invocations = invocations_per_s(d, shards) * SECONDS_PER_MONTH
    gb_s = m.per_sample("lambda_gb_seconds") * d.lambda_memory_mb / 512
    if gb_s == 0:
        gb_s = m.per_sample("cpu_seconds") * d.lambda_memory_mb / 1024
    measured_invocations = m.per_1k.get("lambda_invocations", 0.0)
    bytes_per_invocation = (
        m.per_1k.get("cloudwatch_log_bytes", 0.0) / measured_invocations if measured_invocations else 0.0
    )
    logs = bytes_per_invocation * invocations / GIB
    return [
        Line(
            "lambda",
            f"requests (a batch of up to {d.lambda_batch_size} or every"
            f" {d.lambda_batching_window_s:g} s per shard)",
            invocations,
            "request",
            p.price("lambda", "request"),
        ),
        Line(
            "lambda",
            f"duration, arm64 at {d.lambda_memory_mb} MB (measured)",
            gb_s * samples,
            "GB-second",
            p.price("lambda", "gb_second_arm64"),
        ),
        Line(
            "cloudwatch",
            "Lambda logs ingested (measured bytes per invocation)",
            logs,
            "GB",
            p.price("cloudwatch", "logs_ingested_gb"),
        ),
        Line(
            "cloudwatch",
            "Lambda logs stored (one month kept)",
            logs,
            "GB-month",
            p.price("cloudwatch", "logs_stored_gb_month"),
        ),
    ]


def _ratio(raw: float, compressed: float) -> str:
    return f"{raw / compressed:.1f}:1" if compressed > 0 else "n/a"
