"""The bridge behind ``vitalstream bridge`` (its flags: ``service.cli.bridge``): the local stand-in
for the IoT rule, from an MQTT broker to Kinesis.

Contract:

- Subscribes ``$aws/rules/{rule}/wearables/+/telemetry`` (``ingest_topic``: the Basic Ingest topic
  devices publish to on IoT Core, so one firmware serves both) with QoS 1 as a persistent session
  (clean session off, fixed ``--client-id``), so messages the bridge has not acknowledged survive a
  restart of the bridge or, with broker persistence, of the broker, and are delivered again.
- The device id comes from the topic (the routing is ``bridge_routing``, pure; this module is the MQTT
  loop around it). A payload whose ``deviceId`` differs from it, or that has no readable ``deviceId``
  (not UTF-8 JSON, not an object, missing, not a string), goes to the dead-letter store and is never
  forwarded. That the topic is the publisher's own is the broker's to enforce, as IoT Core's device
  policy does: ``infra/mosquitto`` ships that ACL for Mosquitto (docs/self-hosted-mqtt.md). With both,
  a device cannot speak for another.
- Everything else is forwarded to Kinesis unchanged, partition key = topic device id, in batches of up to
  ``--batch-size`` messages or after ``--linger-ms``, whichever comes first; Kinesis retries go on until
  the stream accepts (a non-retryable error stops the bridge with exit code 1).
- A message is acknowledged (PUBACK) only after Kinesis or the dead-letter store accepted it, and only
  on the connection that delivered it: at-least-once. A message forwarded just before a disconnect is
  delivered again after the reconnect, hence a duplicate — the processing core is idempotent.
- The broker bounds how many unacknowledged messages the bridge holds (Mosquitto's
  ``max_inflight_messages``, 20 by default): set it to at least ``--batch-size`` or batches stay small.
- SIGINT/SIGTERM: forward and acknowledge what was received, then disconnect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.core import Reject
from service.runtime.bridge_routing import flush_due, route
from service.runtime.ingest_topic import DEFAULT_RULE, topic_filter
from service.runtime.publishing import Message

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
    from mypy_boto3_kinesis.client import KinesisClient

    from service.runtime.ports import DeadLetterStore


DEFAULT_CLIENT_ID = "vitalstream-bridge"
DEFAULT_BATCH_SIZE = 500
DEFAULT_LINGER_MS = 200
_LOOP_TIMEOUT_S = 0.05
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A received message: its MQTT packet id, the connection (session number) that delivered it, and
    the routing decision."""

    mid: int
    connection: int
    routed: Message | Reject
    received_ms: int


@dataclass(slots=True)
class BridgeCounts:
    forwarded: int = 0
    dead_lettered: int = 0
    acknowledged: int = 0
    reconnects: int = 0


# --- MQTT and Kinesis glue --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    host: str
    port: int
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    client_id: str = DEFAULT_CLIENT_ID
    keepalive_s: int = 30


class Bridge:
    """Runs until ``stop()`` (thread-safe; also what SIGINT/SIGTERM call). See the module contract."""

    def __init__(
        self,
        broker: BrokerOptions,
        kinesis: KinesisClient,
        stream_name: str,
        dead_letters: DeadLetterStore,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        linger_ms: int = DEFAULT_LINGER_MS,
        rule: str = DEFAULT_RULE,
        wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        from service.runtime.adapters.kinesis_writer import KinesisPublisher  # noqa: PLC0415 - boto3 on demand
        from service.runtime.adapters.pacing import Backoff  # noqa: PLC0415 - as above

        self._broker = broker
        self._forwarder = KinesisPublisher(kinesis, stream_name, max_attempts=None, sleep=self._pump)
        self._dead_letters = dead_letters
        self._batch_size = batch_size
        self._linger_ms = linger_ms
        self._rule = rule
        self._wall_clock_ms = wall_clock_ms
        self._reconnect = Backoff(base_s=0.2, cap_s=5.0)
        self._stopping = threading.Event()
        self._pending: list[Inbound] = []
        self._connection = 0  # incremented on every accepted CONNECT: acks never cross connections
        self._connected = False
        self._subscribed = False
        self._next_sequence = time.time_ns()  # unique dead-letter positions across restarts
        self.counts = BridgeCounts()
        self._client = self._build_client()

    def _build_client(self) -> mqtt.Client:
        import paho.mqtt.client as mqtt  # noqa: PLC0415 - paho on demand
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415 - as above

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._broker.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
            manual_ack=True,
        )
        if self._broker.ca is not None:
            client.tls_set(
                ca_certs=str(self._broker.ca),
                certfile=str(self._broker.cert) if self._broker.cert else None,
                keyfile=str(self._broker.key) if self._broker.key else None,
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def stop(self) -> None:
        self._stopping.set()

    @property
    def ready(self) -> bool:
        """Connected and subscribed: messages published from now on reach the bridge."""
        return self._connected and self._subscribed

    def run(self) -> None:
        """Connect, forward until stopped, then flush, acknowledge and disconnect. Raises
        ``PublishError`` when Kinesis refuses for good (e.g. no such stream)."""
        failures = 0
        try:
            while not self._stopping.is_set():
                if not self._connected and not self._try_connect():
                    failures += 1
                    self._stopping.wait(self._reconnect.delay(failures))
                    continue
                failures = 0
                if self._client.loop(timeout=_LOOP_TIMEOUT_S) != 0:
                    self._connected = False
                oldest = self._pending[0].received_ms if self._pending else None
                if flush_due(len(self._pending), oldest, self._now_ms(), self._batch_size, self._linger_ms):
                    self._flush()
            self._flush()
            self._pump(_LOOP_TIMEOUT_S * 2)  # let the last PUBACKs go out
        finally:
            self._client.disconnect()

    def _try_connect(self) -> bool:
        try:
            self._client.connect(self._broker.host, self._broker.port, self._broker.keepalive_s)
        except OSError as exc:
            log.warning("bridge: broker %s:%s unreachable: %s", self._broker.host, self._broker.port, exc)
            return False
        deadline = time.monotonic() + 5.0
        while not self._connected and time.monotonic() < deadline and not self._stopping.is_set():
            if self._client.loop(timeout=_LOOP_TIMEOUT_S) != 0:
                return False
        return self._connected

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("bridge: broker refused the connection: %s", reason)
            return
        self._connection += 1
        self._connected = True
        if self._connection > 1:
            self.counts.reconnects += 1
        client.subscribe(topic_filter(self._rule), qos=1)
        log.info(
            "bridge: connected as %s, subscribed to %s", self._broker.client_id, topic_filter(self._rule)
        )

    def _on_subscribe(self, *_args: Any) -> None:
        self._subscribed = True

    def _on_disconnect(self, *_args: Any) -> None:
        self._connected = False
        self._subscribed = False

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._next_sequence += 1
        routed = route(
            message.topic,
            bytes(message.payload),
            arrival_ms=self._wall_clock_ms(),
            sequence_number=str(self._next_sequence),
            rule=self._rule,
        )
        self._pending.append(Inbound(message.mid, self._connection, routed, self._now_ms()))

    def _flush(self) -> None:
        """Forward and dead-letter the pending batch, then acknowledge what was accepted, in order."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        forwards = [(item, item.routed) for item in batch if isinstance(item.routed, Message)]
        rejects = [(item, item.routed) for item in batch if isinstance(item.routed, Reject)]
        delivery = self._forwarder.deliver([message for _, message in forwards])
        accepted = {id(forwards[i][0]) for i in delivery.accepted}
        unsent = self._dead_letter(rejects)
        accepted |= {id(item) for item, _ in rejects if id(item) not in unsent}
        self.counts.forwarded += len(delivery.accepted)
        self.counts.dead_lettered += len(rejects) - len(unsent)
        for item in batch:
            if id(item) in accepted and item.connection == self._connection and self._connected:
                self._client.ack(item.mid, 1)
                self.counts.acknowledged += 1
        # Not stored: keep for the next flush (still unacknowledged, so still owed to the broker).
        self._pending[:0] = [item for item in batch if id(item) not in accepted]

    def _dead_letter(self, rejects: list[tuple[Inbound, Reject]]) -> set[int]:
        """Store the rejects; return the ids of the ``Inbound`` items the store did not take."""
        if not rejects:
            return set()
        from service.runtime.ports import SinkError  # noqa: PLC0415 - keeps the module import light
        from service.runtime.sink_health import cause_fields  # noqa: PLC0415 - as above

        try:
            failed = self._dead_letters.put([reject for _, reject in rejects])
        except SinkError as exc:
            log.warning(
                "bridge: dead-letter store refused %d rejects: %s", len(rejects), exc, extra=cause_fields(exc)
            )
            return {id(item) for item, _ in rejects}
        failed_ids = {id(reject) for reject in failed}
        return {id(item) for item, reject in rejects if id(reject) in failed_ids}

    def _pump(self, seconds: float) -> None:
        """Keep the MQTT connection serviced (keepalive, incoming messages) for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._connected:
                if self._client.loop(timeout=min(remaining, _LOOP_TIMEOUT_S)) != 0:
                    self._connected = False
            else:
                time.sleep(min(remaining, _LOOP_TIMEOUT_S))

    @staticmethod
    def _now_ms() -> int:
        return time.monotonic_ns() // 1_000_000


# --- the command ------------------------------------------------------------------------------
