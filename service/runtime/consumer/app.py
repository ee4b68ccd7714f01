"""The composition root of Kubernetes mode: settings → aioboto3 clients, sinks, lease table → scheduler.

Kinesis and the lease table are used from the event loop through aioboto3; the sinks are the very
boto3 adapters of the Lambda shim plus the shard snapshots (``build_resident_sinks``), run in worker
threads, one batch per shard at a time, against each shard's resident state. One ``RequestCounter``
counts every client (sinks, Kinesis, lease table) and is exported on ``/metrics``. SIGTERM and SIGINT
start a graceful shutdown; the process exits 0 when every
lease is checkpointed and released.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from prometheus_client import disable_created_metrics

from service.core.archive_file import FilePolicy
from service.runtime import logs
from service.runtime.accounting import RequestCounter
from service.runtime.config import ConsumerSettings
from service.runtime.consumer.fanout import FanOutReader, register_consumer
from service.runtime.consumer.http import HealthServer
from service.runtime.consumer.lease_table import LeaseTable
from service.runtime.consumer.leases import Lease
from service.runtime.consumer.metrics import ConsumerMetrics
from service.runtime.consumer.reader import PollingReader, ShardReader
from service.runtime.consumer.resident import ResidentSinks
from service.runtime.consumer.scheduler import ReaderFactory, Scheduler, SchedulerConfig
from service.runtime.consumer.worker import Pacing

if TYPE_CHECKING:
    import boto3

log = logging.getLogger(__name__)
SINK_THREADS = 16  # batches in the sinks at once (one per shard at a time)
SINK_CONNECTIONS = 64  # each batch's state writes fan out over several connections


def worker_id(settings: ConsumerSettings) -> str:
    return settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"


async def consume(settings: ConsumerSettings, stop_after_s: float | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop_after_s``); return the exit code."""
    import aioboto3  # noqa: PLC0415 - heavy: only when consuming
    from botocore.config import Config  # noqa: PLC0415

    me = worker_id(settings)
    logs.configure(settings.log_level, me, settings.service_name)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(SINK_THREADS, thread_name_prefix="sink"))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if stop_after_s is not None:
        loop.call_later(stop_after_s, stop.set)

    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
    requests = RequestCounter()
    metrics = ConsumerMetrics(requests=requests)
    sinks = build_resident_sinks(settings, connections=SINK_CONNECTIONS, requests=requests)
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10)
    if settings.enhanced_fan_out:  # every subscription holds a connection: one per lease, and room for calls
        config = config.merge(Config(max_pool_connections=settings.max_leases_per_worker + 10))
    session = aioboto3.Session()
    where = {"region_name": settings.region, "endpoint_url": settings.endpoint_url, "config": config}
    stream_at = where | {"endpoint_url": settings.stream_endpoint_url}
    async with session.client("kinesis", **stream_at) as kinesis, session.client("dynamodb", **where) as ddb:
        requests.attach(kinesis)
        requests.attach(ddb)
        table = LeaseTable(ddb, settings.lease_table)
        readers = await _readers(kinesis, settings)
        scheduler = Scheduler(
            SchedulerConfig(
                worker_id=me,
                stream_name=settings.stream_name,
                failover_ms=settings.failover_ms,
                shard_sync_ms=settings.shard_sync_ms,
                max_leases_per_worker=settings.max_leases_per_worker,
                pacing=Pacing(idle_s=settings.idle_read_ms / 1000),
            ),
            table,
            kinesis,
            readers,
            sinks,
            metrics,
        )
        server = HealthServer(metrics.registry, scheduler.live, scheduler.ready)
        port = await server.start(settings.metrics_host, settings.metrics_port)
        log.info(
            "serving /metrics, /healthz, /readyz",
            extra={"url": f"http://{settings.metrics_host}:{port}", "port": port},
        )
        try:
            await scheduler.run(stop)
        finally:
            await server.stop()
    log.info("exit")
    return 0


def build_resident_sinks(
    settings: ConsumerSettings,
    session: boto3.Session | None = None,
    connections: int = 10,
    requests: RequestCounter | None = None,
) -> ResidentSinks:
    """Kubernetes mode's sinks: the pipeline's, plus shard snapshots in the archive bucket, and the
    archive-file and latest-state cadences of the settings."""
    import boto3  # noqa: PLC0415 - heavy: only when consuming

    from service.runtime.adapters import S3Archive  # noqa: PLC0415
    from service.runtime.adapters.s3_snapshots import S3SnapshotStore  # noqa: PLC0415
    from service.runtime.composition import build_pipeline, client, sink_config  # noqa: PLC0415

    session = session or boto3.Session()
    pipeline = build_pipeline(settings, session, connections, requests)
    assert isinstance(pipeline.archive, S3Archive)
    snapshots = S3SnapshotStore(
        client(session, "s3", settings, sink_config(connections), requests),
        settings.archive_bucket,
        settings.snapshot_prefix,
    )
    policy = FilePolicy(
        settings.archive_file_max_records, settings.archive_file_max_bytes, settings.archive_file_max_age_ms
    )
    return ResidentSinks(
        detector=pipeline.detector,
        states=pipeline.states,
        alerts=pipeline.alerts,
        dead_letters=pipeline.dead_letters,
        archive=pipeline.archive,
        snapshots=snapshots,
        policy=policy,
        latest_interval_ms=settings.latest_state_interval_ms,
        idle_evict_ms=settings.device_idle_evict_ms,
        limits=settings.message_limits,
    )


async def _readers(kinesis: Any, settings: ConsumerSettings) -> ReaderFactory:
    """Shared-throughput polling (GetRecords), or enhanced fan-out (SubscribeToShard) through the stream
    consumer ``settings.consumer_name``, registered here once for every shard of this replica."""
    if not settings.enhanced_fan_out:
        log.info("reading shards with GetRecords (shared throughput)", extra={"mode": "polling"})

        def polling(lease: Lease) -> ShardReader:
            return PollingReader(
                kinesis, settings.stream_name, lease.shard_id, str(lease.checkpoint), settings.max_records
            )

        return polling

    summary = await kinesis.describe_stream_summary(StreamName=settings.stream_name)
    stream_arn = str(summary["StreamDescriptionSummary"]["StreamARN"])
    consumer_arn = await register_consumer(kinesis, stream_arn, settings.consumer_name)
    log.info(
        "reading shards with SubscribeToShard (enhanced fan-out)",
        extra={"mode": "enhanced_fan_out", "consumer_arn": consumer_arn},
    )

    def fan_out(lease: Lease) -> ShardReader:
        return FanOutReader(kinesis, consumer_arn, lease.shard_id, str(lease.checkpoint))

    return fan_out
