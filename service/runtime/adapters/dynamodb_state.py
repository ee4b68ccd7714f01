"""Device state in DynamoDB: the detector snapshot, the stream position and the latest-state view.

One item per device (hash key ``deviceId``):

- ``state`` (B): ``encode_state`` snapshot; ``shardId`` (S), ``lastSeq`` (S, the sequence number
  zero-padded to 40 digits so string order is integer order), ``lastSubSeq`` (N);
- the latest record's values for the user-facing latest-state table: ``timestamp`` (event time,
  RFC 3339 UTC), ``heartRate``, ``steps``, ``spo2``, ``skinTemp``, ``battery``, ``status``,
  ``anomalies``, ``processedAt``. Optional values absent from the latest record are removed.

A write lands only if it moves the device's position forward in the same shard (or the item is new,
or the device now lives in another shard); a write refused for that reason was already committed.
Writes are conditional ``UpdateItem``s, not ``PutItem``s: a batch that moves a device's position
without a new latest record (only duplicates or late samples) keeps the latest-state values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from service.core import (
    DeviceState,
    ProcessedRecord,
    StateFormatError,
    decode_state,
    encode_state,
    iso_ms,
    padded_sequence,
)
from service.runtime.adapters._errors import CALL_ERRORS, error_code, sink_error
from service.runtime.adapters.pacing import Backoff
from service.runtime.ports import Access, FailedDevices, LoadedStates, Sink, SinkError, distinct

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, KeysAndAttributesTypeDef

BATCH_GET_LIMIT = 100
BACKOFF_CAP_S = 5.0  # the product's back-off cap; with the default 5 read attempts it never binds
_FORWARD_ONLY = (
    "attribute_not_exists(deviceId) OR shardId <> :shard OR lastSeq < :seq "
    "OR (lastSeq = :seq AND lastSubSeq < :sub)"
)
_OPTIONAL = ("spo2", "skinTemp", "battery")


class DynamoDeviceStateStore:
    """``DeviceStateStore`` on one DynamoDB table. Reads are strongly consistent.

    Four writer threads: on loopback, 2,000 writes took 1.15 ms each and 0.96 ms of client CPU with
    four, 1.73 ms and 1.53 ms with eight (the GIL's convoy), 1.43 ms and 0.84 ms with one.

    ``load`` never raises: devices whose item could not be read (after ``read_attempts`` rounds of
    ``UnprocessedKeys`` with full-jitter back-off, or a failed call, or an unreadable snapshot) are
    returned as ``unavailable``, with their causes. ``save`` writes devices concurrently
    (``max_workers`` threads) and returns those whose write failed for any reason other than being
    behind (``FailedDevices``, with the causes: sink ``device_state``, resource the table).
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        max_workers: int = 4,
        read_attempts: int = 5,
        backoff_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table
        self._max_workers = max_workers
        self._read_attempts = read_attempts
        self._backoff = Backoff(base_s=backoff_s, cap_s=BACKOFF_CAP_S)
        self._sleep = sleep

    def load(self, device_ids: Collection[str]) -> LoadedStates:
        ids = list(dict.fromkeys(device_ids))
        states: dict[str, DeviceState] = {}
        unavailable: set[str] = set()
        causes: list[SinkError] = []
        for start in range(0, len(ids), BATCH_GET_LIMIT):
            chunk = ids[start : start + BATCH_GET_LIMIT]
            unavailable.update(self._load_chunk(chunk, states, causes))
        return LoadedStates(states, frozenset(unavailable), distinct(causes))

    def _load_chunk(
        self, device_ids: Sequence[str], states: dict[str, DeviceState], causes: list[SinkError]
    ) -> set[str]:
        """Read one ≤100-key chunk; return the devices that stay unavailable (why: into ``causes``)."""
        request: KeysAndAttributesTypeDef = {
            "Keys": [{"deviceId": {"S": d}} for d in device_ids],
            "ConsistentRead": True,
            "ProjectionExpression": "deviceId, #state",
            "ExpressionAttributeNames": {"#state": "state"},
        }
        unreadable: set[str] = set()
        pending = list(device_ids)
        for attempt in range(self._read_attempts):
            if attempt:
                self._sleep(self._backoff.delay(attempt))
            try:
                response = self._client.batch_get_item(RequestItems={self._table: request})
            except CALL_ERRORS as exc:  # the client already retried what was retryable
                causes.append(sink_error(Sink.DEVICE_STATE, self._table, exc, Access.READ))
                return unreadable | set(pending)
            for item in response.get("Responses", {}).get(self._table, []):
                device_id = item["deviceId"].get("S", "")
                blob = item.get("state", {}).get("B")
                if blob is None:
                    continue  # a latest-state row without a snapshot: the device starts fresh
                try:
                    states[device_id] = decode_state(bytes(blob))
                except StateFormatError:
                    unreadable.add(device_id)  # e.g. written by a newer version; never overwrite it
                    causes.append(self._read_error("StateFormatError", permanent=True))
            # Keys neither returned nor unprocessed have no item yet: new devices.
            unprocessed = response.get("UnprocessedKeys", {}).get(self._table)
            keys = list(unprocessed["Keys"]) if unprocessed else []
            pending = [key["deviceId"].get("S", "") for key in keys]
            if not pending:
                return unreadable
            request = {**request, "Keys": keys}
        causes.append(self._read_error("UnprocessedKeys", permanent=False))  # throttled, in effect
        return unreadable | set(pending)

    def _read_error(self, code: str, *, permanent: bool) -> SinkError:
        return SinkError(Sink.DEVICE_STATE, code, self._table, permanent=permanent, access=Access.READ)

    def save(self, states: Mapping[str, DeviceState], latest: Mapping[str, ProcessedRecord]) -> FailedDevices:
        if not states:
            return FailedDevices()
        if len(states) == 1:
            errors = [self._save_one(d, s, latest.get(d)) for d, s in states.items()]
        else:
            with ThreadPoolExecutor(max_workers=min(self._max_workers, len(states))) as pool:
                errors = list(
                    pool.map(
                        lambda item: self._save_one(item[0], item[1], latest.get(item[0])), states.items()
                    )
                )
        failed = [(device_id, error) for device_id, error in zip(states, errors, strict=True) if error]
        return FailedDevices((d for d, _ in failed), (e for _, e in failed))

    def _save_one(
        self, device_id: str, state: DeviceState, record: ProcessedRecord | None
    ) -> SinkError | None:
        """Write one device's item; None when it landed or was refused as behind."""
        values: dict[str, AttributeValueTypeDef] = {
            ":state": {"B": encode_state(state)},
            ":shard": {"S": state.last_shard},
            ":seq": {"S": padded_sequence(state.last_sequence)},
            ":sub": {"N": str(state.last_sub_sequence)},
        }
        names = {"#state": "state", "#ts": "timestamp", "#status": "status"}
        assignments = ["#state = :state", "shardId = :shard", "lastSeq = :seq", "lastSubSeq = :sub"]
        removals: list[str] = []
        if record is not None:
            for name, value in latest_attributes(record).items():
                placeholder = f":{name}"
                values[placeholder] = value
                assignments.append(f"{_name(name)} = {placeholder}")
            removals = [name for name in _OPTIONAL if f":{name}" not in values]
        expression = "SET " + ", ".join(assignments) + (" REMOVE " + ", ".join(removals) if removals else "")
        used_names = {k: v for k, v in names.items() if k in expression or k == "#state"}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"deviceId": {"S": device_id}},
                UpdateExpression=expression,
                ConditionExpression=_FORWARD_ONLY,
                ExpressionAttributeNames=used_names,
                ExpressionAttributeValues=values,
            )
        except CALL_ERRORS as exc:
            if isinstance(exc, ClientError) and error_code(exc) == "ConditionalCheckFailedException":
                return None
            return sink_error(Sink.DEVICE_STATE, self._table, exc)
        return None


def _name(attribute: str) -> str:
    return {"timestamp": "#ts", "status": "#status"}.get(attribute, attribute)


def latest_attributes(record: ProcessedRecord) -> dict[str, AttributeValueTypeDef]:
    """The latest-state attributes of ``record``, as the device item holds them."""
    values: dict[str, AttributeValueTypeDef] = {
        "timestamp": {"S": iso_ms(record.event_ms)},
        "heartRate": {"N": str(record.heart_rate)},
        "steps": {"N": str(record.steps)},
        "status": {"S": record.status.value},
        "anomalies": {"L": [{"S": a.value} for a in record.anomalies]},
        "processedAt": {"S": iso_ms(record.processed_at_ms)},
    }
    if record.spo2 is not None:
        values["spo2"] = {"N": str(record.spo2)}
    if record.skin_temp is not None:
        values["skinTemp"] = {"N": repr(record.skin_temp)}
    if record.battery is not None:
        values["battery"] = {"N": str(record.battery)}
    return values
