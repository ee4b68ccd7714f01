"""The demo's final report, read back from the sinks themselves.

- Everything is counted per sample (``service.tools.demo.samples``): a message may carry a batch.
  ``sent`` samples in ``messages`` messages.
- ``lost``: valid samples that were sent but are not in the archive, plus invalid samples (poison)
  that were sent but are not in the dead-letter queue. Must be 0.
- ``duplicate_effects``: archive lines beyond the first for one stream position (shard, sequence
  number, subSequenceNumber) or, among the core's lines (those with ``status``), for one (deviceId,
  seq); alert messages beyond the first per alertId, dead-letter messages beyond the first per sample
  (shard, sequence number, subSequenceNumber). Must be 0.
- Samples a device sent twice count as ``device_duplicates``: the core drops the second copy (Lambda
  mode's archive role, which runs no detection, archives it at its own stream position).
- Request accounting: the AWS requests the processing sent (``service.runtime.accounting``), per 1,000
  records sent, and the all-in monthly bill (``vitalstream cost``: IoT Core, Kinesis, compute, every
  sink) with this run's per-record counts, for the run's fleet size and for 10K devices, with its
  biggest line named. The lease table's items are left out of the run's counts: the calculator models
  lease renewals and Scans per second instead of spreading a short run's over its records.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec

from service.core import KinesisRecord, decode_records
from service.core.telemetry import parse_rfc3339_ms
from service.runtime.accounting import RequestCounts
from service.tools.cost.bill import bill
from service.tools.cost.counts import PerThousand
from service.tools.cost.data import Measured, measured
from service.tools.cost.model import Bill, Deployment, Mode
from service.tools.demo.ledger import LatencySummary
from service.tools.demo.samples import single_samples
from service.tools.score import Scorecard, ScoredAlert, score
from simulator.truth import TruthEntry

GRACE_MS = 120_000
FLEET_DEVICES = 10_000


@dataclass(slots=True)
class Expected:
    """What the fleet published, sample by sample, classified as the core will classify it."""

    valid: set[tuple[str, int]] = field(default_factory=set)
    rejects: int = 0
    device_duplicates: int = 0

    def add(self, payloads: Iterable[bytes]) -> int:
        """Classify the samples of these messages; return how many there were."""
        samples = [sample for payload in payloads for sample in single_samples(payload)]
        batch = decode_records(KinesisRecord(p, "expected", str(i + 1), 0) for i, p in enumerate(samples))
        self.rejects += len(batch.rejects)
        for sample in batch.samples:
            key = (
                sample.device_id,
                sample.telemetry.seq if sample.telemetry.seq is not None else -1,
            )
            if key in self.valid:
                self.device_duplicates += 1
            self.valid.add(key)
        return len(samples)


@dataclass(frozen=True, slots=True)
class SinkContents:
    archive_lines: list[dict[str, Any]]
    archive_objects: int
    dead_letters: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    device_state_items: int


@dataclass(slots=True)
class DemoReport:
    devices: int
    duration_s: float
    shards: int
    mode: str
    sent: int
    publish_failed: int
    processed: int
    rejected: int
    device_duplicates: int
    lost: int
    duplicate_effects: int
    latency: LatencySummary
    records_per_s: float
    s3_objects: int
    dynamodb_items: int
    alert_messages: int
    alerts: dict[str, dict[str, float | int | None]]
    alerts_during_runs: int
    unacknowledged: int  # records still in flight when the report was taken (drain timed out)
    aws_calls_per_1k: float  # every request the processing sent, per 1,000 records sent
    calls_per_1k: dict[str, float]  # by "service.Operation"
    dynamodb_item_writes_per_1k: dict[str, float]  # by table
    dynamodb_item_reads_per_1k: dict[str, float]  # by table
    s3_puts_per_1k: float
    monthly_cost_usd: dict[str, float]  # all-in at FLEET_DEVICES, by service, and "total"
    monthly_cost_usd_at_run_fleet: float  # all-in for this run's number of devices
    biggest_line: str  # the largest line of the bill at FLEET_DEVICES: "service: item ($)"
    prices_as_of: str
    detection_latency: LatencySummary | None = None  # device timestamp → alert published (Lambda: in SQS)
    archive_latency: LatencySummary | None = None  # device timestamp → archive file uploaded (consumer)
    messages: int = 0  # the messages that carried the ``sent`` samples
    samples_per_message: int = 1  # what the devices buffered per message (urgent flushes send fewer)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self.to_dict()), indent=2) + b"\n"


def build_report(
    *,
    expected: Expected,
    sinks: SinkContents,
    truth: Sequence[TruthEntry],
    latency: LatencySummary,
    sent: int,
    publish_failed: int,
    devices: int,
    duration_s: float,
    shards: int,
    mode: str,
    requests: RequestCounts,
    unacknowledged: int = 0,
    latencies: Mapping[str, LatencySummary] | None = None,
    messages: int | None = None,
    samples_per_message: int = 1,
) -> DemoReport:
    """``sent`` and ``unacknowledged`` count samples, ``messages`` (default: ``sent``) and
    ``publish_failed`` messages."""
    archived = Counter((line["deviceId"], line.get("seq", -1)) for line in sinks.archive_lines)
    # An archive file line is a stream position; the core drops a sample a device sent twice (a line
    # with ``status``), Lambda mode's archive role keeps it at its own position (a line without).
    positions = Counter(
        (line.get("shardId"), line.get("sequenceNumber"), line.get("subSequenceNumber"))
        for line in sinks.archive_lines
    )
    detected = Counter(
        (line["deviceId"], line.get("seq", -1)) for line in sinks.archive_lines if "status" in line
    )
    alert_ids = Counter(alert["alertId"] for alert in sinks.alerts)
    dead_keys = Counter(
        (d.get("shardId"), d.get("sequenceNumber"), d.get("subSequenceNumber")) for d in sinks.dead_letters
    )
    lost = len(expected.valid - set(archived)) + max(0, expected.rejects - len(dead_keys))
    duplicates = sum(
        n - 1 for counter in (positions, detected, alert_ids, dead_keys) for n in counter.values()
    )
    card = score(truth, _scored(sinks.alerts), GRACE_MS)
    per_1k = PerThousand.of(requests, sent)
    files = {"sent": sent, "s3_objects": sinks.archive_objects}
    at_run, at_fleet = (priced(per_1k, mode, n, files, samples_per_message) for n in (devices, FLEET_DEVICES))
    biggest = at_fleet.biggest()
    return DemoReport(
        devices=devices,
        duration_s=round(duration_s, 1),
        shards=shards,
        mode=mode,
        sent=sent,
        publish_failed=publish_failed,
        processed=len(archived),
        rejected=len(sinks.dead_letters),
        device_duplicates=expected.device_duplicates,
        lost=lost,
        duplicate_effects=duplicates,
        latency=latency,
        records_per_s=round(len(archived) / duration_s, 1) if duration_s else 0.0,
        s3_objects=sinks.archive_objects,
        dynamodb_items=sinks.device_state_items,
        alert_messages=len(sinks.alerts),
        alerts=_by_type(card),
        alerts_during_runs=len(card.alerts_in_runs),
        unacknowledged=unacknowledged,
        aws_calls_per_1k=round(per_1k.calls(), 1),
        calls_per_1k={f"{s}.{o}": round(n, 1) for (s, o), n in sorted(per_1k.requests.items())},
        dynamodb_item_writes_per_1k={t: round(n, 1) for t, n in sorted(per_1k.item_writes.items())},
        dynamodb_item_reads_per_1k={t: round(n, 1) for t, n in sorted(per_1k.item_reads.items())},
        s3_puts_per_1k=round(per_1k.calls("s3", "PutObject"), 2),
        monthly_cost_usd={
            **{service: round(usd, 2) for service, usd in at_fleet.by_service().items()},
            "total": round(at_fleet.total, 2),
        },
        monthly_cost_usd_at_run_fleet=round(at_run.total, 2),
        biggest_line=f"{biggest.service}: {biggest.item} (${biggest.usd_per_month:,.0f})",
        prices_as_of=at_fleet.prices_as_of,
        detection_latency=(latencies or {}).get("detection"),
        archive_latency=(latencies or {}).get("archive"),
        messages=sent if messages is None else messages,
        samples_per_message=samples_per_message,
    )


def priced(
    per_1k: PerThousand,
    mode: str,
    devices: int,
    files: Mapping[str, int] | None = None,
    samples_per_message: int = 1,
) -> Bill:
    """The all-in monthly bill of ``devices`` devices (a sample every 5 s, ``samples_per_message`` a
    message, over IoT Core) with this run's per-sample counts and alert rate, lease-table items and
    (``files``: ``sent``, ``s3_objects``) archive files left out: the calculator models those per
    second."""
    figures = Measured.from_report(
        {
            **(files or {}),
            "calls_per_1k": {f"{s}.{o}": n for (s, o), n in per_1k.requests.items()},
            "dynamodb_item_writes_per_1k": per_1k.item_writes,
            "dynamodb_item_reads_per_1k": per_1k.item_reads,
        },
        measured(mode),
    )
    deployment = Deployment(
        devices, samples_per_message=samples_per_message, mode=Mode(mode), alerts_per_device_day=None
    )
    return bill(deployment, figures=figures)


def _scored(alerts: Iterable[dict[str, Any]]) -> list[ScoredAlert]:
    scored = []
    for index, alert in enumerate(alerts):
        detected = parse_rfc3339_ms(alert.get("detectedAt", ""))
        if detected is not None:
            scored.append(ScoredAlert(alert["deviceId"], alert["type"], detected, index))
    return scored


def _by_type(card: Scorecard) -> dict[str, dict[str, float | int | None]]:
    return {
        kind: {
            "alerts": tally.alerts,
            "episodes": tally.episodes,
            "precision": tally.precision,
            "recall": tally.recall,
        }
        for kind, tally in sorted(card.by_type.items())
    }


def read_archive(bodies: Iterable[bytes]) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for body in bodies for line in gzip.decompress(body).splitlines()]


def render(report: DemoReport) -> str:
    lat = report.latency
    lines = [
        f"devices {report.devices:,} for {report.duration_s:.0f} s, {report.shards} shards, "
        f"mode {report.mode}",
        f"sent {report.sent:,} samples in {report.messages:,} messages ({report.samples_per_message} a "
        f"message, urgent ones at once; failed {report.publish_failed:,}), processed {report.processed:,} "
        f"({report.records_per_s:,.0f}/s), rejected {report.rejected:,}, device duplicates dropped "
        f"{report.device_duplicates:,}",
        f"lost {report.lost}, duplicate effects {report.duplicate_effects}"
        + (
            f" ({report.unacknowledged:,} records still in flight at report time)"
            if report.unacknowledged
            else ""
        ),
        f"latency device → sinks acknowledged: p50 {_ms(lat.p50_ms)}, p95 {_ms(lat.p95_ms)}, "
        f"p99 {_ms(lat.p99_ms)} over {lat.count:,} records{_buffered(report.samples_per_message)}",
        *_latency_line("detection latency device → alert published", report.detection_latency, "alerts"),
        *_latency_line("archive latency device → file uploaded", report.archive_latency, "records"),
        f"S3 objects {report.s3_objects:,}, DynamoDB device items {report.dynamodb_items:,}, "
        f"alert messages {report.alert_messages:,} (read back through an SQS subscription)",
        "alerts by type           alerts  episodes  precision  recall",
    ]
    for kind, row in report.alerts.items():
        lines.append(
            f"  {kind:<22}{row['alerts']:>6}{row['episodes']:>10}  {_ratio(row['precision']):>9}"
            f"  {_ratio(row['recall']):>6}"
        )
    lines.append(f"alerts during runs (must be 0): {report.alerts_during_runs}")
    lines.extend(_accounting(report))
    return "\n".join(lines)


def _buffered(samples_per_message: int) -> str:
    """What the device-to-sink latencies include when devices batch: the time a sample waits in its
    device's buffer (an abnormal one is sent at once, so alerts are not held back)."""
    if samples_per_message <= 1:
        return ""
    return f" (including up to {samples_per_message * 5 - 5} s in the device's buffer)"


def _latency_line(title: str, lat: LatencySummary | None, what: str) -> list[str]:
    if lat is None or not lat.count:
        return []
    percentiles = f"p50 {_ms(lat.p50_ms)}, p95 {_ms(lat.p95_ms)}, p99 {_ms(lat.p99_ms)}"
    return [f"{title}: {percentiles} over {lat.count:,} {what}"]


def _accounting(report: DemoReport) -> list[str]:
    by_service: dict[str, float] = {}
    for key, n in report.calls_per_1k.items():
        service = key.split(".", 1)[0]
        by_service[service] = by_service.get(service, 0.0) + n
    services = ", ".join(f"{s} {n:,.1f}" for s, n in sorted(by_service.items()))
    writes = report.dynamodb_item_writes_per_1k
    reads = report.dynamodb_item_reads_per_1k
    cost = report.monthly_cost_usd
    parts = ", ".join(f"{name} ${cost[name]:,.0f}" for name in cost if name != "total")
    return [
        f"AWS requests per 1K records: {report.aws_calls_per_1k:,.1f} ({services or 'none'})",
        f"DynamoDB item writes per 1K records: {sum(writes.values()):,.1f} ({_tables(writes)})",
        f"DynamoDB item reads per 1K records: {sum(reads.values()):,.1f} ({_tables(reads)})",
        f"S3 PUTs per 1K records: {report.s3_puts_per_1k:,.2f}",
        f"all-in monthly cost (IoT Core, Kinesis, compute, every sink; list prices of {report.prices_as_of}, "
        f"this run's counts per record): ${report.monthly_cost_usd_at_run_fleet:,.0f} for its "
        f"{report.devices:,} devices, ${cost['total']:,.0f} at {FLEET_DEVICES:,} devices ({parts})",
        f"  biggest line at {FLEET_DEVICES:,} devices: {report.biggest_line}; "
        "`vitalstream cost --from-report FILE` itemises it (a short run overstates what is paid per record)",
    ]


def _tables(counts: dict[str, float]) -> str:
    return ", ".join(f"{table} {n:,.1f}" for table, n in counts.items()) or "none"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def _ratio(value: float | int | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
