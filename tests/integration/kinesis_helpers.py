"""Reading a whole Kinesis stream back, for tests that assert what a writer delivered."""

from __future__ import annotations

import json
from typing import Any


def read_stream(client: Any, stream_name: str) -> list[tuple[str, bytes]]:
    """Every record of every shard, ``(partition key, data)``, in shard order (shards one after another).
    Stops per shard at the first empty page once the reader is at the tip (moto: a shard never ends)."""
    records: list[tuple[str, bytes]] = []
    for shard in client.list_shards(StreamName=stream_name)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            records += [(r["PartitionKey"], r["Data"]) for r in page["Records"]]
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return records


def seqs_by_device(records: list[tuple[str, bytes]]) -> dict[str, list[int]]:
    """``seq`` values per partition key, in stream order."""
    out: dict[str, list[int]] = {}
    for key, data in records:
        out.setdefault(key, []).append(int(json.loads(data)["seq"]))
    return out
