"""A lease this replica holds: the one snapshot both the lease loop and the shard's worker write on.

Renewals (lease loop) and checkpoints (worker) are both conditional on the lease counter, so they go
through one lock and always condition on the latest snapshot. A ``None`` from the table means the lease
was taken or stolen: the holder is *lost* and its worker stops without another checkpoint.

Fencing. Another replica may take this lease once its counter has stood still for ``failover_ms`` of
that replica's time, which starts no earlier than this replica's last successful renewal. So the worker
starts a batch only while ``now - last_renewed < fence_ms`` (two thirds of the failover time): when
renewals fail (a throttled or unreachable lease table), it pauses well before anyone can take over,
and a batch already running has the remaining third to finish. Two replicas never write for one shard
at the same time, which is what keeps sink effects single after a failover.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from service.runtime.consumer.lease_table import LeaseTable
from service.runtime.consumer.leases import Lease

Clock = Callable[[], float]


class HeldLease:
    def __init__(
        self, lease: Lease, table: LeaseTable, me: str, failover_ms: int, clock: Clock = time.monotonic
    ) -> None:
        self.lease = lease
        self._table, self._me, self._clock = table, me, clock
        self.fence_s = failover_ms * 2 / 3 / 1000
        self._lock = asyncio.Lock()
        self._renewed_at = clock()
        self.lost = asyncio.Event()

    @property
    def shard_id(self) -> str:
        return self.lease.shard_id

    def fenced(self) -> bool:
        """True when the last successful renewal is too old to start another batch safely."""
        return self._clock() - self._renewed_at >= self.fence_s

    async def renew(self) -> bool:
        """Renew on the latest snapshot. False (and ``lost`` set) when the lease is no longer ours.

        Errors of the table (throttling, outage) propagate; the fence protects the shard meanwhile.
        """
        async with self._lock:
            if self.lost.is_set():
                return False
            started = self._clock()
            renewed = await self._table.renew(self.lease, self._me)
            return self._update(renewed, started)

    async def prepare(self, first: str, last: str) -> bool:
        """Record the span of the next batch before its sink writes; False (and ``lost``) when lost."""
        async with self._lock:
            if self.lost.is_set():
                return False
            started = self._clock()
            written = await self._table.prepare(self.lease, self._me, first, last)
            return self._update(written, started)

    async def checkpoint(self, sequence: str, snapshot: str | None = None) -> bool:
        """Record ``sequence`` (or SHARD_END) and the snapshot written for it. False (and ``lost`` set)
        when the lease is no longer ours."""
        async with self._lock:
            if self.lost.is_set():
                return False
            started = self._clock()
            written = await self._table.checkpoint(self.lease, self._me, sequence, snapshot)
            return self._update(written, started)

    @property
    def handoff_requested(self) -> bool:
        """Another replica asked for this lease (a steal): finish the batch, checkpoint, ``hand_over``."""
        return self.lease.pending_owner is not None

    async def hand_over(self) -> bool:
        """Give the lease to the replica that asked for it. Nothing more may be written for the shard."""
        async with self._lock:
            if self.lost.is_set():
                return False
            handed = await self._table.hand_over(self.lease, self._me)
            self.lost.set()
            return handed is not None

    async def release(self) -> bool:
        async with self._lock:
            if self.lost.is_set():
                return False
            released = await self._table.release(self.lease, self._me)
            self.lost.set()  # released: nothing more may be written for this shard by us
            return released

    def _update(self, lease: Lease | None, started: float) -> bool:
        if lease is None:
            self.lost.set()
            return False
        self.lease = lease
        self._renewed_at = started  # the write was accepted no earlier than it was sent
        return True
