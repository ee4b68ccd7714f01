"""The processing lines: DynamoDB, S3, SNS, SQS FIFO, and the compute of each mode (consumer pods, or
Lambda requests, GB-seconds and CloudWatch logs).

Per-record costs come from the measured figures (per sample); what the processing does per second is
modelled here from the settings, never spread over a run's records:

- device-state items: a consumer writes a device once per latest-state heartbeat, a Lambda window
  reads and writes it once per window (and not more often than it sends a message); both write it at
  once when its status changes — an alert's episode opening and clearing. A Lambda shard with more
  devices than a window's final invocation writes hands them on to its next window (one S3 PUT per
  shard per window), which writes them without reading them;
- alerts: ``alerts_per_device_day`` (an input, not the simulator's dense test fleet), each one SNS
  publish and two alert-history writes (claimed, then marked published);
- the measured writes less what the measurement's own settings (``REFERENCE``) and its own alerts
  explain are the rest (dead letters' bookkeeping, restores);
- lease table (consumer): one renewal every 2 s per lease, two writes per archive file (prepare,
  checkpoint), and every replica Scans the whole table every 2 s (units by the table's size);
- archive files (consumer): one per shard when it reaches its size or age, each with a snapshot object
  that expires after ``snapshot_expiry_days``; in Lambda mode one file per invocation of the archive
  function's mapping (``archive_files_per_s``; per-batch: one object per processor invocation); stored under
  the template's lifecycle (Standard, Standard-IA after 30 days, Glacier Flexible Retrieval after 90,
  expired after 365 and kept 30 more days as a noncurrent version: the bucket is versioned);
- consumer compute: the measured CPU per sample at 70 % of the vCPU (never under 0.5 vCPU a pod), and
  Fargate's least memory of 2 GB per vCPU (never under the measured RSS and resident state);
- idle GetRecords (every 200 ms per shard) are not charged on a provisioned stream.
"""

from __future__ import annotations

import math

from service.runtime.config import LambdaArchive
from service.tools.cost.data import Measured, Prices
from service.tools.cost.model import (
    DAYS_PER_MONTH,
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    Deployment,
    Line,
    Mode,
    archive_files_per_s,
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
FARGATE_GB_PER_VCPU = 2.0  # Fargate's least memory for a vCPU (0.5 vCPU: 1 GB; 1 vCPU: 2 GB ...)
STATUS_WRITES_PER_ALERT = 2  # the device's item at once when its episode opens and when it clears
HISTORY_WRITES_PER_ALERT = 2  # the alert-history row: claimed (PENDING), then marked published
ALERT_WRITES = STATUS_WRITES_PER_ALERT + HISTORY_WRITES_PER_ALERT
NONCURRENT_DAYS = 30.0  # the template's NoncurrentVersionExpiration of the versioned archive bucket
DAYS_PER_CALENDAR_MONTH = 365 / 12


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
        what = f"heartbeat every {_duration(d.latest_state_interval_s)}"
    else:
        every, reference = max(d.window_s, message_period), REFERENCE_WINDOW_S
        what = f"once per {d.window_s:g} s window"
    state_writes = d.devices / every * SECONDS_PER_MONTH * state_units
    explained = 1000 * REFERENCE_SAMPLE_PERIOD_S / reference
    run_alert_writes = ALERT_WRITES * m.per_1k.get("sns_publish", 0.0)
    other_writes = (
        max(0.0, m.per_1k.get("dynamodb_write_units", 0.0) - explained - run_alert_writes) / 1000 * samples
    )
    alerts = alerts_per_month(d, m)
    lines = [
        Line("dynamodb", f"device-state write units ({what} per device)", state_writes, "write unit", wu),
        Line(
            "dynamodb",
            f"device-state writes at once on a status change ({STATUS_WRITES_PER_ALERT} per alert)",
            STATUS_WRITES_PER_ALERT * alerts * state_units,
            "write unit",
            wu,
        ),
        Line(
            "dynamodb",
            f"alert-history writes ({HISTORY_WRITES_PER_ALERT} per alert: claimed, published)",
            HISTORY_WRITES_PER_ALERT * alerts,
            "write unit",
            wu,
        ),
        Line(
            "dynamodb",
            "other write units (measured, beyond the heartbeat and the run's alerts)",
            other_writes,
            "write unit",
            wu,
        ),
    ]
    reads = m.per_sample("dynamodb_read_units") * samples
    if d.mode is Mode.LAMBDA:
        handed = d.hands_on(shards)
        state_reads = 0.0 if handed else d.devices / every * SECONDS_PER_MONTH
        reads = max(0.0, m.per_1k.get("dynamodb_read_units", 0.0) - explained) / 1000 * samples
        how = "none: each window hands its devices on to the next" if handed else "strong, once per window"
        lines.append(Line("dynamodb", f"device-state read units ({how})", state_reads, "read unit", ru))
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
    put = p.price("s3", "put")
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
                p.price("s3", "gb_month"),
            ),
            Line(
                "s3",
                "other PUTs (flushes on lease moves; measured)",
                m.per_sample("s3_put") * samples,
                "PUT",
                put,
            ),
        ]
        objects_per_s = files
    elif d.lambda_archive is LambdaArchive.FILES:
        objects_per_s = archive_files_per_s(d, shards, d.record_bytes(m.sample_bytes))
        lines.append(
            Line(
                "s3",
                f"archive file PUTs (archive function: one per invocation, a batch of up to"
                f" {d.archive_batch_size} records or 6 MB or every {d.archive_batching_window_s:g} s"
                " per shard)",
                objects_per_s * SECONDS_PER_MONTH,
                "PUT",
                put,
            )
        )
    else:
        objects_per_s = invocations_per_s(d, shards)
        lines.append(
            Line(
                "s3",
                "archive object PUTs (one per invocation, batches modelled)",
                objects_per_s * SECONDS_PER_MONTH,
                "PUT",
                put,
            )
        )
    get = p.price("s3", "get")
    if d.mode is Mode.CONSUMER:
        lines.append(Line("s3", "GETs (measured)", m.per_sample("s3_get") * samples, "GET", get))
    elif d.hands_on(
        shards
    ):  # Lambda's only reads: a window's first invocation lists, then reads, its handoff
        windows = shards / d.window_s * SECONDS_PER_MONTH
        lines += [
            Line(
                "s3", "window handoff PUTs and LISTs (one each per shard per window)", 2 * windows, "PUT", put
            ),
            Line("s3", "window handoff GETs (one per shard per window)", windows, "GET", get),
        ]
    return lines + archive_storage(d, p, m, objects_per_s)


def archive_storage(d: Deployment, p: Prices, m: Measured, objects_per_s: float) -> list[Line]:
    """The archive at steady state under the template's lifecycle: each month's gzip bytes spend their
    first days in Standard, then Standard-IA, then Glacier Flexible Retrieval until they expire (and
    30 days more as noncurrent versions). Objects under 128 KB are not transitioned (S3's default):
    they stay in Standard. Each transition is a request per object; Glacier keeps 40 KB of index per
    object (32 KB at its price, 8 KB at Standard's)."""
    gz = m.per_sample("archive_bytes_gzip")
    month_gb = d.samples_per_s * SECONDS_PER_MONTH * gz / GIB
    objects = objects_per_s * SECONDS_PER_MONTH
    object_bytes = d.samples_per_s * gz / objects_per_s if objects_per_s else 0.0
    kept = d.archive_months_kept * DAYS_PER_CALENDAR_MONTH + NONCURRENT_DAYS
    ratio = _ratio(m.sample_bytes, gz)
    if object_bytes < p.price("s3", "min_transition_bytes"):
        return [
            Line(
                "s3",
                f"archive storage, Standard, {kept:.0f} days (objects of {object_bytes / 1024:.0f} KB"
                f" are not transitioned; gzip {ratio})",
                month_gb * kept / DAYS_PER_CALENDAR_MONTH,
                "GB-month",
                p.price("s3", "gb_month"),
            )
        ]
    standard = min(kept, d.archive_ia_after_days)
    ia = max(0.0, min(kept, d.archive_glacier_after_days) - d.archive_ia_after_days)
    glacier = max(0.0, kept - d.archive_glacier_after_days)
    in_glacier = objects * glacier / DAYS_PER_CALENDAR_MONTH  # objects held in Glacier at a time
    index_gb = in_glacier / GIB
    return [
        Line(
            "s3",
            f"archive storage, Standard, first {standard:g} days (gzip {ratio}; Glacier's 8 KB per object)",
            month_gb * standard / DAYS_PER_CALENDAR_MONTH
            + index_gb * p.price("s3", "glacier_overhead_standard_bytes"),
            "GB-month",
            p.price("s3", "gb_month"),
        ),
        Line(
            "s3",
            f"archive storage, Standard-IA, days {d.archive_ia_after_days:g}"
            f"-{d.archive_glacier_after_days:g}",
            month_gb * ia / DAYS_PER_CALENDAR_MONTH,
            "GB-month",
            p.price("s3", "gb_month_standard_ia"),
        ),
        Line(
            "s3",
            f"archive storage, Glacier Flexible Retrieval, days {d.archive_glacier_after_days:g}-{kept:.0f}"
            " (+32 KB index per object)",
            month_gb * glacier / DAYS_PER_CALENDAR_MONTH + index_gb * p.price("s3", "glacier_overhead_bytes"),
            "GB-month",
            p.price("s3", "gb_month_glacier"),
        ),
        Line(
            "s3",
            f"lifecycle transitions to Standard-IA (objects of {object_bytes / 1e6:.2g} MB)",
            objects if ia > 0 else 0.0,
            "request",
            p.price("s3", "transition_standard_ia"),
        ),
        Line(
            "s3",
            "lifecycle transitions to Glacier Flexible Retrieval",
            objects if glacier > 0 else 0.0,
            "request",
            p.price("s3", "transition_glacier"),
        ),
    ]


def alerts_per_month(d: Deployment, m: Measured) -> float:
    """``alerts_per_device_day`` over the fleet, or (None) the measured figures' rate per sample."""
    if d.alerts_per_device_day is None:
        return m.per_sample("sns_publish") * d.samples_per_s * SECONDS_PER_MONTH
    return d.devices * d.alerts_per_device_day * DAYS_PER_MONTH


def messaging(d: Deployment, p: Prices, m: Measured) -> list[Line]:
    samples = d.samples_per_s * SECONDS_PER_MONTH
    rate = (
        "the measured rate"
        if d.alerts_per_device_day is None
        else f"{d.alerts_per_device_day:g} per device-day"
    )
    return [
        Line(
            "sns",
            f"alert publishes ({rate})",
            alerts_per_month(d, m),
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
    """vCPU for the measured CPU per sample at the target utilisation, never under the pods' least
    request; memory at Fargate's least per vCPU, never under the measured RSS and resident state."""
    cores = d.samples_per_s * m.per_sample("cpu_seconds")
    vcpu = max(pods * POD_VCPU, cores / POD_TARGET_UTILISATION)
    measured_gb = pods * m.memory_bytes / GIB + d.devices * RESIDENT_BYTES_PER_DEVICE / GIB
    gb = max(measured_gb, vcpu * FARGATE_GB_PER_VCPU)
    return [
        Line(
            "compute",
            f"consumer pods vCPU ({pods} pods x {vcpu / max(pods, 1):.2g} vCPU: measured CPU per sample"
            f" at {POD_TARGET_UTILISATION:.0%})",
            vcpu * HOURS_PER_MONTH,
            "vCPU-hour",
            p.price("compute", "vcpu_hour"),
        ),
        Line(
            "compute",
            f"consumer pods memory ({FARGATE_GB_PER_VCPU:g} GB per vCPU, Fargate's least)",
            gb * HOURS_PER_MONTH,
            "GB-hour",
            p.price("compute", "gb_hour"),
        ),
    ]


def lambda_lines(d: Deployment, p: Prices, m: Measured, shards: int) -> list[Line]:
    """Invocations follow the event source mappings' batching (``invocations_per_s``, and the archive
    function's ``archive_files_per_s``), log bytes the invocations (measured bytes per invocation),
    duration the samples (measured GB-seconds per record, both functions: a fleet's fuller batches
    spend less per record, so this errs high)."""
    samples = d.samples_per_s * SECONDS_PER_MONTH
    invocations = invocations_per_s(d, shards) * SECONDS_PER_MONTH
    archive = 0.0  # the archive function: one invocation a file, plus each window's final one
    if d.lambda_archive is LambdaArchive.FILES and shards:
        files = archive_files_per_s(d, shards, d.record_bytes(m.sample_bytes))
        archive = (files + shards / d.archive_window_s) * SECONDS_PER_MONTH
    gb_s = m.per_sample("lambda_gb_seconds") * d.lambda_memory_mb / 512
    if gb_s == 0:
        gb_s = m.per_sample("cpu_seconds") * d.lambda_memory_mb / 1024
    measured_invocations = m.per_1k.get("lambda_invocations", 0.0)
    bytes_per_invocation = (
        m.per_1k.get("cloudwatch_log_bytes", 0.0) / measured_invocations if measured_invocations else 0.0
    )
    logs = bytes_per_invocation * (invocations + archive) / GIB
    archive_requests = (
        [
            Line(
                "lambda",
                f"archive function requests (a file every {d.archive_batching_window_s:g} s or"
                f" {d.archive_batch_size} records per shard, and each window's final invocation)",
                archive,
                "request",
                p.price("lambda", "request"),
            )
        ]
        if archive
        else []
    )
    return [
        Line(
            "lambda",
            f"requests (a batch of up to {d.lambda_batch_size} or every"
            f" {d.lambda_batching_window_s:g} s per shard)",
            invocations,
            "request",
            p.price("lambda", "request"),
        ),
        *archive_requests,
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


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"


def _ratio(raw: float, compressed: float) -> str:
    return f"{raw / compressed:.1f}:1" if compressed > 0 else "n/a"
