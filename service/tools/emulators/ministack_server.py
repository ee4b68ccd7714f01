"""MiniStack's server, started by ``service.tools.emulators.ministack`` with MiniStack's own interpreter.

This file runs in MiniStack's virtual environment (it pins ``botocore``, so it cannot share ours):
it imports nothing from this project, only the standard library and ``ministack``.

Before serving, one measured defect is mended. MiniStack's Kinesis runs ``_expire_records`` on every
PutRecord(s), GetShardIterator and GetRecords: it rebuilds the record list of every shard of the
stream, so each call costs O(records retained). At 2,000 records/s the stream holds 1.2 M records
after ten minutes and every call copies them all; reads fall behind within minutes. Records arrive
in time order, so the same expiry only has to drop a prefix: ``_expire_prefix`` looks at the oldest
record and trims only when it is past the retention (O(1) when nothing expires, as in any run
shorter than the retention period). ``_start_position`` found AT/AFTER_SEQUENCE_NUMBER by scanning
the shard from its start; a shard's records are in sequence order, so ``_position_of`` bisects.

Every Kinesis request also swept every shard iterator handed out in the last 5 minutes
(``_expire_iterators``; each GetRecords hands out one): at 10,000 devices a third of the emulator's
CPU. ``_sweep_iterators`` sweeps at most every ``ITERATOR_SWEEP_S``; GetRecords itself still refuses an
iterator older than 5 minutes, so what a client sees is unchanged.

Python's collector walked the emulator's whole heap about once a second (a full collection of
100-180 ms, all requests waiting) as retained records and items piled up. ``_freeze_survivors`` moves
what survived into the permanent generation once a second, so each collection walks only what is new.

MiniStack's IoT rules engine runs rules on Publish as IoT Core does, Basic Ingest included (a publish to
``$aws/rules/<rule>/...`` runs that rule whatever its FROM clause, and ``topic()`` does not see the
prefix), but it has no Kinesis action: it skipped it, so the template's rule put nothing on the stream.
``_kinesis_action`` is IoT Core's: one record per message on ``streamName``, its partition key the
``partitionKey`` substitution template (``${topic(2)}``) evaluated by MiniStack's own SQL functions
against the message (a random UUID when there is none), its data the rule's SELECT output; a stream that
is not there fails the action, so the rule's errorAction runs.

Environment (set by the parent): ``BIND_HOST=127.0.0.1``, ``GATEWAY_PORT``, ``SERVICES``, and the
listeners MiniStack would otherwise open on every interface kept closed (``IOT_MTLS_ENABLED=0``,
``SFTP_ENABLED=0``).
"""

from __future__ import annotations

import bisect
import contextvars
import gc
import json
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

_original_start_position: Callable[..., int | None]
_original_expire_iterators: Callable[[], None]
ITERATOR_SWEEP_S = 10.0
FREEZE_EVERY_S = 1.0
_last_sweep = 0.0
# the message a rule is running for: (topic as the rule sees it, payload, client id)
_rule_message: contextvars.ContextVar[tuple[str, bytes, str | None]] = contextvars.ContextVar("rule_message")
_TEMPLATE = re.compile(r"\$\{([^}]*)\}")


def _expire_prefix(stream: dict[str, Any]) -> None:
    """Drop each shard's records older than the stream's retention, oldest first."""
    cutoff = time.time() - stream["RetentionPeriodHours"] * 3600
    for shard in stream["shards"].values():
        records = shard["records"]
        if records and records[0]["ApproximateArrivalTimestamp"] < cutoff:
            keep = bisect.bisect_left(records, cutoff, key=lambda r: r["ApproximateArrivalTimestamp"])
            shard["records"] = records[keep:]


def _position_of(records: list[dict[str, Any]], it_type: str, seq: str, at_ts: Any) -> int | None:
    """Index into ``records`` where an iterator of ``it_type`` starts; None for an unknown type."""
    if it_type in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER") and seq.isdigit():
        number = int(seq)
        find = bisect.bisect_left if it_type == "AT_SEQUENCE_NUMBER" else bisect.bisect_right
        return find(records, number, key=lambda r: int(r["SequenceNumber"]))
    return _original_start_position(records, it_type, seq, at_ts)


def _sweep_iterators() -> None:
    """MiniStack's sweep of expired shard iterators, at most every ``ITERATOR_SWEEP_S``."""
    _sweep_if_due(time.monotonic())


def _sweep_if_due(now: float) -> bool:
    global _last_sweep  # noqa: PLW0603 - the sweep's own clock
    if now - _last_sweep < ITERATOR_SWEEP_S:
        return False
    _last_sweep = now
    _original_expire_iterators()
    return True


def _freeze_survivors() -> None:
    """Once a second, move every object that survived so far out of the collector's way."""
    while True:
        time.sleep(FREEZE_EVERY_S)
        gc.freeze()


def _kinesis_action(
    iot: Any, kinesis: Any, account_id: str, region: str, spec: dict[str, Any], event: Any
) -> None:
    """IoT Core's Kinesis rule action (see the module docstring); raises when the record is not put."""
    topic, payload, client_id = _rule_message.get()
    message = iot._rule_message(payload)

    def substitute(match: re.Match[str]) -> str:
        value = iot._eval_select_expr(match.group(1), topic, payload, message, client_id)
        return "" if value is iot._MISSING else str(value)

    template = spec.get("partitionKey")
    key = _TEMPLATE.sub(substitute, template) if template else str(uuid.uuid4())
    if isinstance(event, bytes | str):
        data = event.encode() if isinstance(event, str) else event
    else:
        data = json.dumps(event, separators=(",", ":")).encode()
    name = spec.get("streamName", "")
    with iot.request_scope(account_id, region):
        stream = kinesis._streams.get(name)
        if not stream or not key or not kinesis.put_record_internal(stream["StreamARN"], key, data):
            raise RuntimeError(f"Kinesis PutRecord to stream {name!r} with partition key {key!r} failed")


def _remembering_the_message(run: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """MiniStack's ``_run_rule_actions``, with the message it runs for readable by the actions."""

    async def run_rule_actions(
        account_id: str, region: str, rule: Any, payload: bytes, topic: str = "", client_id: str | None = None
    ) -> None:
        token = _rule_message.set((topic, payload or b"", client_id))
        try:
            await run(account_id, region, rule, payload, topic, client_id)
        finally:
            _rule_message.reset(token)

    return run_rule_actions


def _with_kinesis(iot: Any, kinesis: Any) -> Callable[..., Awaitable[None]]:
    """MiniStack's ``_dispatch_rule_action``, plus the Kinesis action."""
    dispatch = iot._dispatch_rule_action

    async def dispatch_rule_action(
        account_id: str, region: str, rule_name: str, action: Any, event: Any
    ) -> None:
        if "kinesis" in action:
            _kinesis_action(iot, kinesis, account_id, region, action["kinesis"] or {}, event)
        else:
            await dispatch(account_id, region, rule_name, action, event)

    return dispatch_rule_action


def main() -> None:
    from ministack.services import iot, kinesis  # noqa: PLC0415 - MiniStack's venv only

    global _original_start_position, _original_expire_iterators
    _original_start_position, _original_expire_iterators = kinesis._start_position, kinesis._expire_iterators
    kinesis._expire_records = _expire_prefix
    kinesis._start_position = _position_of
    kinesis._expire_iterators = _sweep_iterators
    iot._run_rule_actions = _remembering_the_message(iot._run_rule_actions)
    iot._dispatch_rule_action = _with_kinesis(iot, kinesis)
    threading.Thread(target=_freeze_survivors, name="freeze-survivors", daemon=True).start()
    from ministack.app import main as serve  # noqa: PLC0415 - after the patch

    serve()


if __name__ == "__main__":
    main()
