"""Cutting a shard's read-ahead into batches; after a takeover, the prepared batch is cut again as it was.

Before its sink writes, every batch's span is recorded in the lease (``LeaseTable.prepare``). A replica
that takes the lease over reads from the checkpoint and, with this cutter, hands the pipeline first the
records before that span (already applied: the core skips them) and then exactly that span, so the
archive object of an interrupted batch is found under its own key and nothing is archived twice. After
that, a batch is whatever has been read.
"""

from __future__ import annotations

from service.consumer.leases import Sentinel
from service.core import KinesisRecord


class BatchCutter:
    def __init__(self, checkpoint: str, prepared: tuple[str, str] | None) -> None:
        self._buffer: list[KinesisRecord] = []
        self._replay: tuple[int, int] | None = None
        if prepared is not None and checkpoint != Sentinel.SHARD_END:
            first, last = int(prepared[0]), int(prepared[1])
            if checkpoint == Sentinel.TRIM_HORIZON or last > int(checkpoint):
                self._replay = (first, last)

    @property
    def replaying(self) -> bool:
        return self._replay is not None

    def add(self, records: list[KinesisRecord]) -> None:
        self._buffer.extend(records)

    def next_batch(self, *, ended: bool = False) -> list[KinesisRecord]:
        """The next batch, or [] when more must be read first (the prepared span is not complete yet)."""
        if not self._buffer:
            return []
        if self._replay is None:
            batch, self._buffer = self._buffer, []
            return batch
        first, last = self._replay
        before = [r for r in self._buffer if r.seq_int < first]
        if before:
            self._buffer = self._buffer[len(before) :]
            return before
        if self._buffer[-1].seq_int < last and not ended:
            return []
        batch = [r for r in self._buffer if r.seq_int <= last]
        self._buffer = self._buffer[len(batch) :]
        self._replay = None
        return batch
