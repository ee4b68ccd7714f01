"""The lease table's conditional writes against a real DynamoDB API: idempotent creation, renewal, the
take race, checkpoints only by the current holder (KCL's "lease lost"), SHARD_END, release, parents."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aioboto3
import pytest

from service.runtime.consumer.lease_table import LeaseTable
from service.runtime.consumer.leases import Lease, Sentinel

pytestmark = pytest.mark.integration

REGION = "us-east-1"
DUMMY_KEY = "testing"  # moto accepts any credentials; these never leave the test process


@asynccontextmanager
async def lease_table(endpoint: str) -> AsyncIterator[LeaseTable]:
    """A freshly named, ACTIVE lease table on ``endpoint``."""
    session = aioboto3.Session(
        aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=REGION
    )
    async with session.client("dynamodb", endpoint_url=endpoint) as client:
        table = LeaseTable(client, f"leases-{uuid.uuid4().hex[:10]}")
        await table.ensure_table()
        yield table


def run(endpoint: str, scenario: Callable[[LeaseTable], Awaitable[None]]) -> None:
    async def main() -> None:
        async with lease_table(endpoint) as table:
            await scenario(table)

    asyncio.run(main())


async def only(table: LeaseTable, shard_id: str) -> Lease:
    (lease,) = [lease for lease in await table.list_leases() if lease.shard_id == shard_id]
    return lease


def test_ensure_table_is_idempotent_and_create_never_resets_a_lease(aws_endpoint: str) -> None:
    async def scenario(table: LeaseTable) -> None:
        await table.ensure_table()  # already there: no error
        assert await table.create("shard-0", [])
        assert await only(table, "shard-0") == Lease("shard-0", None, 0, Sentinel.TRIM_HORIZON)

        held = await table.take(await only(table, "shard-0"), "w1")
        assert held is not None
        checkpointed = await table.checkpoint(
            held, "w1", "49590338271490256608559692538361571095921575989136588898"
        )
        assert checkpointed is not None

        assert not await table.create("shard-0", [])
        assert await only(table, "shard-0") == checkpointed

    run(aws_endpoint, scenario)


def test_renew_bumps_the_counter_and_fails_once_the_lease_was_taken(aws_endpoint: str) -> None:
    async def scenario(table: LeaseTable) -> None:
        await table.create("shard-0", [])
        held = await table.take(await only(table, "shard-0"), "w1")
        assert held is not None
        assert (held.owner, held.counter) == ("w1", 1)

        renewed = await table.renew(held, "w1")
        assert renewed is not None
        assert (renewed.owner, renewed.counter) == ("w1", 2)
        assert await table.renew(held, "w1") is None  # a stale counter is never renewed
        assert await table.renew(renewed, "w2") is None  # nor is someone else's lease

        stolen = await table.take(await only(table, "shard-0"), "w2")  # w1's lease expired for w2
        assert stolen is not None
        assert (stolen.owner, stolen.counter) == ("w2", 3)
        assert await table.renew(renewed, "w1") is None  # w1 learns it lost the lease
        assert await only(table, "shard-0") == stolen

    run(aws_endpoint, scenario)


def test_two_workers_taking_the_same_lease_exactly_one_wins(aws_endpoint: str) -> None:
    async def scenario(table: LeaseTable) -> None:
        await table.create("shard-free", [])
        await table.create("shard-owned", [])
        free = await only(table, "shard-free")
        owned = await table.take(await only(table, "shard-owned"), "dead")
        assert owned is not None

        for lease in (free, owned):
            results = await asyncio.gather(table.take(lease, "w1"), table.take(lease, "w2"))
            winners = [result for result in results if result is not None]
            assert len(winners) == 1, results
            assert winners[0].counter == lease.counter + 1
            assert await only(table, lease.shard_id) == winners[0]

    run(aws_endpoint, scenario)


def test_only_the_current_holder_checkpoints(aws_endpoint: str) -> None:
    async def scenario(table: LeaseTable) -> None:
        await table.create("shard-0", [])
        held = await table.take(await only(table, "shard-0"), "w1")
        assert held is not None
        first = await table.checkpoint(held, "w1", "100")
        assert first is not None
        assert (first.checkpoint, first.counter) == ("100", held.counter + 1)

        assert await table.checkpoint(held, "w1", "200") is None  # counter as held before: stale
        assert await table.checkpoint(first, "w2", "200") is None  # not the owner

        taken = await table.take(first, "w2")
        assert taken is not None
        assert await table.checkpoint(first, "w1", "300") is None  # lease lost: w1's progress is refused
        assert (await only(table, "shard-0")).checkpoint == "100"
        second = await table.checkpoint(taken, "w2", "300")
        assert second is not None
        assert second.checkpoint == "300"

        with pytest.raises(ValueError, match="decimal sequence number"):
            await table.checkpoint(second, "w2", "TRIM_HORIZON")

    run(aws_endpoint, scenario)


def test_shard_end_round_trips_and_finishes_the_lease(aws_endpoint: str) -> None:
    async def scenario(table: LeaseTable) -> None:
        await table.create("shard-0", [])
        held = await table.take(await only(table, "shard-0"), "w1")
        assert held is not None
        finished = await table.checkpoint(held, "w1", Sentinel.SHARD_END)
        assert finished is not None

        read = await only(table, "shard-0")
        assert read == finished
        assert read.checkpoint is Sentinel.SHARD_END
        assert read.finished
        with pytest.raises(ValueError, match="finished"):
            await table.take(read, "w2")

    run(aws_endpoint, scenario)


def test_release_frees_the_lease_for_any_worker(aws_endpoint: str) -> None:
    async def scenario(table: LeaseTable) -> None:
        await table.create("shard-0", [])
        held = await table.take(await only(table, "shard-0"), "w1")
        assert held is not None

        assert not await table.release(held, "w2")  # not w2's to release
        assert await table.release(held, "w1")
        released = await only(table, "shard-0")
        assert (released.owner, released.counter) == (None, held.counter + 1)
        assert not await table.release(held, "w1")  # already released
        assert await table.renew(held, "w1") is None

        taken = await table.take(released, "w2")
        assert taken is not None
        assert taken.owner == "w2"

    run(aws_endpoint, scenario)


def test_list_leases_returns_every_lease_with_its_parents(aws_endpoint: str) -> None:
    async def scenario(table: LeaseTable) -> None:
        assert await table.list_leases() == []
        await table.create("shard-0", [])
        await table.create("shard-1", [])
        await table.create("shard-2", ["shard-1", "shard-0"])  # a merge
        await table.create("shard-3", ("shard-2",))  # a split's child

        leases = sorted(await table.list_leases(page_size=1), key=lambda lease: lease.shard_id)  # 4 pages
        assert sorted(await table.list_leases(), key=lambda lease: lease.shard_id) == leases
        assert [(lease.shard_id, lease.parents) for lease in leases] == [
            ("shard-0", ()),
            ("shard-1", ()),
            ("shard-2", ("shard-0", "shard-1")),
            ("shard-3", ("shard-2",)),
        ]
        assert all(lease.owner is None and lease.counter == 0 for lease in leases)

    run(aws_endpoint, scenario)


def test_a_handoff_request_leaves_the_owner_unfenced_and_hands_over_once(aws_endpoint: str) -> None:
    async def scenario(table: LeaseTable) -> None:
        await table.create("shard-0")
        owned = await table.take(await only(table, "shard-0"), "w1")
        assert owned is not None
        asked = await table.request_handoff(owned, "w2")
        assert asked is not None
        assert (asked.pending_owner, asked.counter) == ("w2", owned.counter)
        assert await table.request_handoff(owned, "w3") is None  # one request at a time
        busy = await table.renew(owned, "w1")  # the owner moves the counter on with every batch...
        assert busy is not None
        assert busy.pending_owner == "w2"  # ...and the request holds, though asked on an older counter
        owned = busy
        renewed = await table.renew(owned, "w1")  # the owner keeps renewing and learns of it
        assert renewed is not None
        assert renewed.pending_owner == "w2"
        checkpointed = await table.checkpoint(renewed, "w1", "42")
        assert checkpointed is not None
        handed = await table.hand_over(checkpointed, "w1")
        assert handed is not None
        assert (handed.owner, handed.pending_owner, handed.checkpoint) == ("w2", None, "42")
        assert await table.renew(checkpointed, "w1") is None  # w1 has nothing left to renew

    run(aws_endpoint, scenario)


def test_prepare_records_the_batch_span_only_for_the_owner(aws_endpoint: str) -> None:
    async def scenario(table: LeaseTable) -> None:
        await table.create("shard-0")
        owned = await table.take(await only(table, "shard-0"), "w1")
        assert owned is not None
        prepared = await table.prepare(owned, "w1", "7", "12")
        assert prepared is not None
        assert (prepared.batch_span, prepared.counter) == (("7", "12"), owned.counter + 1)
        assert await only(table, "shard-0") == prepared
        assert await table.prepare(owned, "w1", "13", "20") is None  # stale counter: someone moved it
        stolen = await table.take(prepared, "w2")
        assert stolen is not None
        assert stolen.batch_span == ("7", "12")  # the new owner cuts the interrupted batch again
        assert await table.prepare(prepared, "w1", "13", "20") is None

    run(aws_endpoint, scenario)


def test_only_a_finished_lease_is_deleted_and_only_once(aws_endpoint: str) -> None:
    async def scenario(table: LeaseTable) -> None:
        for shard_id in ("shard-0", "shard-1"):
            await table.create(shard_id, [])
        parent = await table.take(await only(table, "shard-0"), "w1")
        assert parent is not None
        ended = await table.checkpoint(parent, "w1", Sentinel.SHARD_END)
        assert ended is not None
        still_open = await only(table, "shard-1")
        with pytest.raises(ValueError, match="not finished"):
            await table.delete_finished(still_open)

        # a stale read claiming SHARD_END cannot delete a lease that is not finished in the table
        assert not await table.delete_finished(Lease("shard-1", None, 0, Sentinel.SHARD_END))
        assert await table.delete_finished(ended)
        assert not await table.delete_finished(ended)  # a second worker finds nothing to delete

        assert [lease.shard_id for lease in await table.list_leases()] == ["shard-1"]

    run(aws_endpoint, scenario)
