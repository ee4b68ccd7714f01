"""One demo run on the embedded emulator: the stack, the fleet, the processing and the read-back."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3

from lambda_shim import archive_handler as archive_shim
from lambda_shim import handler as shim
from service.runtime.accounting import RequestCounts, summed
from service.runtime.adapters.kinesis_writer import KinesisPublisher
from service.runtime.publishing import Message, PublishReport
from service.tools.demo.ledger import AckLedger, LatencySummary, PublishedAlerts
from service.tools.demo.replicas import ReplicaSet
from service.tools.demo.report import DemoReport, Expected, SinkContents, build_report, read_archive
from service.tools.demo.scenario import demo_scenario
from service.tools.demo.view import LiveView, Progress
from service.tools.emulator import EmbeddedAws, Engine
from service.tools.esm import EventSourceMapping, Invocation, Isolated
from service.tools.serverless import archive_mapping_config, mapping_config
from simulator.fleet import Fleet
from simulator.pacing import paced
from simulator.truth import TruthEntry

REGION = "us-east-1"
ARCHIVER_ARN = "arn:aws:lambda:local:000000000000:function:vitalstream-archiver"
DRAIN_TIMEOUT_S = 180.0
DEMO_FILE_AGE_MS = 10_000  # a minute's demo shows several archive files per shard (the default is 60 s)
# Lambda mode: the archive mapping's batching window in the demo, as short for the same reason (the
# template's is 300 s)
DEMO_ARCHIVE_BATCHING_S = DEMO_FILE_AGE_MS / 1000
# Lambda mode's functions: each shim in a worker process per shard, its request counts read back from
# each worker. A callable runs in this process instead (bench/lambda_windows.py's measuring wrapper).
LAMBDA_FUNCTION: Callable[[dict[str, Any], Any], Any] | Isolated = Isolated(
    "lambda_shim.handler:handler", probe="lambda_shim.handler:REQUESTS.snapshot"
)
ARCHIVE_FUNCTION: Callable[[dict[str, Any], Any], Any] | Isolated = Isolated(
    "lambda_shim.archive_handler:handler", probe="lambda_shim.handler:REQUESTS.snapshot"
)


def _logging_to(
    function: Callable[[dict[str, Any], Any], Any] | Isolated, lines: Path
) -> Callable[[dict[str, Any], Any], Any] | Isolated:
    """``function`` with its worker's stdout appended to ``lines`` (an in-process callable prints to
    this process's stdout, which the live view shares: tests and benches that pass one capture it)."""
    return dataclasses.replace(function, output=str(lines)) if isinstance(function, Isolated) else function


class DemoSession:
    """Starts the emulator and provisions the stack on enter; stops the emulator on exit."""

    def __init__(self, shards: int, log: Callable[[str], None], engine: Engine = Engine.MINISTACK) -> None:
        self._shards, self._log = shards, log
        self._emulator = EmbeddedAws(engine=engine)
        self._env: dict[str, str] = {}
        self.fleet_started: float | None = None  # monotonic time the last run's fleet began publishing

    def __enter__(self) -> DemoSession:
        from service.tools.provisioning import provision_stack  # noqa: PLC0415 - reads the template

        self._saved_environ = dict(os.environ)  # given back on exit: the session's settings are its own
        endpoint = self._emulator.start()
        self._log(f"embedded AWS emulator ({self._emulator.engine}) on {endpoint}")
        started = time.monotonic()
        result = provision_stack(
            "vitalstream-demo",
            endpoint_url=endpoint,
            region=REGION,
            parameters={"ShardCount": str(self._shards)},
        )
        self._log(
            f"stack provisioned in {time.monotonic() - started:.1f} s ({len(result.changes)} emulator gaps)"
        )
        self._env = dict(result.environment) | {"VITALSTREAM_ENDPOINT_URL": endpoint}
        self._outputs = result.outputs
        os.environ.update(self._env)  # the shims read their settings from this environment
        shim._runtime.cache_clear()
        archive_shim._role.cache_clear()
        self._session = boto3.Session(region_name=REGION)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        os.environ.clear()
        os.environ.update(self._saved_environ)
        shim._runtime.cache_clear()
        archive_shim._role.cache_clear()
        self._emulator.stop()

    def _client(self, name: str) -> Any:
        make: Callable[..., Any] = self._session.client
        return make(name, endpoint_url=self._env["VITALSTREAM_ENDPOINT_URL"])

    def run(
        self,
        *,
        devices: int,
        duration_ms: int,
        seed: int,
        share: float,
        batch_size: int,
        mode: str,
        replicas: int = 2,
        tumbling_window_s: int | None = None,
        file_age_ms: int | None = DEMO_FILE_AGE_MS,
        samples_per_message: int = 1,
        archive_batching_s: float = DEMO_ARCHIVE_BATCHING_S,
    ) -> DemoReport:
        """``tumbling_window_s``: Lambda mode's window (None: the template's; 0: per-batch state).
        ``archive_batching_s``: Lambda mode's archive mapping's batching window.
        ``file_age_ms``: the consumers' archive file age (None: the product's default).
        ``samples_per_message``: what each device buffers per message (``simulator.uplink``)."""
        sqs, kinesis = self._client("sqs"), self._client("kinesis")
        alert_queue = self._subscribe_alert_queue(sqs)
        stream = self._env["VITALSTREAM_STREAM_NAME"]
        published = PublishedAlerts()
        processing = (
            self._consumers(replicas, file_age_ms)
            if mode == "consumer"
            else self._lambda(
                sqs, kinesis, stream, batch_size, tumbling_window_s, archive_batching_s, published
            )
        )
        view = LiveView(sys.stderr)
        alerts: list[dict[str, Any]] = []

        def collect_alerts() -> None:
            for body, sent_ms in _drain_alerts(sqs, alert_queue):
                alerts.append(body)
                published.note(body, sent_ms)

        self._log(
            f"{devices:,} devices for {duration_ms / 1000:.0f} s, {samples_per_message} samples a message, "
            f"{self._shards} shards, {mode} mode"
        )
        started = time.monotonic()
        with processing:
            # the fleet's clock starts when it starts publishing, not before the processing was ready
            start_ms = int(time.time() * 1000)
            self.fleet_started = time.monotonic()
            scenario = demo_scenario(duration_ms, share, samples_per_message)
            fleet = Fleet(devices, seed, start_ms, start_ms + duration_ms, scenario=scenario)
            feed = _Feed(fleet, KinesisPublisher(kinesis, stream))
            feed.start()
            deadline: float | None = None
            while True:
                collect_alerts()
                counts = Counter(a["type"] for a in alerts)
                progress = processing.progress()
                acknowledged = progress.settled
                view.update(feed.samples, progress, counts)
                if not feed.running:
                    deadline = deadline or time.monotonic() + DRAIN_TIMEOUT_S
                    if acknowledged >= feed.samples or time.monotonic() > deadline:
                        break
                time.sleep(1.0)
            view.update(feed.samples, progress, counts, force=True)
            view.close()
            processing.wait_archived(DRAIN_TIMEOUT_S)
            collect_alerts()
            requests = processing.requests() if mode == "consumer" else None  # replicas: scraped live
            latencies = processing.latencies()
        if requests is None:  # the shim's workers: counted after the windows' final invocations
            requests = processing.requests()
        elapsed = time.monotonic() - started
        collect_alerts()
        return build_report(
            expected=feed.expected,
            sinks=self._read_sinks(sqs, alerts),
            truth=feed.truth,
            latency=progress.latency,
            sent=feed.samples,
            messages=feed.report.sent,
            samples_per_message=samples_per_message,
            publish_failed=feed.report.failed,
            devices=devices,
            duration_s=elapsed,
            shards=self._shards,
            mode=mode,
            requests=requests,
            unacknowledged=max(feed.samples - acknowledged, 0),
            latencies=latencies,
        )

    def _lambda(
        self,
        sqs: Any,
        kinesis: Any,
        stream: str,
        batch_size: int,
        window_s: int | None,
        archive_batching_s: float,
        published: PublishedAlerts,
    ) -> _Processing:
        """Serverless mode: the local event source mappings invoke the functions as the template deploys
        them (``LambdaArchive=files``): the detection mapping ``LAMBDA_FUNCTION``, the archive mapping
        ``ARCHIVE_FUNCTION``, each in a worker process per shard (each shard's sandbox on AWS), their
        JSON logs and EMF lines appended to a ``lambda.jsonl`` (as CloudWatch Logs would take them, not
        over the live view). Their requests are the shims' (each worker's ``REQUESTS``, or this
        process's from here on); the mappings' own reads are Lambda's. Detection latency: device time →
        the alert's arrival in the demo's subscriber queue (``PublishedAlerts``)."""
        os.environ["VITALSTREAM_LAMBDA_ARCHIVE"] = "files"
        shim._runtime.cache_clear()
        lines = Path(tempfile.mkdtemp(prefix="vitalstream-demo-")) / "lambda.jsonl"
        self._log(f"the functions' JSON logs and EMF metric lines in {lines}")
        function, archiver = _logging_to(LAMBDA_FUNCTION, lines), _logging_to(ARCHIVE_FUNCTION, lines)
        before = shim.REQUESTS.snapshot()
        ledger = AckLedger(lambda: int(time.time() * 1000))
        archived = AckLedger(lambda: int(time.time() * 1000))
        failures_url = (
            self._outputs.get("BatchFailureQueueUrl")
            or sqs.create_queue(QueueName="demo-failures")["QueueUrl"]
        )

        def destination(body: dict[str, Any]) -> None:
            sqs.send_message(QueueUrl=failures_url, MessageBody=json.dumps(body))

        invocation = Invocation(function, destination, region=REGION, observe=ledger.observe)
        # The template's mapping (tumbling windows on), with the demo's batch size and a short batching
        # window; the mapping's stop ends open windows, so their states are in the table by the report.
        overrides = [] if window_s is None else [f"TumblingWindowInSeconds={window_s}"]
        config = dataclasses.replace(mapping_config(overrides), batch_size=batch_size, batching_window_s=0.5)
        # An idle shard is polled once a second, as Lambda polls.
        mapping = EventSourceMapping(kinesis, stream, invocation, config, resync_s=2.0, idle_poll_s=1.0)
        archive_config = dataclasses.replace(archive_mapping_config(), batching_window_s=archive_batching_s)
        archiving = EventSourceMapping(
            kinesis,
            stream,
            Invocation(archiver, destination, ARCHIVER_ARN, REGION, observe=archived.observe),
            archive_config,
            resync_s=2.0,
            idle_poll_s=1.0,
        )

        def requests() -> RequestCounts:
            if isinstance(function, Isolated):
                return summed([*mapping.probes(), *archiving.probes()])
            return shim.REQUESTS.snapshot().since(before)

        def progress() -> Progress:
            return Progress(ledger.acknowledged, ledger.latency(), requests(), published.latency())

        def latencies() -> dict[str, LatencySummary]:
            return {"archive": archived.latency(), "detection": published.latency()}

        def unarchived() -> int:
            return max(ledger.acknowledged - archived.acknowledged, 0)

        runner = _Mappings(archiving, mapping)
        return _Processing(runner, progress, requests, latencies, unarchived)

    def _consumers(self, count: int, file_age_ms: int | None) -> _Processing:
        """Kubernetes mode: ``count`` consumer processes share the shards through the lease table."""
        log_dir = Path(tempfile.mkdtemp(prefix="vitalstream-demo-"))
        env = {"VITALSTREAM_SHARD_SYNC_MS": "5000"}
        if file_age_ms is not None:
            env["VITALSTREAM_ARCHIVE_FILE_MAX_AGE_MS"] = str(file_age_ms)
        replica_set = ReplicaSet(self._env | env, log_dir)
        age = "the default age" if file_age_ms is None else f"every {file_age_ms // 1000} s"
        self._log(f"{count} consumer replicas, archive files {age} per shard; their JSON logs in {log_dir}")

        def progress() -> Progress:
            scrape = replica_set.scrape()
            detection = scrape.latency("vitalstream_detection_latency_seconds", since="device")
            return Progress(scrape.settled, scrape.latency(), scrape.requests(), detection)

        def latencies() -> dict[str, LatencySummary]:
            scrape = replica_set.scrape()
            return {
                "detection": scrape.latency("vitalstream_detection_latency_seconds", since="device"),
                "archive": scrape.latency("vitalstream_archive_latency_seconds", since="device"),
            }

        def unarchived() -> int:
            scrape = replica_set.scrape()
            processed = scrape.total("vitalstream_records_total", outcome="processed")
            return int(processed - scrape.total("vitalstream_archive_latency_seconds_count", since="device"))

        requests = lambda: replica_set.scrape().requests()  # noqa: E731
        return _Processing(_Replicas(replica_set, count), progress, requests, latencies, unarchived)

    def _subscribe_alert_queue(self, sqs: Any) -> str:
        url = str(sqs.create_queue(QueueName=f"demo-alerts-{uuid.uuid4().hex[:8]}")["QueueUrl"])
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self._client("sns").subscribe(
            TopicArn=self._env["VITALSTREAM_ALERT_TOPIC_ARN"],
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        return url

    def _read_sinks(self, sqs: Any, alerts: list[dict[str, Any]]) -> SinkContents:
        s3, dynamodb = self._client("s3"), self._client("dynamodb")
        bucket, prefix = self._env["VITALSTREAM_ARCHIVE_BUCKET"], self._env["VITALSTREAM_ARCHIVE_PREFIX"]
        keys = [
            obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        ]
        bodies = (s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys)
        table = self._env["VITALSTREAM_DEVICE_STATE_TABLE"]
        pages = dynamodb.get_paginator("scan").paginate(TableName=table, Select="COUNT")
        items = sum(page["Count"] for page in pages)  # a scan answers 1 MB a page: ~2,600 device items
        return SinkContents(
            archive_lines=read_archive(bodies),
            archive_objects=len(keys),
            dead_letters=_drain(sqs, self._env["VITALSTREAM_DEAD_LETTER_QUEUE_URL"]),
            alerts=alerts,
            device_state_items=int(items),
        )


class _Processing:
    """Whatever processes the stream in this demo, with how many records it has settled and how fast,
    and the AWS requests it has sent so far."""

    def __init__(
        self,
        runner: contextlib.AbstractContextManager[Any],
        progress: Callable[[], Progress],
        requests: Callable[[], RequestCounts],
        latencies: Callable[[], dict[str, LatencySummary]] = dict,
        unarchived: Callable[[], int] = lambda: 0,
    ) -> None:
        self._runner, self.progress, self.requests = runner, progress, requests
        self.latencies, self._unarchived = latencies, unarchived

    def wait_archived(self, timeout_s: float) -> None:
        """Wait (up to ``timeout_s``) until every processed record's archive file is uploaded."""
        deadline = time.monotonic() + timeout_s
        while self._unarchived() > 0 and time.monotonic() < deadline:
            time.sleep(0.5)

    def __enter__(self) -> _Processing:
        self._runner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._runner.__exit__(*exc)


class _Mappings(contextlib.ExitStack):
    """Event source mappings started in order and stopped in reverse (the detection mapping first, the
    archive mapping last)."""

    def __init__(self, *mappings: EventSourceMapping) -> None:
        super().__init__()
        self._mappings = mappings

    def __enter__(self) -> _Mappings:
        super().__enter__()
        for mapping in self._mappings:
            self.enter_context(mapping)
        return self


class _Replicas(contextlib.AbstractContextManager["_Replicas"]):
    def __init__(self, replica_set: ReplicaSet, count: int) -> None:
        self._set, self._count = replica_set, count

    def __enter__(self) -> _Replicas:
        self._set.start(self._count)
        self._set.wait_ready()
        return self

    def __exit__(self, *exc: Any) -> None:
        codes = self._set.stop()
        failed = {worker: code for worker, code in codes.items() if code != 0}
        if failed:
            raise RuntimeError(f"consumer replicas did not exit cleanly: {failed}")


class _Feed:
    """The fleet, publishing in real time from its own thread; keeps what it sent for the report:
    ``report`` counts messages, ``samples`` the samples in the messages handed to the publisher (those
    in a message it gave up on, ``report.failed``, are then lost)."""

    def __init__(self, fleet: Fleet, publisher: KinesisPublisher) -> None:
        self.fleet, self.publisher = fleet, publisher
        self.report = PublishReport()
        self.samples = 0
        self.expected = Expected()
        self.truth: list[TruthEntry] = []
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            tick: list[Message] = []
            for sends, low, high in paced(self.fleet, realtime=True, stop=self._stop):
                if low == 0:
                    tick = sends.messages()
                    self.truth.extend(self.fleet.drain_truth())
                    # This one process stands in for every device: a full collection over what the run
                    # keeps (expected samples, truth) would hold all their sends at once, 70-200 ms every
                    # ~15 s at 10,000 devices, which no fleet does. Survivors leave the collector's way.
                    gc.freeze()
                self.report.add(self.publisher.publish(tick[low:high]))
                self.samples += self.expected.add(m.payload for m in tick[low:high])
            self.truth.extend(self.fleet.drain_truth())
        finally:
            self.publisher.close()


def _drain_alerts(sqs: Any, queue_url: str) -> list[tuple[dict[str, Any], int]]:
    """The alert messages in the queue, each with the time SQS took it (``SentTimestamp``, ms)."""
    alerts: list[tuple[dict[str, Any], int]] = []
    while True:
        received = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["SentTimestamp"]
        )
        messages = received.get("Messages", [])
        if not messages:
            return alerts
        for message in messages:
            sent = message.get("Attributes", {}).get("SentTimestamp", "0")
            alerts.append((json.loads(message["Body"]), int(sent)))
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )


def _drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    while True:
        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = received.get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
