"""One shard, one task: read, run each batch against the shard's resident state, cut and commit archive
files; KCL's lifecycle.

``initialize`` (restore the snapshot the lease's checkpoint names; read from that checkpoint) →
``process_records`` (per batch) → one ending:

- ``shard_ended``: the reader reached the shard's end and every record is done: flush the open file,
  write every pending device item (the children's owners read their devices from the table), then
  checkpoint SHARD_END, release the lease and report the child shards.
- ``lease_lost``: a renewal or checkpoint found the lease taken: stop at once, write nothing more.
- ``shutdown_requested`` (SIGTERM, or another replica asked for the lease): stop reading, finish the
  batch in hand, flush the open file, checkpoint it, write the pending device items, then release the
  lease or hand it to the replica that asked.

Checkpoints follow archive files (``resident``; the commit steps are ``file_commit``, the metrics
of a batch ``step_metrics``): when a file is cut, its span goes into the lease
(*prepared*, conditional on owning it), then the file and the snapshot of the states as of its last
record are uploaded, and only then is the checkpoint written, naming that snapshot. That commit runs in
the background while the shard reads and processes on into the next file (an upload of a minute's
records never holds back the next batch's alerts); files are committed one at a time, in order, so
the checkpoint never passes a record whose file is not up and never runs more than one file behind
the open one. A replica that takes
the lease over restores the snapshot, reads from the checkpoint and cuts a prepared file again at the
same end, so its upload lands on the same key: nothing is archived twice after a crash, a steal or a
retry. An idle shard's file is cut when it reaches its age, so the checkpoint is never further behind
than one file.

Per-device order and the failure rule: when a batch comes back with failures (a sink refused some
devices' records), the same records are run again after a jittered back-off, before anything new is
read, and no file is cut before them. Records already applied are skipped by the core.

Sink errors are kept and reported, never dropped (``sink_report``): each failed attempt counts once
per distinct cause in ``vitalstream_sink_errors_total{sink,code}``, a cause is logged once when it
appears and once when it clears, and while a permanent one is outstanding in the replica's
``SinkHealth`` the replica is not ready (``Scheduler.ready``).
Transient and permanent causes are retried alike, with the same full-jitter back-off: a permanent one
ends when someone mends the deployment, and the next attempt finds out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.core import KinesisRecord, StateFormatError
from service.core.archive_file import ClosedFile
from service.runtime.adapters._errors import CALL_ERRORS, describe
from service.runtime.adapters.pacing import Backoff
from service.runtime.consumer.file_commit import FileCommitter
from service.runtime.consumer.leases import Sentinel
from service.runtime.consumer.metrics import ConsumerMetrics
from service.runtime.consumer.ownership import HeldLease
from service.runtime.consumer.reader import ReadResult, ShardReader
from service.runtime.consumer.resident import ResidentShard
from service.runtime.consumer.sink_report import SinkReport
from service.runtime.consumer.step_metrics import account_step
from service.runtime.logs import bind
from service.runtime.ports import Access, Sink, SinkError, SnapshotMissingError
from service.runtime.sink_health import SinkHealth, cause_fields

log = logging.getLogger(__name__)
FENCE_POLL_S = 0.1


class Ending(StrEnum):
    SHARD_ENDED = "shard_ended"
    LEASE_LOST = "lease_lost"
    SHUTDOWN_REQUESTED = "shutdown_requested"


@dataclass(frozen=True, slots=True)
class Pacing:
    """``idle_s`` between reads at the tip; ``min_interval_s`` between any two reads of one shard
    (0.2 s keeps a shard within its 5 GetRecords/s). Neither wait applies to a push reader (enhanced
    fan-out): its ``read`` waits for the next event itself."""

    idle_s: float = 0.2
    min_interval_s: float = 0.2
    backoff_cap_s: float = 5.0


class ShardConsumer:
    def __init__(
        self,
        held: HeldLease,
        reader: ShardReader,
        shard: ResidentShard,
        metrics: ConsumerMetrics,
        pacing: Pacing,
        on_children: Callable[[tuple[dict[str, Any], ...]], None] = lambda children: None,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        health: SinkHealth | None = None,
    ) -> None:
        """``health``: the replica's, shared by its shards (a new one of its own when None)."""
        self.held, self._reader, self._shard = held, reader, shard
        self._sink_report = SinkReport(metrics, health if health is not None else SinkHealth())
        self._now_ms = wall_ms
        self._metrics, self._pacing, self._on_children = metrics, pacing, on_children
        self._shutdown = asyncio.Event()
        self._backoff = Backoff(base_s=0.1, cap_s=pacing.backoff_cap_s)
        self._pending: list[KinesisRecord] = []
        self._dead_lettered: set[tuple[str, int | None]] = set()  # the pending records' stored rejects
        self._closed: ClosedFile | None = None  # cut, its commit not started yet
        self._commits = FileCommitter(  # prepared, uploaded and checkpointed in the background
            held,
            shard,
            metrics,
            self._sink_report,
            lambda seconds: self._pause(seconds),  # noqa: PLW0108 - late-bound: tests replace _pause
            wall_ms,
            Backoff(base_s=0.1, cap_s=pacing.backoff_cap_s),  # lease writes and uploads
        )
        self._latest_task: asyncio.Task[bool] | None = None  # device-table writes, off the batch path
        self._ended = False

    @property
    def shard_id(self) -> str:
        return self.held.shard_id

    def request_shutdown(self) -> None:
        self._shutdown.set()

    def shard_closed(self) -> None:
        """ListShards reports the shard closed: a read at its tip with nothing more ends it."""
        self._reader.closed = True

    async def run(self) -> Ending:
        bind(shard_id=self.shard_id)
        log.info(
            "initialize",
            extra={"checkpoint": self._commits.checkpointed, "snapshot": self.held.lease.snapshot},
        )
        try:
            if not await self._restore():
                return await self._finish(self._stopped())
            return await self._finish(await self._loop())
        finally:
            for task in (self._latest_task, self._commits.in_flight):
                if task is not None:
                    await asyncio.wait({task})
            await self._reader.close()
            with contextlib.suppress(KeyError):
                self._metrics.millis_behind.remove(self.shard_id)
            with contextlib.suppress(KeyError):
                self._metrics.resident_devices.remove(self.shard_id)

    async def _restore(self) -> bool:
        """Load the checkpoint's snapshot; False when the lease was lost or shutdown came first."""
        key = self.held.lease.snapshot
        while True:
            try:
                devices = await asyncio.to_thread(self._shard.restore, key)
            except SnapshotMissingError as exc:  # retrying cannot bring it back; nothing to mend
                self._metrics.sink_errors.labels(exc.sink.value, exc.code).inc()
                log.error(
                    "snapshot unusable; devices are read from the device table", extra=cause_fields(exc)
                )
                return True
            except StateFormatError as exc:
                log.error("snapshot unusable (%s); devices are read from the device table", exc)
                return True
            except SinkError as exc:
                self._sink_report.report((exc,))
                if await self._pause(self._backoff.next()):
                    return False
                continue
            self._backoff.reset()
            if key is not None:
                self._sink_report.report((), {(Sink.SNAPSHOTS, Access.READ)})
            self._metrics.resident_devices.labels(self.shard_id).set(devices)
            log.info("restored", extra={"devices": devices, "snapshot": key})
            return True

    async def _loop(self) -> Ending:
        read_now = True
        last_read = 0.0
        while True:
            if self.held.lost.is_set() or self._shutdown.is_set() or self.held.handoff_requested:
                return self._stopped()
            self._write_latest_soon()
            if self._closed is not None:
                if not await self._wait_unfenced() or not await self._start_commit():
                    return self._stopped()
                continue
            if not self._pending:
                if self._ended:
                    return Ending.SHARD_ENDED
                self._closed = self._shard.close_if_idle(self._now_ms())
                if self._closed is not None:
                    continue
                wait = (self._pacing.min_interval_s if read_now else self._pacing.idle_s) - (
                    time.monotonic() - last_read
                )
                if wait > 0 and not self._reader.push and await self._pause(wait):
                    continue
                last_read = time.monotonic()
                result = await self._read()
                if result is not None:
                    read_now = bool(result.records) and (result.millis_behind or 0) > 0
                    self._pending = list(result.records)
                continue
            if not await self._wait_unfenced():
                return self._stopped()
            await self._process_records()

    async def _wait_unfenced(self) -> bool:
        """Wait while renewals are failing (fenced); False when the lease was lost or shutdown was
        requested first. Shutdown must not wait for a renewal: the lease loop has stopped renewing."""
        while self.held.fenced():
            if await self._pause(FENCE_POLL_S):
                return False
        return not self.held.lost.is_set()

    def _stopped(self) -> Ending:
        return Ending.LEASE_LOST if self.held.lost.is_set() else Ending.SHUTDOWN_REQUESTED

    async def _read(self) -> ReadResult | None:
        try:
            result = await self._reader.read()
        except CALL_ERRORS as exc:
            code = describe(exc)
            self._metrics.throttles.labels("GetRecords").inc()
            delay = self._backoff.next()
            log.warning("read failed (%s); backing off %.2f s", code, delay, extra={"error": code})
            await self._pause(delay)
            return None
        self._backoff.reset()
        if result.millis_behind is not None:
            self._metrics.millis_behind.labels(self.shard_id).set(result.millis_behind)
        if result.child_shards:
            self._on_children(result.child_shards)
        self._ended = result.ended
        return result

    async def _process_records(self) -> None:
        records = self._pending
        bind(first_sequence=records[0].sequence_number, last_sequence=records[-1].sequence_number)
        started = time.monotonic()
        try:
            step = await asyncio.to_thread(
                self._shard.process, records, self._now_ms(), frozenset(self._dead_lettered)
            )
        except Exception:  # a bug or an unexpected SDK error: the batch is retried, the shard lives on
            log.exception("process_records failed; retrying the batch")
            self._metrics.records.labels("retried").inc(len(records))
            await self._pause(self._backoff.next())
            return
        self._metrics.batch_seconds.observe(time.monotonic() - started)
        self._sink_report.report(step.errors, step.succeeded)
        account_step(self._metrics, step, records, self._now_ms)
        if Sink.DEAD_LETTER not in step.failed_sinks:
            self._dead_lettered.update(
                (r.sequence_number, r.sub_sequence_number) for r in step.result.rejects
            )
        if step.failures:
            delay = self._backoff.next()
            log.debug(  # the causes were logged once, when they appeared
                "sinks failed for %d devices; the batch runs again in %.2f s",
                len(step.failed_devices),
                delay,
                extra={"sinks": sorted(step.failed_sinks)},
            )
            await self._pause(delay)
            return
        self._pending = records[step.consumed :]
        self._dead_lettered.clear()
        self._backoff.reset()
        self._closed = step.closed

    async def _start_commit(self) -> bool:
        """Hand the cut file to the committer (it waits for the file before); False when the lease was
        lost meanwhile."""
        closed = self._closed
        assert closed is not None
        if not await self._commits.start(closed):
            return False
        self._closed = None
        return True

    async def _flush(self) -> bool:
        """Commit the file in flight, then the cut and the open ones, then write every pending device
        item; False when the lease was lost first. Runs while stopping: a failed write is tried again
        until it lands."""
        await self._commits.wait()
        pending = [file for file in (self._closed, self._shard.close()) if file is not None]
        self._closed = None
        for closed in pending:
            if self.held.lost.is_set():
                return False
            await self._commits.until_done(closed)
        if self.held.lost.is_set():
            return False
        if self._latest_task is not None:
            await asyncio.wait({self._latest_task})
        while self._shard.latest_pending:
            if self.held.lost.is_set():
                return False
            if not await self._write_latest(flush=True):
                await asyncio.sleep(self._backoff.next())
        return True

    def _write_latest_soon(self) -> None:
        """Write the device items that are due, in the background, unless a write is under way."""
        if self._latest_task is None or self._latest_task.done():
            self._latest_task = asyncio.create_task(self._write_latest())

    async def _write_latest(self, *, flush: bool = False) -> bool:
        """The coalescer's due writes (every pending one with ``flush``); False when one was refused."""
        try:
            written = await asyncio.to_thread(self._shard.write_latest, self._now_ms(), flush=flush)
        except Exception:  # a bug or an unexpected SDK error: the items stay pending, tried again
            log.exception("writing device items failed")
            return False
        self._metrics.latest_state_writes.inc(written.landed)
        self._sink_report.report(written.errors, written.succeeded)
        return not written.refused

    async def _finish(self, ending: Ending) -> Ending:
        if ending is not Ending.LEASE_LOST and not await self._flush():
            ending = Ending.LEASE_LOST
        if ending is Ending.SHARD_ENDED:
            while not await self._commits.checkpoint(Sentinel.SHARD_END):
                if self.held.lost.is_set():
                    return await self._finish(Ending.LEASE_LOST)
            self._metrics.lease_events.labels("ended").inc()
        if ending is not Ending.LEASE_LOST:
            with contextlib.suppress(*CALL_ERRORS):
                await self._let_go(
                    handoff=ending is Ending.SHUTDOWN_REQUESTED and self.held.handoff_requested
                )
        else:
            self._metrics.lease_events.labels("lost").inc()
        log.info(ending.value, extra={"checkpoint": self._commits.checkpointed})
        return ending

    async def _let_go(self, *, handoff: bool) -> None:
        if handoff:
            if await self.held.hand_over():
                self._metrics.lease_events.labels("handed_over").inc()
                log.info("handed over", extra={"to": self.held.lease.pending_owner})
        elif await self.held.release():
            self._metrics.lease_events.labels("released").inc()

    async def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when shutdown was requested or the lease was lost meanwhile."""
        stop = asyncio.ensure_future(self._shutdown.wait())
        lost = asyncio.ensure_future(self.held.lost.wait())
        try:
            done, _ = await asyncio.wait({stop, lost}, timeout=max(seconds, 0.0))
        finally:
            stop.cancel()
            lost.cancel()
        return bool(done)
