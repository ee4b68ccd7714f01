"""Lease planning: renew, take, steal, release, failover by observed counters, parents before children."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.runtime.consumer.leases import Lease, LeaseConfig, LeaseObserver, Plan, Sentinel, plan

END = Sentinel.SHARD_END
CONFIG = LeaseConfig(failover_ms=10_000, max_leases_per_worker=6, max_takes_per_round=4)


def shard(n: int) -> str:
    return f"shardId-{n:012d}"


def planned(leases: list[Lease], me: str, now_ms: int = 0, config: LeaseConfig = CONFIG) -> Plan:
    observer = LeaseObserver()
    observer.observe(leases, now_ms)
    return plan(leases, observer, me, now_ms, config)


def ids(leases: tuple[Lease, ...]) -> list[str]:
    return [lease.shard_id for lease in leases]


def write(table: dict[str, Lease], lease: Lease, owner: str | None) -> None:
    """DynamoDB's conditional write on the counter: applies only to the snapshot the plan saw."""
    current = table[lease.shard_id]
    if current.counter == lease.counter:
        table[lease.shard_id] = Lease(current.shard_id, owner, current.counter + 1, current.checkpoint)


def run_rounds(table: dict[str, Lease], workers: list[str], rounds: int, config: LeaseConfig) -> list[Plan]:
    """Each worker in turn reads the table, plans and writes; one second of every clock per round."""
    observers = {worker: LeaseObserver() for worker in workers}
    plans = []
    for round_ in range(rounds):
        for worker in workers:
            snapshot = list(table.values())
            observers[worker].observe(snapshot, round_ * 1000)
            p = plan(snapshot, observers[worker], worker, round_ * 1000, config)
            for lease in (*p.renew, *p.take, *([p.steal] if p.steal else [])):
                write(table, lease, worker)
            for lease in p.release:
                write(table, lease, None)
            plans.append(p)
    return plans


def loads(table: dict[str, Lease]) -> list[int]:
    return sorted(Counter(lease.owner for lease in table.values() if lease.owner).values())


def test_a_fresh_worker_takes_unowned_leases_up_to_the_round_bound_in_shard_order() -> None:
    leases = [Lease(shard(n), None, 0) for n in (3, 1, 2, 0, 4, 5, 6)]

    p = planned(leases, "w1")

    assert ids(p.take) == [shard(0), shard(1), shard(2), shard(3)]
    assert (p.renew, p.steal, p.release, p.target) == ((), None, (), 6)


def test_a_worker_never_holds_more_than_its_bound_and_releases_the_excess() -> None:
    leases = [Lease(shard(n), "w1", 1) for n in range(8)] + [Lease(shard(9), None, 0)]

    p = planned(leases, "w1")

    assert ids(p.renew) == [shard(n) for n in range(6)]
    assert ids(p.release) == [shard(6), shard(7)]
    assert (p.take, p.steal) == ((), None)


@pytest.mark.parametrize(
    ("parent_checkpoint", "child_takeable"),
    [("49590338271490256608559692538361571095921575989136588898", False), (END, True), (None, True)],
    ids=["parent-still-open", "parent-at-shard-end", "parent-lease-deleted"],
)
def test_a_child_is_taken_only_after_its_parents_ended(
    parent_checkpoint: str | None, child_takeable: bool
) -> None:
    parent = [] if parent_checkpoint is None else [Lease(shard(0), "w2", 5, parent_checkpoint)]
    leases = [
        *parent,
        Lease(shard(1), None, 0, parents=(shard(0),)),
        Lease(shard(2), None, 0, parents=(shard(0),)),
    ]

    p = planned(leases, "w1")

    assert ids(p.take) == ([shard(1), shard(2)] if child_takeable else [])


def test_a_child_of_a_merge_waits_for_both_parents() -> None:
    child = Lease(shard(2), None, 0, parents=(shard(0), shard(1)))
    one_open = [Lease(shard(0), None, 3, END), Lease(shard(1), "w2", 3, "12345"), child]
    both_ended = [Lease(shard(0), None, 3, END), Lease(shard(1), "w2", 4, END), child]

    assert planned(one_open, "w1").take == ()
    assert ids(planned(both_ended, "w1").take) == [shard(2)]


def test_shard_end_leases_are_never_taken_and_finished_ones_held_are_released() -> None:
    leases = [Lease(shard(0), None, 1, END), Lease(shard(1), "w1", 7, END), Lease(shard(2), None, 0)]

    p = planned(leases, "w1")

    assert ids(p.take) == [shard(2)]
    assert ids(p.release) == [shard(1)]
    assert p.renew == ()


@pytest.mark.parametrize(
    ("counter_moves", "elapsed_ms", "expired"),
    [(False, 10_001, True), (False, 10_000, False), (True, 60_000, False)],
    ids=["still-past-failover", "still-exactly-failover", "moving-for-a-minute"],
)
def test_expiry_is_judged_by_the_counter_on_the_observers_own_clock(
    counter_moves: bool, elapsed_ms: int, expired: bool
) -> None:
    # The owner's clock is irrelevant: only whether its counter moves, measured on w1's clock.
    observer, counter, t = LeaseObserver(), 10, 5_000_000
    leases = [Lease(shard(0), "w2", counter)]
    observer.observe(leases, t)
    for step in range(1, elapsed_ms // 1000 + 1):
        counter += counter_moves
        leases = [Lease(shard(0), "w2", counter)]
        observer.observe(leases, t + step * 1000)
    observer.observe(leases, t + elapsed_ms)

    p = plan(leases, observer, "w1", t + elapsed_ms, CONFIG)

    assert ids(p.take) == ([shard(0)] if expired else [])
    assert p.steal is None  # a single lease: w2 is never two ahead of w1


def test_failover_counts_from_the_last_counter_change_seen() -> None:
    observer = LeaseObserver()
    for t, counter in [(0, 1), (3_000, 2), (6_000, 3), (9_000, 3), (16_000, 3)]:
        observer.observe([Lease(shard(0), "w2", counter)], t)
    stopped = Lease(shard(0), "w2", 3)

    assert not observer.is_expired(stopped, 16_000, 10_000)
    assert observer.is_expired(stopped, 16_001, 10_000)
    assert not observer.is_expired(Lease(shard(0), "w2", 4), 16_001, 10_000)  # a newer read than observed
    assert not observer.is_expired(Lease(shard(0), None, 3), 16_001, 10_000)  # free, not expired


def test_an_owned_lease_first_seen_gets_a_full_failover_before_it_counts_as_expired() -> None:
    observer = LeaseObserver()
    leases = [Lease(shard(0), "w2", 4)]
    observer.observe(leases, 50_000)  # w2's last renewal may have been long ago; w1 cannot know

    assert plan(leases, observer, "w1", 50_000, CONFIG).take == ()
    assert ids(plan(leases, observer, "w1", 60_001, CONFIG).take) == [shard(0)]


def test_a_dead_workers_leases_do_not_count_it_as_a_worker() -> None:
    observer = LeaseObserver()
    leases = [Lease(shard(n), "dead", 1) for n in range(4)] + [Lease(shard(n), "w2", 1) for n in range(4, 6)]
    observer.observe(leases, 0)
    leases = leases[:4] + [Lease(shard(n), "w2", 2) for n in range(4, 6)]
    observer.observe(leases, 20_000)

    p = plan(leases, observer, "w1", 20_000, CONFIG)

    assert p.target == 3  # 6 active shards over w1 and w2
    assert ids(p.take) == [shard(0), shard(1), shard(2)]


def test_three_workers_starting_together_over_ten_shards_converge_and_then_stay_put() -> None:
    table = {shard(n): Lease(shard(n), None, 0) for n in range(10)}
    config = LeaseConfig(max_leases_per_worker=10, max_takes_per_round=8)

    run_rounds(table, ["w1", "w2", "w3"], rounds=6, config=config)

    assert loads(table) == [3, 3, 4]
    assert all(lease.owner for lease in table.values())
    later = run_rounds(table, ["w1", "w2", "w3"], rounds=5, config=config)
    assert loads(table) == [3, 3, 4]
    assert all(p.steal is None and p.take == () for p in later)


@pytest.mark.parametrize(
    ("held", "steals_from"),
    [
        ({"w1": 0, "w2": 6, "w3": 2}, "w2"),  # one lease from the heaviest only
        ({"w1": 0, "w2": 3, "w3": 3}, "w2"),  # ties between victims broken by worker id
        ({"w1": 2, "w2": 4, "w3": 4}, "w2"),  # victim at target, but two ahead: KCL steals one
        ({"w1": 3, "w2": 4, "w3": 3}, None),  # within one: balanced
        ({"w1": 0, "w2": 1, "w3": 1}, None),  # 2 shards, 3 workers: no thrash
        ({"w1": 4, "w2": 6, "w3": 2}, None),  # w1 already at target, though two behind w2
        ({"w1": 4, "w2": 6}, "w2"),  # below target (5) and two behind: steal to 5/5
    ],
)
def test_stealing_takes_one_lease_from_the_heaviest_and_none_when_balanced(
    held: dict[str, int], steals_from: str | None
) -> None:
    names = iter(range(100))
    leases = [Lease(shard(next(names)), owner, 1) for owner, n in held.items() for _ in range(n)]

    p = planned(leases, "w1", config=LeaseConfig(max_leases_per_worker=10))

    assert p.take == ()
    if steals_from is None:
        assert p.steal is None
    else:
        assert p.steal is not None
        assert p.steal.owner == steals_from
        assert p.steal.shard_id == min(lease.shard_id for lease in leases if lease.owner == steals_from)


def test_no_steal_while_something_is_free_to_take() -> None:
    leases = [Lease(shard(n), "w2", 1) for n in range(6)] + [Lease(shard(6), None, 0)]

    p = planned(leases, "w1")

    assert (ids(p.take), p.steal) == ([shard(6)], None)


def test_config_rejects_non_positive_bounds() -> None:
    with pytest.raises(ValueError, match="max_takes_per_round"):
        LeaseConfig(max_takes_per_round=0)


WORKERS = ["w1", "w2", "w3", "w4"]


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[Lease], LeaseObserver, int]:
    n = draw(st.integers(0, 12))
    leases = []
    for i in range(n):
        parents = (
            draw(st.lists(st.sampled_from([shard(j) for j in range(i)]), max_size=2, unique=True))
            if i
            else []
        )
        leases.append(
            Lease(
                shard(i),
                draw(st.sampled_from([None, *WORKERS])),
                draw(st.integers(0, 3)),
                draw(st.sampled_from([Sentinel.TRIM_HORIZON, END, "4959033827149025660855969253"])),
                tuple(parents),
            )
        )
    leases = draw(st.permutations(leases))
    observer = LeaseObserver()
    observer.observe(leases, 0)
    later = [
        Lease(x.shard_id, x.owner, x.counter + draw(st.integers(0, 1)), x.checkpoint, x.parents)
        for x in leases
    ]
    now = draw(st.integers(0, 30_000))
    observer.observe(later, now)
    return later, observer, now


@given(
    tables(),
    st.sampled_from(WORKERS),
    st.builds(LeaseConfig, max_leases_per_worker=st.integers(1, 5), max_takes_per_round=st.integers(1, 5)),
)
def test_a_plan_never_breaks_its_contract(
    drawn: tuple[list[Lease], LeaseObserver, int], me: str, config: LeaseConfig
) -> None:
    leases, observer, now = drawn
    by_id = {lease.shard_id: lease for lease in leases}

    p = plan(leases, observer, me, now, config)

    acquired = [*p.take, *([p.steal] if p.steal else [])]
    for lease in acquired:
        assert not lease.finished
        assert lease.owner != me
        assert all(parent not in by_id or by_id[parent].finished for parent in lease.parents)
    for lease in p.take:
        assert lease.owner is None or observer.is_expired(lease, now, config.failover_ms)
    assert not (p.take and p.steal)
    assert len(p.take) <= config.max_takes_per_round
    assert len(p.renew) + len(acquired) <= config.max_leases_per_worker
    touched = ids((*p.renew, *acquired, *p.release))
    assert len(touched) == len(set(touched))
    assert all(lease.owner == me for lease in (*p.renew, *p.release))


def test_a_handoff_under_way_counts_for_the_thief_and_is_not_asked_for_twice() -> None:
    leases = [Lease(f"shard-{i}", "w1", 1, pending_owner="w2" if i == 0 else None) for i in range(4)]
    observer = LeaseObserver()
    observer.observe(leases, 0)
    config = LeaseConfig()
    thief = plan(leases, observer, "w2", 0, config)
    assert thief.steal is None  # one handoff to w2 is under way: it waits for it
    third = plan(leases, observer, "w3", 0, config)
    assert third.steal is not None
    assert third.steal.shard_id != "shard-0"  # never the lease already promised to w2


@pytest.mark.parametrize(
    ("checkpoint", "batch", "expected"),
    [
        (Sentinel.TRIM_HORIZON, None, None),
        (Sentinel.TRIM_HORIZON, "5-9", 9),  # a file prepared before the first checkpoint
        ("4", "5-9", 9),  # prepared past the checkpoint: the next owner cuts it again at 9
        ("9", "5-9", None),  # checkpointed: nothing pending
        ("12", "5-9", None),
        (Sentinel.SHARD_END, "5-9", None),
    ],
)
def test_prepared_end_is_a_prepared_file_the_checkpoint_has_not_passed(
    checkpoint: str, batch: str | None, expected: int | None
) -> None:
    assert Lease("s", "me", 1, checkpoint, batch=batch).prepared_end == expected
