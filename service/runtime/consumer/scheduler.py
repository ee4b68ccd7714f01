"""The replica's control loop: shard discovery, lease rounds, and one ``ShardConsumer`` per held lease.

Every ``failover_ms / 5`` (2 s by default; KCL renews every third), a lease round: read the lease
table (an eventually consistent scan: see ``lease_table``), renew the leases held, then follow
``leases.plan`` — take free or expired leases (a child whose parent the scan does not show only once
a strongly consistent read confirms the parent is gone or at SHARD_END), steal at most one to
balance, release finished ones. A steal is a request (``request_handoff``): the owner
finishes its batch, checkpoints and hands the lease over at its next renewal; this replica starts the
shard in the round after, when the table shows it as the owner. A lease taken after its owner
expired starts at once: the owner fenced itself a third of the failover time before (``ownership``),
and every archive file is prepared, and every checkpoint written, conditional on the lease. So a
shard's files and checkpoints are never written by two replicas at once.

Every ``shard_sync_ms``, and at once when a shard ends, ``ListShards`` (all pages) creates a lease for
each new shard with its parents, so children wait for their parents' SHARD_END — but none for a closed
shard with a leased descendant (``leases.shards_to_lease``). Each round deletes the finished leases
whose children have all started (``leases.cleanup``, KCL's completed-lease cleanup), so the table holds
the open shards and their latest ancestors, not every shard the stream ever had.

Readiness (``ready``, ``/readyz``, ``vitalstream_ready``): ready once the lease table is there and the
first shard sync is done, until shutdown begins — except while a permanent sink error (AccessDenied, a
missing resource) is outstanding in the replica's ``SinkHealth``, which its shards share: then not
ready until that sink answers a call of the same kind (read or write) in full again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from service.runtime.adapters._errors import CALL_ERRORS, describe
from service.runtime.consumer.lease_table import LeaseTable
from service.runtime.consumer.leases import Lease, LeaseConfig, LeaseObserver, Shard, plan, shards_to_lease
from service.runtime.consumer.metrics import ConsumerMetrics
from service.runtime.consumer.ownership import HeldLease
from service.runtime.consumer.reader import KinesisClient, ShardReader
from service.runtime.consumer.resident import ResidentShard, ResidentSinks
from service.runtime.consumer.shard_cursor import list_shards_async
from service.runtime.consumer.worker import Pacing, ShardConsumer
from service.runtime.sink_health import SinkHealth

log = logging.getLogger(__name__)
ReaderFactory = Callable[[Lease], ShardReader]


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    worker_id: str
    stream_name: str
    failover_ms: int = 10_000
    shard_sync_ms: int = 60_000
    max_leases_per_worker: int = 256
    pacing: Pacing = field(default_factory=Pacing)

    @property
    def round_s(self) -> float:
        """A dead owner is seen at most one round late and taken one round after its expiry:
        with the default 10 s failover, its shards move within 14 s (issue target: 15 s)."""
        return self.failover_ms / 5 / 1000


class Scheduler:
    def __init__(
        self,
        config: SchedulerConfig,
        table: LeaseTable,
        kinesis: KinesisClient,
        readers: ReaderFactory,
        sinks: ResidentSinks,
        metrics: ConsumerMetrics,
    ) -> None:
        self._config, self._table, self._kinesis = config, table, kinesis
        self._readers, self._sinks, self._metrics = readers, sinks, metrics
        self._lease_config = LeaseConfig(
            failover_ms=config.failover_ms, max_leases_per_worker=config.max_leases_per_worker
        )
        self._observer = LeaseObserver()
        self._consumers: dict[str, tuple[ShardConsumer, asyncio.Task[Any]]] = {}
        self._closed: set[str] = set()
        self._known: set[str] = set()
        self._sync_now = asyncio.Event()
        self._ready = False
        self._health = SinkHealth()
        self._last_round = time.monotonic()
        metrics.ready.set_function(lambda: float(self.ready()))

    # --- health ------------------------------------------------------------------------------------

    def ready(self) -> bool:
        """Initialised, not shutting down, and no permanent sink error outstanding."""
        return self._ready and not self._health.permanent

    @property
    def health(self) -> SinkHealth:
        return self._health

    def live(self) -> bool:
        """The lease loop completed a round recently (a round that fails still counts as completed)."""
        return time.monotonic() - self._last_round < max(3 * self._config.round_s, 30.0)

    @property
    def held(self) -> list[str]:
        return sorted(self._consumers)

    # --- lifecycle ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self._table.ensure_table()
        await self._sync_shards()
        self._ready = True
        log.info("consuming", extra={"stream": self._config.stream_name})
        loops = [asyncio.create_task(self._lease_loop(stop)), asyncio.create_task(self._sync_loop(stop))]
        try:
            await stop.wait()
        finally:
            self._ready = False
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._shutdown()

    async def _shutdown(self) -> None:
        """shutdown_requested for every shard: finish, checkpoint, release; then return."""
        for consumer, _ in self._consumers.values():
            consumer.request_shutdown()
        tasks = [task for _, task in self._consumers.values()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        log.info("shut down", extra={"released": len(tasks)})

    async def _lease_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.lease_round()
            except CALL_ERRORS as exc:
                code = describe(exc)
                self._metrics.throttles.labels("DynamoDB").inc()
                log.warning("lease round failed (%s); the next one retries", code)
            self._last_round = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._config.round_s - (time.monotonic() - started))

    async def _sync_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sync_now.wait(), self._config.shard_sync_ms / 1000)
            self._sync_now.clear()
            try:
                await self._sync_shards()
            except CALL_ERRORS as exc:
                code = describe(exc)
                log.warning("shard sync failed (%s); the next one retries", code)

    # --- one lease round ---------------------------------------------------------------------------

    async def lease_round(self) -> None:
        leases = await self._table.list_leases()
        now_ms = int(time.monotonic() * 1000)
        self._observer.observe(leases, now_ms)
        await self._renew_all()
        me = self._config.worker_id
        advice = plan(leases, self._observer, me, now_ms, self._lease_config)
        for lease in advice.renew:  # ours in the table, not running here (a restart under the same id)
            if lease.shard_id not in self._consumers:
                self._start(lease)
        present = {lease.shard_id for lease in leases}
        await asyncio.gather(*(self._take(lease, present) for lease in advice.take))
        if advice.steal is not None:
            await self._request(advice.steal)
        for lease in advice.release:
            if lease.shard_id not in self._consumers:
                with contextlib.suppress(ClientError):
                    await self._table.release(lease, me)
        for lease in advice.delete:  # a consumer still finishing it releases it first
            if lease.shard_id not in self._consumers and await self._table.delete_finished(lease):
                self._metrics.lease_events.labels("deleted").inc()
                log.info("finished lease deleted", extra={"shard_id": lease.shard_id})
        self._metrics.leases_held.set(len(self._consumers))

    async def _renew_all(self) -> None:
        held = [consumer.held for consumer, _ in self._consumers.values()]
        results = await asyncio.gather(*(h.renew() for h in held), return_exceptions=True)
        for lease, result in zip(held, results, strict=True):
            if isinstance(result, BaseException):
                self._metrics.throttles.labels("DynamoDB").inc()
                log.warning("renewing %s failed (%r)", lease.shard_id, result)
            elif result is False:
                log.warning("lease_lost", extra={"shard_id": lease.shard_id})

    async def _take(self, lease: Lease, present: set[str]) -> None:
        for parent in lease.parents:  # missing from an eventually consistent scan: gone, or not seen yet?
            if parent not in present and not _done(await self._table.get(parent)):
                return  # the parent is still being read: its child waits for a later round
        taken = await self._table.take(lease, self._config.worker_id)
        if taken is None:
            return  # another replica won the conditional write
        self._metrics.lease_events.labels("taken").inc()
        log.info("lease taken", extra={"shard_id": lease.shard_id, "from": lease.owner})
        self._start(taken)

    async def _request(self, lease: Lease) -> None:
        if await self._table.request_handoff(lease, self._config.worker_id) is not None:
            self._metrics.lease_events.labels("stolen").inc()
            log.info("handoff requested", extra={"shard_id": lease.shard_id, "from": lease.owner})

    def _start(self, lease: Lease) -> None:
        held = HeldLease(lease, self._table, self._config.worker_id, self._config.failover_ms)
        reader = self._readers(lease)
        reader.closed = lease.shard_id in self._closed
        consumer = ShardConsumer(
            held,
            reader,
            ResidentShard(lease.shard_id, self._sinks, lease.prepared_end),
            self._metrics,
            self._config.pacing,
            on_children=lambda children: self._sync_now.set(),
            health=self._health,
        )
        task = asyncio.create_task(consumer.run(), name=f"shard-{lease.shard_id}")
        self._consumers[lease.shard_id] = (consumer, task)
        task.add_done_callback(lambda done: self._ended(lease.shard_id, consumer, done))

    def _ended(self, shard_id: str, consumer: ShardConsumer, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:  # a bug: say so, then restart
            log.error("shard task failed", exc_info=error, extra={"shard_id": shard_id})
        current = self._consumers.get(shard_id)
        if current is not None and current[0] is consumer:
            del self._consumers[shard_id]
            self._sync_now.set()  # a shard may have ended: its children need leases
        self._metrics.leases_held.set(len(self._consumers))

    # --- shard discovery ---------------------------------------------------------------------------

    async def _sync_shards(self) -> None:
        listing = await list_shards_async(self._kinesis.list_shards, self._config.stream_name)
        shards = [_shard(listed) for listed in listing]
        unknown = {shard.shard_id for shard in shards if shard.shard_id not in self._known}
        # A closed shard's lease may have been deleted after its children started: the table decides.
        closed = any(shard.closed for shard in shards if shard.shard_id in unknown)
        leases = await self._table.list_leases(consistent=True) if closed else []
        for shard in shards_to_lease(shards, leases):
            if shard.shard_id in unknown:
                await self._table.create(shard.shard_id, shard.parents)  # if absent
        listed = {shard.shard_id for shard in shards}  # shards past the retention period are forgotten
        self._known = (self._known & listed) | unknown
        self._closed = {shard.shard_id for shard in shards if shard.closed}
        for shard_id, (consumer, _) in self._consumers.items():
            if shard_id in self._closed:
                consumer.shard_closed()


def _done(parent: Lease | None) -> bool:
    """A parent lease lets its children start: deleted (after SHARD_END), or at SHARD_END."""
    return parent is None or parent.finished


def _shard(listed: dict[str, Any]) -> Shard:
    parents = tuple(p for p in (listed.get("ParentShardId"), listed.get("AdjacentParentShardId")) if p)
    closed = "EndingSequenceNumber" in listed.get("SequenceNumberRange", {})
    return Shard(listed["ShardId"], parents, closed)
