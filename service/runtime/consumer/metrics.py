"""The consumer's Prometheus metrics, on a registry of its own (served at ``/metrics``).

Names and labels are a public contract: the Grafana dashboard and the PrometheusRule in the Helm chart
query them. Latency is from the device's own timestamp to the moment every sink acknowledged.
Request accounting (``service.runtime.accounting``) is read at scrape time from its ``RequestCounter``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from service.runtime.accounting import RequestCounter
from service.runtime.ports import Sink, SinkError

# Per-record latency, seconds; tenths around 1 s, where the detection target (p99 ≤ 1 s) is read.
LATENCY_BUCKETS = (
    0.025,
    0.05,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    1.25,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    30.0,
    60.0,
)

# An archive file is cut by age (60 s by default): its records wait from 0 s up to that age and more.
ARCHIVE_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0, 120.0, 180.0, 300.0, 600.0)


class RequestCollector(Collector):
    """The counts of a ``RequestCounter`` as counters: requests by service and operation (each attempt
    that got a response), DynamoDB item writes and reads by table name, and DynamoDB capacity units by
    table, kind (read, write) and source (``reported`` by DynamoDB, or ``estimated`` at one unit per
    item where the response reported none: a figure never mixes the two unlabelled)."""

    def __init__(self, requests: RequestCounter) -> None:
        self._requests = requests

    def collect(self) -> Iterator[CounterMetricFamily]:
        counts = self._requests.snapshot()
        calls = CounterMetricFamily(
            "vitalstream_aws_requests",
            "AWS requests sent (each attempt that got a response), by service and operation",
            labels=["service", "operation"],
        )
        for (service, operation), n in sorted(counts.requests.items()):
            calls.add_metric([service, operation], n)
        writes = CounterMetricFamily(
            "vitalstream_dynamodb_item_writes",
            "DynamoDB item writes billed (refused conditional writes included), by table",
            labels=["table"],
        )
        for table, n in sorted(counts.item_writes.items()):
            writes.add_metric([table], n)
        reads = CounterMetricFamily(
            "vitalstream_dynamodb_item_reads", "DynamoDB item reads billed, by table", labels=["table"]
        )
        for table, n in sorted(counts.item_reads.items()):
            reads.add_metric([table], n)
        units = CounterMetricFamily(
            "vitalstream_dynamodb_capacity_units",
            "DynamoDB capacity units consumed, by table, kind (read, write) and source (reported by "
            "DynamoDB's ConsumedCapacity, or estimated at one unit per item when it reported none)",
            labels=["table", "kind", "source"],
        )
        for (table, kind, source), consumed in sorted(counts.capacity_units.items()):
            units.add_metric([table, kind.value, source.value], consumed)
        yield from (calls, writes, reads, units)


class ConsumerMetrics:
    """Every metric the consumer exports. ``outcome`` of a record is one of ``OUTCOMES``. ``requests``
    counts the AWS clients the consumer attaches to it (a new, empty counter when None)."""

    OUTCOMES = ("processed", "rejected", "duplicate", "retried")

    def __init__(
        self, registry: CollectorRegistry | None = None, requests: RequestCounter | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = requests if requests is not None else RequestCounter()
        r = self.registry
        r.register(RequestCollector(self.requests))
        self.records = Counter(
            "vitalstream_records",
            "Samples read from Kinesis (each sample of a batched message counts), by outcome",
            ["outcome"],
            registry=r,
        )
        self.late_samples = Counter(
            "vitalstream_late_samples",
            "Processed samples older than their device's newest (a backlog out of order): archived "
            "flagged outOfOrder, no detector moved",
            registry=r,
        )
        self.latency = Histogram(
            "vitalstream_event_to_sink_seconds",
            "Device timestamp to every sink acknowledged, per processed record",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "vitalstream_batch_seconds", "Time to run one batch through the core and every sink", registry=r
        )
        self.millis_behind = Gauge(
            "vitalstream_millis_behind_latest",
            "MillisBehindLatest of the last read, per shard this replica holds",
            ["shard_id"],
            registry=r,
        )
        self.leases_held = Gauge("vitalstream_leases_held", "Shard leases this replica holds", registry=r)
        self.lease_events = Counter(
            "vitalstream_lease_events",
            "Lease transitions: taken, stolen, lost, released, handed_over, ended, deleted",
            ["event"],
            registry=r,
        )
        self.checkpoints = Counter(
            "vitalstream_checkpoints", "Checkpoints written to the lease table", registry=r
        )
        self.sink_errors = Counter(
            "vitalstream_sink_errors",
            "Failed sink attempts (a batch, an upload, a device-table write, a snapshot read), by sink "
            "and AWS error code (or SDK exception type); their records are retried",
            ["sink", "code"],
            registry=r,
        )
        self.sink_permanent_errors = Gauge(
            "vitalstream_sink_permanent_errors",
            "Outstanding permanent sink-error causes (AccessDenied, a missing resource, ...), by sink; "
            "while any is above 0 the replica is not ready",
            ["sink"],
            registry=r,
        )
        self.throttles = Counter(
            "vitalstream_throttles", "Throttled or failed AWS calls that were backed off", ["api"], registry=r
        )
        self.alerts = Counter("vitalstream_alerts", "Alerts raised, by anomaly type", ["type"], registry=r)
        self.dead_letters = Counter(
            "vitalstream_dead_letters",
            "Poison records written to the dead-letter store",
            ["reason"],
            registry=r,
        )
        self.ready = Gauge(
            "vitalstream_ready",
            "1 while the replica is initialised, consuming and without a permanent sink error",
            registry=r,
        )
        self.detection_latency = Histogram(
            "vitalstream_detection_latency_seconds",
            "Device timestamp (since=device) or Kinesis arrival (since=arrival) to the alert published",
            ["since"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.archive_latency = Histogram(
            "vitalstream_archive_latency_seconds",
            "Device timestamp (since=device) or Kinesis arrival (since=arrival) to the record's archive "
            "file uploaded and checkpointed",
            ["since"],
            buckets=ARCHIVE_BUCKETS,
            registry=r,
        )
        self.upload_seconds = Histogram(
            "vitalstream_archive_upload_seconds",
            "Time to upload one archive file and its shard snapshot",
            registry=r,
        )
        self.archive_files = Counter(
            "vitalstream_archive_files", "Archive files uploaded and checkpointed", registry=r
        )
        self.latest_state_writes = Counter(
            "vitalstream_latest_state_writes",
            "Device-table items written by the latest-state coalescer",
            registry=r,
        )
        self.resident_devices = Gauge(
            "vitalstream_resident_devices",
            "Device states held in memory, per shard this replica holds",
            ["shard_id"],
            registry=r,
        )
        self.devices_evicted = Counter(
            "vitalstream_devices_evicted",
            "Idle devices dropped from resident state and snapshots (their items are in the device "
            "table), counted when the checkpoint that leaves them out is written",
            registry=r,
        )
        for since in ("device", "arrival"):
            self.detection_latency.labels(since)
            self.archive_latency.labels(since)
        for outcome in self.OUTCOMES:
            self.records.labels(outcome)
        for event in ("taken", "stolen", "lost", "released", "handed_over", "ended", "deleted"):
            self.lease_events.labels(event)
        for sink in Sink:  # every sink's series at 0 from the start (an empty code is no code label)
            self.sink_errors.labels(sink.value, "")
            self.sink_permanent_errors.labels(sink.value)
        for api in ("GetRecords", "DynamoDB"):
            self.throttles.labels(api)

    def observe_permanent(self, outstanding: Iterable[SinkError]) -> None:
        """Set ``vitalstream_sink_permanent_errors`` from the outstanding causes."""
        counts = dict.fromkeys(Sink, 0)
        for error in outstanding:
            counts[error.sink] += error.permanent
        for sink, count in counts.items():
            self.sink_permanent_errors.labels(sink.value).set(count)
