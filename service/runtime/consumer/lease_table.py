"""The DynamoDB lease table behind ``leases.plan``: one item per shard, every write conditional.

Items use KCL's attribute names: ``leaseKey`` (the shard id, hash key), ``leaseOwner`` (absent when the
lease is free), ``leaseCounter``, ``checkpoint`` and ``parentShardIds`` (a string set, absent when the
shard has no parents), plus ``pendingOwner`` while a graceful handoff is under way and ``batchSpan``,
the prepared batch. A lease read from the table is a snapshot; every write is conditioned on it, and a
failed condition (``ConditionalCheckFailedException``) is a domain outcome, returned as ``None`` or
``False``: someone else changed the lease since it was read. Any other error propagates unchanged.

Every write that succeeds bumps ``leaseCounter`` by one and returns the lease as the table now holds it,
so callers keep conditioning their next write on the returned value, never on the one they passed in.
The one exception is ``request_handoff``: it must not fence the owner it asks, so it leaves the counter
alone; the owner learns of it from the lease its next renewal returns.

Read consistency and cost. Because every write is conditional on what was read, a stale read can
only cost a refused conditional write (the lease is tried again a round later), never a wrong owner,
so the scan behind each lease round (``list_leases()``, every ``failover_ms / 5``, 2 s by default, on
every replica) is eventually consistent, as KCL's own lease scan is (``listLeases`` sets no
``ConsistentRead``). A Scan is billed by the bytes it reads, not per item or call: ceil(table bytes /
4 KB) read units, half that when eventually consistent. A lease item is ≈ 150 to 400 B (its key, owner,
counter, a 56-digit checkpoint, the batch span, the snapshot's name), so a round costs 0.5 units up to
≈ 10 to 25 leases and ≈ 98 (instead of ≈ 196 strongly consistent) at 2,000 shards, per replica.

Two reads stay strongly consistent, because a missing item there would be acted on rather than
written against: the shard sync's scan (``list_leases(consistent=True)``, only when ListShards shows
an unknown closed shard), which decides whether a closed shard needs a lease again, and ``get``, the
confirmation that a parent missing from an eventually consistent scan is really gone before its
child is taken (``leases.plan`` lets a missing parent through).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, Protocol

from botocore.exceptions import ClientError

from service.runtime.consumer.leases import Lease, Sentinel

KEY = "leaseKey"
OWNER = "leaseOwner"
COUNTER = "leaseCounter"
CHECKPOINT = "checkpoint"
PARENTS = "parentShardIds"
PENDING = "pendingOwner"
BATCH = "batchSpan"
SNAPSHOT = "stateSnapshot"

_NAMES = {
    "#owner": OWNER,
    "#counter": COUNTER,
    "#checkpoint": CHECKPOINT,
    "#pending": PENDING,
    "#batch": BATCH,
    "#snapshot": SNAPSHOT,
}
_CONDITION_FAILED = "ConditionalCheckFailedException"
_NOT_FOUND = "ResourceNotFoundException"
_IN_USE = "ResourceInUseException"

Item = Mapping[str, Mapping[str, Any]]


class _Waiter(Protocol):
    def wait(self, **kwargs: Any) -> Awaitable[None]: ...


class _Paginator(Protocol):
    def paginate(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]: ...


class DynamoDBClient(Protocol):
    """The part of an aioboto3 DynamoDB client the lease table uses (aioboto3 ships no type stubs)."""

    def describe_table(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def create_table(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def get_item(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def put_item(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def update_item(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def delete_item(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def get_waiter(self, name: str) -> _Waiter: ...
    def get_paginator(self, name: str) -> _Paginator: ...


def lease_to_item(lease: Lease) -> dict[str, dict[str, Any]]:
    """The DynamoDB item of a lease; ``leaseOwner`` and ``parentShardIds`` are left out when empty."""
    item: dict[str, dict[str, Any]] = {
        KEY: {"S": lease.shard_id},
        COUNTER: {"N": str(lease.counter)},
        CHECKPOINT: {"S": str(lease.checkpoint)},
    }
    if lease.owner is not None:
        item[OWNER] = {"S": lease.owner}
    if lease.parents:
        item[PARENTS] = {"SS": list(lease.parents)}
    if lease.pending_owner is not None:
        item[PENDING] = {"S": lease.pending_owner}
    if lease.batch is not None:
        item[BATCH] = {"S": lease.batch}
    if lease.snapshot is not None:
        item[SNAPSHOT] = {"S": lease.snapshot}
    return item


def item_to_lease(item: Item) -> Lease:
    """The lease of a DynamoDB item. Parents come back sorted: a string set has no order."""
    owner = item.get(OWNER)
    parents = item.get(PARENTS)
    checkpoint = item.get(CHECKPOINT)
    pending = item.get(PENDING)
    batch = item.get(BATCH)
    snapshot = item.get(SNAPSHOT)
    return Lease(
        shard_id=item[KEY]["S"],
        owner=None if owner is None else owner["S"],
        counter=int(item[COUNTER]["N"]),
        checkpoint=Sentinel.TRIM_HORIZON if checkpoint is None else _checkpoint(checkpoint["S"]),
        parents=() if parents is None else tuple(sorted(parents["SS"])),
        pending_owner=None if pending is None else pending["S"],
        batch=None if batch is None else batch["S"],
        snapshot=None if snapshot is None else snapshot["S"],
    )


def _checkpoint(value: str) -> str:
    try:
        return Sentinel(value)
    except ValueError:
        return value


def _is_sequence_number(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class LeaseTable:
    """Leases of one consumer application in one DynamoDB table, through an injected aioboto3 client.

    The client's lifetime belongs to the caller (``async with session.client("dynamodb", ...)``).
    """

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    @property
    def table_name(self) -> str:
        return self._table

    async def ensure_table(self, *, poll_seconds: int = 1, max_polls: int = 120) -> None:
        """Create the table (hash key ``leaseKey``, on-demand billing) unless it exists; return once ACTIVE.

        Safe to call from many workers at once: losing the creation race is not an error.
        """
        try:
            await self._client.describe_table(TableName=self._table)
        except ClientError as error:
            if _code(error) != _NOT_FOUND:
                raise
            try:
                await self._client.create_table(
                    TableName=self._table,
                    KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
            except ClientError as create_error:
                if _code(create_error) != _IN_USE:
                    raise
        await self._client.get_waiter("table_exists").wait(
            TableName=self._table, WaiterConfig={"Delay": poll_seconds, "MaxAttempts": max_polls}
        )

    async def list_leases(self, *, consistent: bool = False, page_size: int | None = None) -> list[Lease]:
        """Every lease in the table, from a scan over all pages (unordered): eventually consistent
        (may miss a write of the last second or so) unless ``consistent``.

        ``page_size`` caps the items per Scan call (DynamoDB's 1 MB page limit applies regardless).
        """
        leases: list[Lease] = []
        config = {} if page_size is None else {"PaginationConfig": {"PageSize": page_size}}
        pages = self._client.get_paginator("scan").paginate(
            TableName=self._table, ConsistentRead=consistent, **config
        )
        async for page in pages:
            leases.extend(item_to_lease(item) for item in page.get("Items", []))
        return leases

    async def get(self, shard_id: str) -> Lease | None:
        """The lease of ``shard_id`` as the table holds it now (a strongly consistent read); None when
        the shard has no lease."""
        response = await self._client.get_item(
            TableName=self._table, Key={KEY: {"S": shard_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return None if item is None else item_to_lease(item)

    async def create(self, shard_id: str, parents: tuple[str, ...] | list[str] = ()) -> bool:
        """Add a free lease for a new shard (counter 0, checkpoint ``TRIM_HORIZON``) unless one exists.

        Returns True when this call created it, False when the shard already had a lease, which is left
        untouched (its owner, counter and checkpoint are never reset).
        """
        lease = Lease(shard_id=shard_id, owner=None, counter=0, parents=tuple(parents))
        try:
            await self._client.put_item(
                TableName=self._table,
                Item=lease_to_item(lease),
                ConditionExpression="attribute_not_exists(#key)",
                ExpressionAttributeNames={"#key": KEY},
            )
        except ClientError as error:
            if _code(error) == _CONDITION_FAILED:
                return False
            raise
        return True

    async def renew(self, lease: Lease, me: str) -> Lease | None:
        """Bump the counter of a lease ``me`` holds, if it is still ``me``'s at ``lease.counter``.

        None means the lease is lost (taken, stolen or released since): stop processing its shard.
        """
        return await self._update(
            lease,
            update="SET #counter = #counter + :one",
            condition="#owner = :me AND #counter = :counter",
            values={":me": {"S": me}},
        )

    async def take(self, lease: Lease, me: str) -> Lease | None:
        """Make ``me`` the owner of a free, expired or stolen lease, as read (owner and counter unchanged).

        Of several workers taking the same snapshot, exactly one gets the lease; the others get None.
        A finished lease (``SHARD_END``) is never taken: ValueError.
        """
        if lease.finished:
            raise ValueError(f"lease {lease.shard_id} is finished (SHARD_END) and is never taken")
        values: dict[str, dict[str, Any]] = {":me": {"S": me}}
        if lease.owner is None:
            condition = "attribute_not_exists(#owner) AND #counter = :counter"
        else:
            condition = "#owner = :previous AND #counter = :counter"
            values[":previous"] = {"S": lease.owner}
        return await self._update(
            lease,
            update="SET #owner = :me, #counter = #counter + :one REMOVE #pending",
            condition=condition,
            values=values,
        )

    async def request_handoff(self, lease: Lease, thief: str) -> Lease | None:
        """Ask the owner of ``lease`` (as read) to hand it to ``thief`` after its current batch.

        Conditional on the owner read and on no other request under way, not on the counter: a busy
        owner bumps it with every batch it prepares, so a snapshot is stale within a fraction of a
        second. The counter is left alone so the owner is not fenced. None: the lease has another owner
        now, or another worker asked first.
        """
        if lease.owner is None or lease.finished:
            raise ValueError(f"lease {lease.shard_id} has no owner to hand it over")
        return await self._update(
            lease,
            update="SET #pending = :thief",
            condition="#owner = :owner AND attribute_not_exists(#pending) AND #checkpoint <> :end",
            values={":thief": {"S": thief}, ":owner": {"S": lease.owner}, ":end": {"S": Sentinel.SHARD_END}},
        )

    async def hand_over(self, lease: Lease, me: str) -> Lease | None:
        """Make the requesting worker the owner of a lease ``me`` holds at ``lease.counter``.

        The caller has finished its batch and checkpointed. None: the lease was lost meanwhile.
        """
        if lease.pending_owner is None:
            raise ValueError(f"lease {lease.shard_id} has no handoff under way")
        return await self._update(
            lease,
            update="SET #owner = :next, #counter = #counter + :one REMOVE #pending",
            condition="#owner = :me AND #counter = :counter AND #pending = :next",
            values={":me": {"S": me}, ":next": {"S": lease.pending_owner}},
        )

    async def checkpoint(
        self, lease: Lease, me: str, sequence: str, snapshot: str | None = None
    ) -> Lease | None:
        """Record how far ``me`` has processed the shard: a sequence number (decimal string) or SHARD_END,
        and the snapshot of the shard's device states as of it (``snapshot``, when given).

        Only the owner holding the current counter may checkpoint; None means the lease was lost and the
        checkpoint was not written (the new owner reads again from the last checkpoint that was).
        """
        if sequence != Sentinel.SHARD_END and not _is_sequence_number(sequence):
            raise ValueError(f"checkpoint must be a decimal sequence number or SHARD_END, not {sequence!r}")
        values = {":me": {"S": me}, ":checkpoint": {"S": str(sequence)}}
        update = "SET #checkpoint = :checkpoint, #counter = #counter + :one"
        if snapshot is not None:
            update += ", #snapshot = :snapshot"
            values[":snapshot"] = {"S": snapshot}
        return await self._update(
            lease, update=update, condition="#owner = :me AND #counter = :counter", values=values
        )

    async def prepare(self, lease: Lease, me: str, first: str, last: str) -> Lease | None:
        """Record the span of the batch ``me`` is about to write to the sinks (KCL's prepared checkpoint).

        Written before any sink effect of the batch, conditional on ownership, so a replica that lost
        the lease starts no batch, and a new owner reads an interrupted batch again with the same span.
        """
        if not (_is_sequence_number(first) and _is_sequence_number(last)):
            raise ValueError(f"a batch span is two decimal sequence numbers, not {first!r}-{last!r}")
        return await self._update(
            lease,
            update="SET #batch = :batch, #counter = #counter + :one",
            condition="#owner = :me AND #counter = :counter",
            values={":me": {"S": me}, ":batch": {"S": f"{first}-{last}"}},
        )

    async def release(self, lease: Lease, me: str) -> bool:
        """Give up a lease ``me`` owns (whatever its counter): it becomes free for any worker to take.

        False means ``me`` did not own it any more; nothing was written.
        """
        result = await self._update(
            lease,
            update="REMOVE #owner, #pending SET #counter = #counter + :one",
            condition="#owner = :me",
            values={":me": {"S": me}},
        )
        return result is not None

    async def delete_finished(self, lease: Lease) -> bool:
        """Delete the lease of a shard that reached SHARD_END (``leases.cleanup`` says when).

        Conditional on the checkpoint being SHARD_END, which nothing ever changes back, so a delete
        racing any other write can only remove a finished lease. False: there was no finished lease
        to delete (another worker deleted it first).
        """
        if not lease.finished:
            raise ValueError(f"lease {lease.shard_id} is not finished (SHARD_END) and is never deleted")
        try:
            await self._client.delete_item(
                TableName=self._table,
                Key={KEY: {"S": lease.shard_id}},
                ConditionExpression="#checkpoint = :end",
                ExpressionAttributeNames={"#checkpoint": CHECKPOINT},
                ExpressionAttributeValues={":end": {"S": Sentinel.SHARD_END}},
            )
        except ClientError as error:
            if _code(error) == _CONDITION_FAILED:
                return False
            raise
        return True

    async def _update(
        self, lease: Lease, *, update: str, condition: str, values: dict[str, dict[str, Any]]
    ) -> Lease | None:
        expressions = f"{update} {condition}"
        names = {placeholder: name for placeholder, name in _NAMES.items() if placeholder in expressions}
        if ":one" in update:
            values = {**values, ":one": {"N": "1"}}
        if ":counter" in condition:
            values[":counter"] = {"N": str(lease.counter)}
        try:
            response = await self._client.update_item(
                TableName=self._table,
                Key={KEY: {"S": lease.shard_id}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _code(error) == _CONDITION_FAILED:
                return None
            raise
        return item_to_lease(response["Attributes"])
