"""The shard consumer under faults, as processes on real endpoints (loopback only, bounded in time).

Each test runs ``vitalstream consume`` replicas against the emulator, feeds numbered samples, injects a
fault (start together, ``kill -9``, rolling SIGTERM, resharding, throttling and 5xx, a poison burst,
``kill -9`` between dead-lettering and the checkpoint), then reads every sink back: nothing sent is
missing from the archive, nothing is archived or dead-lettered twice, and each device's samples were
processed in their own order.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.core.records import padded_sequence
from service.runtime.consumer.leases import Sentinel
from tests.integration.conftest import AwsStack, skip_unfaithful_resharding
from tests.integration.consumer_rig import ConsumerRig, Feed, wait_drained, wait_for
from tests.integration.fault_proxy import FaultProxy, dynamodb_error, kinesis_throttle, s3_slow_down

pytestmark = pytest.mark.integration
FAILOVER_LIMIT_S = 15.0
RigFactory = Callable[[int], ConsumerRig]


@pytest.fixture
def make_rig(aws: AwsStack, kinesis_endpoint: str, tmp_path: Path) -> Iterator[RigFactory]:
    """``make_rig(shards)``: a fresh stream and lease table on the test's stack; replicas stopped after."""
    rigs: list[ConsumerRig] = []

    def make(shards: int) -> ConsumerRig:
        rig = ConsumerRig(aws, kinesis_endpoint, shards, tmp_path / f"rig-{len(rigs)}")
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def report(name: str, **figures: object) -> None:
    """Figures for the issue note: printed, and shown by pytest with -s or -rA."""
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def settled(rig: ConsumerRig, feed: Feed, name: str, **figures: object) -> None:
    back = wait_drained(rig, feed)
    report(name, sent=len(feed.sent), archived=len(back.archived), duplicated=back.duplicated, **figures)
    assert back.duplicated == 0
    assert back.order_breaks == []


def test_three_replicas_started_together_balance_within_one(make_rig: RigFactory) -> None:
    rig = make_rig(6)
    rig.replicas.start(3)
    rig.replicas.wait_ready()
    feed = rig.feed(devices=30, rate=20)
    feed.start()

    def balanced() -> bool:
        held = rig.held()
        return sum(held.values()) == 6 and max(held.values()) - min(held.values()) <= 1

    took = wait_for(balanced, 60, "6 leases spread over 3 replicas within one of each other")
    time.sleep(8)  # two more lease rounds: the balance holds (no churn)
    held = rig.held()
    feed.stop()
    assert sum(held.values()) == 6
    assert max(held.values()) - min(held.values()) <= 1
    settled(rig, feed, "balance", balanced_after_s=round(took, 1), held=held)


@pytest.mark.parametrize("per_message", [1, 12], ids=["one-sample-messages", "12-sample-messages"])
def test_kill_9_of_a_replica_its_shards_are_taken_within_the_failover_time(
    make_rig: RigFactory, per_message: int
) -> None:
    """With batched messages too: no sample lost, none archived twice, one alert for the episode."""
    rig = make_rig(4)
    victim, survivor = rig.replicas.start(2)
    rig.replicas.wait_ready()
    feed = rig.feed(devices=40, rate=40 * per_message, per_message=per_message)
    feed.start()
    wait_for(lambda: rig.held() == {victim.worker_id: 2, survivor.worker_id: 2}, 60, "a 2/2 split")
    wait_for(lambda: victim.value("vitalstream_records_total", outcome="processed") > 0, 30, "work")
    # a bradycardia episode in progress on one of the victim's shards: raised before the kill, it
    # must be neither lost nor raised again by the survivor, which restores the device's state
    victims = {
        i["leaseKey"]["S"] for i in rig.leases() if i.get("leaseOwner", {}).get("S") == victim.worker_id
    }
    patient = rig.device_on(victims)
    feed.put_episode(patient, 10)
    wait_for(lambda: any(a["deviceId"] == patient for a in rig.alerts()), 60, "the episode's alert")

    victim.process.send_signal(signal.SIGKILL)
    took = wait_for(
        lambda: survivor.value("vitalstream_leases_held") == 4, 60, "the survivor to hold all 4", 0.2
    )
    feed.put_episode(patient, 10)  # the episode goes on, now on the survivor
    time.sleep(3)
    feed.stop()
    assert victim.process.wait(10) == -signal.SIGKILL
    settled(rig, feed, f"kill -9, {per_message} per message", takeover_s=round(took, 1))
    alerts = [a for a in rig.alerts() if a["deviceId"] == patient]
    assert [a["type"] for a in alerts] == ["BRADYCARDIA"]  # one alert per episode, across the takeover
    assert took <= FAILOVER_LIMIT_S, f"shards taken over {took:.1f} s after the kill"


def test_rolling_sigterm_restart_hands_every_lease_over_and_loses_nothing(make_rig: RigFactory) -> None:
    rig = make_rig(4)
    old = rig.replicas.start(2)
    rig.replicas.wait_ready()
    feed = rig.feed(devices=40, rate=40)
    feed.start()
    wait_for(lambda: sum(rig.held().values()) == 4, 60, "all 4 leases held")
    codes = []
    for replica in old:  # one pod at a time, as a Deployment's rolling update does
        rig.replicas.start(1)
        rig.replicas.wait_ready()
        rig.replicas.signal(replica, signal.SIGTERM)
        codes.append(replica.process.wait(60))
        wait_for(lambda: sum(rig.held().values()) == 4, 60, "all 4 leases held again")
    feed.stop()
    assert codes == [0, 0]
    released = [e for r in old for e in r.logs() if e.get("message") == "shutdown_requested"]
    assert len(released) >= 2
    leases = rig.leases()
    assert all(item["leaseOwner"]["S"] not in {r.worker_id for r in old} for item in leases)
    settled(rig, feed, "rolling SIGTERM", exit_codes=codes, leases_let_go=len(released))


@pytest.mark.kinesis
def test_split_and_merge_while_consuming_children_after_parents(make_rig: RigFactory, backend: str) -> None:
    skip_unfaithful_resharding(backend)
    rig = make_rig(2)
    rig.replicas.start(1)
    rig.replicas.wait_ready()
    feed = rig.feed(devices=40, rate=30)
    feed.start()
    time.sleep(3)
    shards = rig.kinesis.list_shards(StreamName=rig.stream)["Shards"]
    first = shards[0]
    low, high = int(first["HashKeyRange"]["StartingHashKey"]), int(first["HashKeyRange"]["EndingHashKey"])
    rig.kinesis.split_shard(
        StreamName=rig.stream, ShardToSplit=first["ShardId"], NewStartingHashKey=str((low + high) // 2)
    )
    wait_for(lambda: _open_shards(rig) == 3, 30, "the split to finish")
    time.sleep(3)
    left, right = sorted(
        (s for s in rig.kinesis.list_shards(StreamName=rig.stream)["Shards"] if _is_open(s)),
        key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]),
    )[:2]
    rig.kinesis.merge_shards(
        StreamName=rig.stream, ShardToMerge=left["ShardId"], AdjacentShardToMerge=right["ShardId"]
    )
    wait_for(lambda: _open_shards(rig) == 2, 30, "the merge to finish")
    time.sleep(3)
    feed.stop()
    back = wait_drained(rig, feed)
    closed = {
        s["ShardId"] for s in rig.kinesis.list_shards(StreamName=rig.stream)["Shards"] if not _is_open(s)
    }
    opened = {s["ShardId"] for s in rig.kinesis.list_shards(StreamName=rig.stream)["Shards"] if _is_open(s)}
    # a closed shard's lease reaches SHARD_END, then goes once its children started (only a finished
    # lease is ever deleted): the table ends up holding the open shards alone
    wait_for(lambda: _leased(rig) == opened, 60, "every closed shard to end and its lease to be deleted")
    report(
        "split+merge",
        sent=len(feed.sent),
        archived=len(back.archived),
        duplicated=back.duplicated,
        shards_ended=len(closed),
    )
    assert back.order_breaks == []  # per device, children were processed after their parents
    assert back.duplicated == 0


def test_throttling_and_5xx_on_reads_and_sinks_back_off_then_recover(
    make_rig: RigFactory,
    aws: AwsStack,
) -> None:
    proxy = FaultProxy(str(aws.settings.endpoint_url)).start()
    try:
        rig = make_rig(2)
        # sinks and leases through the proxy; Kinesis too, unless it has an endpoint of its own
        kinesis_via_proxy = rig.env["VITALSTREAM_KINESIS_ENDPOINT_URL"] == aws.settings.endpoint_url
        via = {"VITALSTREAM_ENDPOINT_URL": proxy.url}
        if kinesis_via_proxy:
            via["VITALSTREAM_KINESIS_ENDPOINT_URL"] = proxy.url
        (replica,) = rig.replicas.start(1, extra_env=via)
        rig.replicas.wait_ready()
        feed = rig.feed(devices=20, rate=20)
        feed.start()
        time.sleep(3)

        # each outage lasts until the consumer itself has seen it (beyond the SDK's own retries)
        def seen(name: str, **labels: str) -> Callable[[], bool]:
            return lambda: replica.value(name, **labels) > 0

        with proxy.inject(dynamodb_error(aws.settings.device_state_table)):  # state writes fail
            wait_for(seen("vitalstream_sink_errors_total", sink="device_state"), 90, "a failed state write")
        with proxy.inject(s3_slow_down(aws.settings.archive_bucket)):  # then archive writes
            wait_for(seen("vitalstream_sink_errors_total", sink="archive"), 90, "a failed archive write")
        if kinesis_via_proxy:
            with proxy.inject(kinesis_throttle("GetRecords")):  # then reads
                wait_for(seen("vitalstream_throttles_total", api="GetRecords"), 90, "a throttled read")
        feed.stop()
        settled(
            rig,
            feed,
            "throttling+5xx",
            injected=proxy.injected,
            throttles=replica.value("vitalstream_throttles_total", api="GetRecords"),
            state_errors=replica.value("vitalstream_sink_errors_total", sink="device_state"),
            archive_errors=replica.value("vitalstream_sink_errors_total", sink="archive"),
        )
    finally:
        proxy.stop()


def test_a_poison_burst_all_goes_to_the_dead_letters_and_the_lag_recovers(make_rig: RigFactory) -> None:
    rig = make_rig(2)
    (replica,) = rig.replicas.start(1)
    rig.replicas.wait_ready()
    feed = rig.feed(devices=20, rate=10)
    feed.put(50)
    feed.put(0, poison=500)
    feed.put(50)
    wait_drained(rig, feed)
    wait_for(lambda: len(rig.dead_letters) >= 500, 60, "500 dead letters")
    behind = [v for name, _, v in replica.scrape() if name == "vitalstream_millis_behind_latest"]
    report("poison burst", poison=feed.poison_sent, dead_letters=len(rig.dead_letters), behind_ms=behind)
    assert len(rig.dead_letters) == 500
    assert {d["reason"] for d in rig.dead_letters} == {"invalid_json"}
    assert behind
    assert max(behind) <= 1_000


def test_kill_9_after_dead_lettering_before_the_checkpoint_stores_no_dead_letter_twice(
    make_rig: RigFactory,
) -> None:
    """The victim never checkpoints (its archive files would be cut after 10 minutes), so the survivor
    replays every batch the victim dead-lettered from, and sends those rejects again: each is stored
    once all the same."""
    poison = 60
    rig = make_rig(2)
    (victim,) = rig.replicas.start(1, extra_env={"VITALSTREAM_ARCHIVE_FILE_MAX_AGE_MS": "600000"})
    rig.replicas.wait_ready()
    feed = rig.feed(devices=20, rate=10)
    feed.put(40)
    feed.put(0, poison=poison)
    feed.put(40)
    wait_for(lambda: len(rig.dead_letters) >= poison, 60, f"{poison} dead letters in the queue", 0.1)
    checkpoints = victim.value("vitalstream_checkpoints_total")
    victim.process.send_signal(signal.SIGKILL)
    assert victim.process.wait(10) == -signal.SIGKILL
    unmoved = {item["checkpoint"]["S"] for item in rig.leases()}

    (survivor,) = rig.replicas.start(1)
    rig.replicas.wait_ready()
    wait_drained(rig, feed)

    def resent() -> int:
        return int(survivor.value("vitalstream_dead_letters_total", reason="invalid_json"))

    wait_for(lambda: resent() >= poison, 60, "the survivor to dead-letter the replayed poison again")
    time.sleep(2)  # any late duplicate would be visible by now
    positions = [(d["shardId"], d["sequenceNumber"], d.get("subSequenceNumber")) for d in rig.dead_letters]
    stored = Counter(positions)
    report(
        "kill -9 after dead letters",
        poison=feed.poison_sent,
        sent=poison + resent(),
        stored=sum(stored.values()),
        duplicated=sum(n - 1 for n in stored.values()),
    )
    assert checkpoints == 0
    assert unmoved == {str(Sentinel.TRIM_HORIZON)}  # so the survivor replayed from the start
    assert resent() == poison
    assert len(stored) == poison
    assert max(stored.values()) == 1


def test_kill_9_with_an_archive_file_half_buffered_loses_nothing_and_its_key_is_written_by_the_next_owner(
    make_rig: RigFactory,
) -> None:
    """The victim's files would be cut after 10 minutes: everything it processed is still buffered in
    memory when it dies. The survivor replays from the (never moved) checkpoints and writes each shard's
    first file under the key the victim would have used: shard + the shard's first sequence number."""
    rig = make_rig(2)
    (victim,) = rig.replicas.start(1, extra_env={"VITALSTREAM_ARCHIVE_FILE_MAX_AGE_MS": "600000"})
    rig.replicas.wait_ready()
    feed = rig.feed(devices=20, rate=10)
    feed.put(120)
    wait_for(lambda: victim.value("vitalstream_records_total", outcome="processed") >= 120, 60, "120 done")
    assert rig.archive_keys() == []  # processed, alerted, but not yet archived: buffered
    victim.process.send_signal(signal.SIGKILL)
    assert victim.process.wait(10) == -signal.SIGKILL

    rig.replicas.start(1)
    rig.replicas.wait_ready()
    feed.put(40)
    settled(rig, feed, "kill -9 with a half-buffered file")
    shards = sorted(item["leaseKey"]["S"] for item in rig.leases())
    for shard_id in shards:
        first = padded_sequence(rig.first_sequence(shard_id))
        keys = [k for k in rig.archive_keys() if f"/shard={shard_id}/" in k]
        assert min(keys).endswith(f"/shard={shard_id}/{first}.jsonl.gz")


def test_a_steal_mid_episode_hands_the_state_over_and_raises_exactly_one_alert(make_rig: RigFactory) -> None:
    rig = make_rig(2)
    (first,) = rig.replicas.start(1)
    rig.replicas.wait_ready()
    wait_for(lambda: rig.held() == {first.worker_id: 2}, 60, "one replica holding both leases")
    shards = sorted(item["leaseKey"]["S"] for item in rig.leases())
    patients = [rig.device_on({shard}, prefix=f"patient{i}") for i, shard in enumerate(shards)]
    feed = rig.feed(devices=20, rate=10)
    feed.start()
    for patient in patients:  # 50 s at 35 bpm: a bradycardia episode on each shard, raised
        feed.put_episode(patient, 10)
    wait_for(lambda: {a["deviceId"] for a in rig.alerts()} >= set(patients), 60, "both episodes' alerts")

    (thief,) = rig.replicas.start(1)
    split = {first.worker_id: 1, thief.worker_id: 1}
    wait_for(lambda: rig.held() == split, 60, "a 1/1 split: the new replica stole a lease")
    for patient in patients:  # the episodes go on: one of them now on the thief, from the snapshot
        feed.put_episode(patient, 10)
    time.sleep(4)
    feed.stop()
    settled(
        rig,
        feed,
        "steal mid-episode",
        handed_over=first.value("vitalstream_lease_events_total", event="handed_over"),
    )
    for patient in patients:
        assert [a["type"] for a in rig.alerts() if a["deviceId"] == patient] == ["BRADYCARDIA"], patient
    assert first.value("vitalstream_lease_events_total", event="handed_over") == 1


def _is_open(shard: dict[str, object]) -> bool:
    return "EndingSequenceNumber" not in shard.get("SequenceNumberRange", {})  # type: ignore[operator]


def _open_shards(rig: ConsumerRig) -> int:
    return sum(1 for s in rig.kinesis.list_shards(StreamName=rig.stream)["Shards"] if _is_open(s))


def _leased(rig: ConsumerRig) -> set[str]:
    return {item["leaseKey"]["S"] for item in rig.leases()}
