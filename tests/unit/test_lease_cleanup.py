"""Finished parents leave the lease table once their children started (KCL's completed-lease cleanup),
and shard sync never brings a deleted parent's lease back."""

from __future__ import annotations

import pytest
from hypothesis import given

from service.runtime.consumer.leases import Lease, Sentinel, Shard, cleanup, shards_to_lease, started
from tests.unit.test_leases import ids, planned, shard, tables

END = Sentinel.SHARD_END
SEQ = "49590338271490256608559692538361571095921575989136588898"


def split(child_1: Lease, child_2: Lease, parent_checkpoint: str = END) -> list[Lease]:
    return [Lease(shard(0), None, 9, parent_checkpoint), child_1, child_2]


def child(
    n: int, owner: str | None = None, counter: int = 0, checkpoint: str = Sentinel.TRIM_HORIZON
) -> Lease:
    return Lease(shard(n), owner, counter, checkpoint, parents=(shard(0),))


@pytest.mark.parametrize(
    ("leases", "deleted"),
    [
        (split(child(1, "w1", 1), child(2, None, 3, SEQ)), [shard(0)]),  # one taken, one checkpointed
        (split(child(1, "w1", 1), child(2, None, 2, END)), [shard(0)]),  # a child already ended too
        (split(child(1, "w1", 1), child(2)), []),  # child 2 never taken
        (split(child(1, "w1", 1), child(2, "w1", 1), parent_checkpoint=SEQ), []),  # parent not ended
        ([Lease(shard(0), None, 9, END)], []),  # no child lease in the table (yet)
    ],
    ids=["children-started", "child-ended", "child-not-started", "parent-open", "no-children"],
)
def test_a_finished_parent_is_deleted_once_every_child_started(
    leases: list[Lease], deleted: list[str]
) -> None:
    assert ids(cleanup(leases)) == deleted
    assert ids(planned(leases, "w3").delete) == deleted


def test_ancestors_go_first() -> None:
    grandparent = Lease(shard(0), None, 5, END)
    parent = Lease(shard(1), None, 5, END, parents=(shard(0),))
    grandchild = Lease(shard(2), "w1", 1, SEQ, parents=(shard(1),))

    assert ids(cleanup([grandparent, parent, grandchild])) == [shard(0)]
    assert ids(cleanup([parent, grandchild])) == [shard(1)]


def test_each_parent_of_a_merge_goes_once_the_merged_child_started() -> None:
    parents = [Lease(shard(0), None, 4, END), Lease(shard(1), None, 6, END)]
    waiting = Lease(shard(2), None, 0, parents=(shard(0), shard(1)))
    taken = Lease(shard(2), "w1", 1, parents=(shard(0), shard(1)))

    assert cleanup([*parents, waiting]) == ()
    assert ids(cleanup([*parents, taken])) == [shard(0), shard(1)]


def test_a_child_whose_parent_lease_was_deleted_is_taken() -> None:
    leases = [child(1), child(2)]  # their parent's lease is gone: it had ended

    assert ids(planned(leases, "w1").take) == [shard(1), shard(2)]


def test_sync_creates_no_lease_for_a_closed_shard_with_a_leased_descendant() -> None:
    shards = [
        Shard(shard(0), closed=True),  # parent of 1 and 2; its lease was deleted
        Shard(shard(1), (shard(0),), closed=True),  # parent of 3; its lease was deleted too
        Shard(shard(2), (shard(0),)),
        Shard(shard(3), (shard(1),)),
        Shard(shard(4), closed=True),  # closed, no descendant listed: it still needs one
        Shard(shard(5)),  # new and open
    ]
    leases = [Lease(shard(2), "w1", 3, SEQ), Lease(shard(3), "w2", 1, parents=(shard(1),))]

    assert [s.shard_id for s in shards_to_lease(shards, leases)] == [shard(4), shard(5)]


def test_a_fresh_stream_gets_a_lease_for_every_shard() -> None:
    shards = [Shard(shard(0), closed=True), Shard(shard(1), (shard(0),)), Shard(shard(2), (shard(0),))]

    assert shards_to_lease(shards, []) == shards


# Lease tables as the planner's property tests draw them (parents among earlier shards, any state).
lease_tables = tables().map(lambda drawn: drawn[0])


@given(lease_tables)
def test_cleanup_deletes_only_finished_leases_whose_children_all_started(leases: list[Lease]) -> None:
    by_id = {lease.shard_id: lease for lease in leases}
    for lease in cleanup(leases):
        children = [c for c in leases if lease.shard_id in c.parents]
        assert lease.finished
        assert children
        assert all(started(c) for c in children)
        assert not any(parent in by_id for parent in lease.parents)
