"""Pure lease planning for the shard consumer: which leases to renew, take, steal or release this round.

Semantics follow KCL's lease lifecycle, with no I/O, no clock and no asyncio: time comes in as an argument
(the observing worker's own monotonic milliseconds) and the lease table comes in as a list of values.

Clocks are never compared across machines. A worker judges another worker's lease expired only when that
lease's ``counter`` has not changed for more than ``failover_ms`` of its *own* time (``LeaseObserver``).

A steal is a graceful handoff, as in KCL 3: the thief asks (``pending_owner``), the owner finishes its
batch, checkpoints and hands the lease over at its next renewal, and only then does the thief start.
If the owner dies meanwhile, the lease expires and is taken as any other.

A plan is advice, not ownership. Every write the shell makes from it is a DynamoDB conditional write on the
lease's ``counter`` as it was in the snapshot the plan returns; two workers may plan the same take or steal
from the same table, and the conditional write decides which one wins. The loser learns it from the failed
condition, and the previous owner of a taken or stolen lease learns it when its next renewal fails
(``lease_lost``): it must stop processing that shard, and records after its last checkpoint are read again
by the new owner (at-least-once; sinks stay idempotent).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Sentinel(StrEnum):
    """Checkpoints that are not sequence numbers."""

    TRIM_HORIZON = "TRIM_HORIZON"
    SHARD_END = "SHARD_END"


@dataclass(frozen=True, slots=True)
class Lease:
    """One row of the lease table: one lease per shard.

    ``counter`` is bumped by every renew, take, checkpoint, handoff and release; it conditions every
    write. ``checkpoint`` is a Kinesis sequence number as a decimal string, or a ``Sentinel``. A lease
    whose checkpoint is ``SHARD_END`` is finished: its shard was read to the end and it is never taken
    again. ``pending_owner`` is a worker that asked for the lease (a steal); the owner hands it over.
    ``batch`` is the span (``first-last`` sequence numbers) of the archive file the owner prepared
    last: a new owner cuts that file again at the same end, so its upload lands on the very same key.
    ``snapshot`` names the shard snapshot written with the checkpoint (the device states as of it).
    """

    shard_id: str
    owner: str | None
    counter: int
    checkpoint: str = Sentinel.TRIM_HORIZON
    parents: tuple[str, ...] = ()
    pending_owner: str | None = None
    batch: str | None = None
    snapshot: str | None = None

    @property
    def batch_span(self) -> tuple[str, str] | None:
        if self.batch is None:
            return None
        first, _, last = self.batch.partition("-")
        return first, last

    @property
    def finished(self) -> bool:
        return self.checkpoint == Sentinel.SHARD_END

    @property
    def prepared_end(self) -> int | None:
        """The end of a prepared archive file the checkpoint has not passed: the file a new owner must
        cut again at exactly that sequence number (None when there is none)."""
        span = self.batch_span
        if span is None or self.finished:
            return None
        last = int(span[1])
        if self.checkpoint == Sentinel.TRIM_HORIZON or last > int(self.checkpoint):
            return last
        return None


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    """Bounds of one planning round.

    ``failover_ms``: how long, in the observer's own time, a lease's counter may stand still before the
    lease counts as expired. Its owner must renew well within it (KCL renews about every third of it).
    ``max_leases_per_worker``: a worker never holds (renews + takes + steals) more than this.
    ``max_takes_per_round``: a worker never takes more than this many leases in one round.
    """

    failover_ms: int = 10_000
    max_leases_per_worker: int = 256
    max_takes_per_round: int = 16

    def __post_init__(self) -> None:
        for name in ("failover_ms", "max_leases_per_worker", "max_takes_per_round"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


class LeaseObserver:
    """Remembers, per shard, the last counter seen and the local time at which it last changed.

    Feed it every lease-table read with ``observe`` before planning. A lease seen for the first time
    counts as changed at that moment, so a worker that has just started waits a full ``failover_ms``
    before it considers any owned lease expired. Shards missing from a read are forgotten.
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int]] = {}

    def observe(self, leases: Iterable[Lease], now_ms: int) -> None:
        seen: dict[str, tuple[int, int]] = {}
        for lease in leases:
            previous = self._seen.get(lease.shard_id)
            if previous is None or previous[0] != lease.counter:
                previous = (lease.counter, now_ms)
            seen[lease.shard_id] = previous
        self._seen = seen

    def is_expired(self, lease: Lease, now_ms: int, failover_ms: int) -> bool:
        """True when the lease is owned and its counter has stood still for more than ``failover_ms``.

        Unowned leases are not "expired" (they are free); a lease never observed, or observed with another
        counter than the one given, is not expired.
        """
        if lease.owner is None:
            return False
        seen = self._seen.get(lease.shard_id)
        if seen is None or seen[0] != lease.counter:
            return False
        return now_ms - seen[1] > failover_ms


@dataclass(frozen=True, slots=True)
class Plan:
    """What one worker should write this round. Each lease is the snapshot its write is conditioned on.

    ``renew``: active leases it holds. ``take``: free or expired leases, at most ``max_takes_per_round``.
    ``steal``: at most one lease of another live worker to ask for, only when nothing is free to take
    and no handoff to this worker is under way.
    ``release``: leases it holds that are finished or beyond ``max_leases_per_worker``.
    ``delete``: finished leases no longer needed (``cleanup``), for any worker to delete.
    ``target``: the fair share, ``ceil(active shards / live workers)`` capped by the bound.
    """

    renew: tuple[Lease, ...] = ()
    take: tuple[Lease, ...] = ()
    steal: Lease | None = None
    release: tuple[Lease, ...] = ()
    delete: tuple[Lease, ...] = ()
    target: int = 0


def plan(leases: Sequence[Lease], observer: LeaseObserver, me: str, now_ms: int, config: LeaseConfig) -> Plan:
    """Plan one round for worker ``me`` from one read of the lease table (already given to ``observer``).

    Guarantees, for any table:
    - a finished lease is never taken or stolen, and neither is a lease with a parent whose lease exists
      and is not finished (children start only after their parents reached ``SHARD_END``; a parent
      whose lease is gone was finished: only ``cleanup`` deletes leases);
    - ``delete`` is ``cleanup`` of the table: finished leases whose children have all started, for
      every worker alike (the delete is conditional on ``SHARD_END``; a second one finds nothing);
    - ``renew`` + ``take`` + ``steal`` never exceed ``max_leases_per_worker``;
    - a lease with a handoff under way counts for the worker it goes to, and is never asked for again;
    - at most one lease is stolen per round, only when nothing is free to take, and only from the live
      worker holding the most active leases, when ``me`` holds fewer than ``target`` and that worker holds
      at least two more than ``me`` (as KCL, it may then be at ``target``): with loads within one of each
      other nothing is stolen, and a steal never reverses the order of the two loads, so no churn;
    - live workers are ``me`` and the owners of at least one active, non-expired lease;
    - the result depends only on the arguments: candidates in shard-id order, ties between workers broken
      by worker id. Every thief picks the same lease of a victim, so a victim loses at most one
      lease per round even when several workers steal at once.
    """
    by_id = {lease.shard_id: lease for lease in leases}
    ordered = sorted(leases, key=_shard_key)
    active = [lease for lease in ordered if not lease.finished]

    def expired(lease: Lease) -> bool:
        return observer.is_expired(lease, now_ms, config.failover_ms)

    def startable(lease: Lease) -> bool:
        return all(parent not in by_id or by_id[parent].finished for parent in lease.parents)

    mine = [lease for lease in active if lease.owner == me]
    renew = mine[: config.max_leases_per_worker]
    delete = cleanup(ordered)
    finished_mine = [lease for lease in ordered if lease.finished and lease.owner == me]
    release = (*finished_mine, *mine[config.max_leases_per_worker :])
    incoming = [lease for lease in active if lease.pending_owner == me and lease.owner != me]

    loads = Counter(
        lease.pending_owner or lease.owner
        for lease in active
        if lease.owner is not None and lease.owner != me and not expired(lease)
    )
    loads.pop(me, None)
    workers = len(loads) + 1
    target = min(math.ceil(len(active) / workers), config.max_leases_per_worker)
    wanted = target - len(renew) - len(incoming)
    if wanted <= 0:
        return Plan(renew=tuple(renew), release=release, delete=delete, target=target)

    free = [
        lease
        for lease in active
        if lease.owner != me and (lease.owner is None or expired(lease)) and startable(lease)
    ]
    if free:
        take = free[: min(wanted, config.max_takes_per_round)]
        return Plan(renew=tuple(renew), take=tuple(take), release=release, delete=delete, target=target)

    steal = None if incoming else _steal(active, loads, len(renew), startable)
    return Plan(renew=tuple(renew), steal=steal, release=release, delete=delete, target=target)


def started(lease: Lease) -> bool:
    """A worker has taken the lease at least once, or it holds a checkpoint past TRIM_HORIZON."""
    return lease.counter > 0 or lease.checkpoint != Sentinel.TRIM_HORIZON


def cleanup(leases: Sequence[Lease]) -> tuple[Lease, ...]:
    """The finished leases nothing needs any more (KCL's completed-lease cleanup), in shard-id order.

    A lease goes once its shard reached ``SHARD_END``, every child lease in the table (a lease naming
    it as a parent; there is at least one) has ``started``, and none of its own parents' leases is
    left (ancestors go first, so a parent always has its children in the table while it waits).
    Nothing then reads it again: its children's start rule lets a missing parent through, and shard
    sync (``shards_to_lease``) never creates a lease again for a closed shard with a leased descendant.
    """
    ids = {lease.shard_id for lease in leases}
    children: dict[str, list[Lease]] = {}
    for lease in leases:
        for parent in lease.parents:
            children.setdefault(parent, []).append(lease)
    return tuple(
        lease
        for lease in sorted(leases, key=_shard_key)
        if lease.finished
        and not any(parent in ids for parent in lease.parents)
        and children.get(lease.shard_id)
        and all(started(child) for child in children[lease.shard_id])
    )


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard as ``ListShards`` describes it: its parents, and whether it is closed (has an end)."""

    shard_id: str
    parents: tuple[str, ...] = ()
    closed: bool = False


def shards_to_lease(shards: Sequence[Shard], leases: Iterable[Lease]) -> list[Shard]:
    """The listed shards that need a lease created, in the order listed: every shard without one,
    except a closed shard one of whose descendants (through the listed shards' parents) has a lease:
    its lease was deleted after its children started (``cleanup``), or it never needs one."""
    leased = {lease.shard_id for lease in leases}
    children: dict[str, list[str]] = {}
    for shard in shards:
        for parent in shard.parents:
            children.setdefault(parent, []).append(shard.shard_id)

    def leased_descendant(shard_id: str) -> bool:
        seen: set[str] = set()
        frontier = list(children.get(shard_id, ()))
        while frontier:
            child = frontier.pop()
            if child in leased:
                return True
            if child not in seen:
                seen.add(child)
                frontier.extend(children.get(child, ()))
        return False

    return [
        shard
        for shard in shards
        if shard.shard_id not in leased and not (shard.closed and leased_descendant(shard.shard_id))
    ]


def _steal(
    active: list[Lease], loads: Counter[str], held: int, startable: Callable[[Lease], bool]
) -> Lease | None:
    if not loads:
        return None
    victim, load = min(loads.items(), key=lambda item: (-item[1], item[0]))
    if load < held + 2:
        return None
    return next(
        (
            lease
            for lease in active
            if lease.owner == victim and lease.pending_owner is None and startable(lease)
        ),
        None,
    )


def _shard_key(lease: Lease) -> str:
    return lease.shard_id
