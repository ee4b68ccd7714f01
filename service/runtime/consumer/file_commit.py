"""Committing one shard's archive files: prepare → upload → checkpoint, one file at a time, in order.

A cut file (``ClosedFile``) is committed in three steps, each conditional on still holding the lease:

1. **prepare**: the file's span (first and last sequence number) goes into the lease, so a replica that
   takes the lease over cuts the file again at the same end and its upload lands on the same key;
2. **upload**: the file and the snapshot of the shard's device states as of its last record
   (put-if-absent: a retry or a takeover writes the same bytes to the same keys);
3. **checkpoint**: the lease's checkpoint moves to the file's last record and names that snapshot.

So the checkpoint never passes a record whose file is not uploaded. A step that fails is tried again
from the start after a full-jitter back-off (prepare and upload are idempotent); the back-off resets
when a file is committed. Files are committed one at a time: ``start`` waits for the file before, so
the checkpoint never runs more than one file behind the open one. A commit stops when the lease is
lost (``HeldLease.lost``): nothing more is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from service.core.archive_file import ClosedFile
from service.runtime.adapters._errors import CALL_ERRORS, describe
from service.runtime.adapters.pacing import Backoff
from service.runtime.consumer.metrics import ConsumerMetrics
from service.runtime.consumer.ownership import HeldLease
from service.runtime.consumer.resident import ResidentShard
from service.runtime.consumer.sink_report import SinkReport
from service.runtime.ports import Access, Sink, SinkError

log = logging.getLogger(__name__)
Pause = Callable[[float], Awaitable[bool]]  # sleep up to this long; True when the shard is stopping


class FileCommitter:
    """Commits the files of one shard in the background, one at a time; ``checkpointed`` is the last
    checkpoint written (the lease's at start)."""

    def __init__(
        self,
        held: HeldLease,
        shard: ResidentShard,
        metrics: ConsumerMetrics,
        sink_report: SinkReport,
        pause: Pause,
        now_ms: Callable[[], int],
        backoff: Backoff,
    ) -> None:
        self._held, self._shard, self._metrics = held, shard, metrics
        self._sink_report, self._pause, self._now_ms, self._backoff = sink_report, pause, now_ms, backoff
        self.in_flight: asyncio.Task[None] | None = None  # the one file being committed
        self.checkpointed = str(held.lease.checkpoint)

    async def start(self, closed: ClosedFile) -> bool:
        """Commit ``closed`` in the background once the file before it is committed; False when the
        lease was lost meanwhile (``closed`` is then not started)."""
        if self.in_flight is not None:
            await self.in_flight
            if self._held.lost.is_set():
                return False
        self.in_flight = asyncio.create_task(self.until_done(closed))
        return True

    async def wait(self) -> None:
        """Until the file in flight, if any, is committed (or its lease lost)."""
        if self.in_flight is not None:
            await self.in_flight

    async def until_done(self, closed: ClosedFile) -> None:
        """Commit ``closed``, trying again until it is committed or the lease is lost."""
        while not await self._commit(closed):
            if self._held.lost.is_set():
                return

    async def checkpoint(self, sequence: str, snapshot: str | None = None) -> bool:
        """Write the lease's checkpoint (naming ``snapshot``); False when the lease was lost or the
        table refused the call (then after a back-off: the caller tries again)."""
        written = self._held.checkpoint(sequence, snapshot)
        if not await self._lease_write("checkpoint", written, {"checkpoint": sequence}):
            return False
        self._metrics.checkpoints.inc()
        self.checkpointed = sequence
        return True

    async def _commit(self, closed: ClosedFile) -> bool:
        """Prepare, upload and checkpoint ``closed``; False (to be called again) when a write failed
        or the lease was lost."""
        where = {"first_sequence": closed.first, "last_sequence": closed.last}
        if not await self._lease_write("prepare", self._held.prepare(closed.first, closed.last), where):
            return False
        started = time.monotonic()
        try:
            snapshot = await asyncio.to_thread(self._shard.upload, closed)
        except SinkError as exc:
            self._sink_report.report((exc,))
            delay = self._backoff.next()
            log.debug("uploading the archive file failed (%s); again in %.2f s", exc, delay)
            await self._pause(delay)
            return False
        self._sink_report.report((), {(Sink.ARCHIVE, Access.WRITE), (Sink.SNAPSHOTS, Access.WRITE)})
        self._metrics.upload_seconds.observe(time.monotonic() - started)
        if not await self.checkpoint(closed.last, snapshot):
            return False
        evicted = self._shard.committed(closed)
        self._backoff.reset()
        m = self._metrics
        m.archive_files.inc()
        m.devices_evicted.inc(evicted)
        m.resident_devices.labels(self._held.shard_id).set(self._shard.devices)
        # a file holds up to a minute of the shard's records: observed off the event loop
        await asyncio.to_thread(self._observe_archived, closed, self._now_ms())
        return True

    def _observe_archived(self, closed: ClosedFile, now_ms: int) -> None:
        device, arrival = (self._metrics.archive_latency.labels(since) for since in ("device", "arrival"))
        for record in closed.records:
            device.observe(max(now_ms - record.event_ms, 0) / 1000)
            arrival.observe(max(now_ms - record.arrival_ms, 0) / 1000)

    async def _lease_write(self, what: str, write: Awaitable[bool], where: dict[str, str]) -> bool:
        """A conditional write on the lease (prepare, checkpoint); False when the lease was lost or
        the table refused the call (then after a back-off: the caller tries again)."""
        try:
            if await write:
                return True
            log.warning("lease_lost at %s", what, extra=where)
        except CALL_ERRORS as exc:
            code = describe(exc)
            self._metrics.throttles.labels("DynamoDB").inc()
            delay = self._backoff.next()
            log.warning("%s failed (%s); again in %.2f s", what, code, delay, extra=where)
            await self._pause(delay)
        return False
