"""MQTT publisher (paho-mqtt 2.x): QoS 1 to the Basic Ingest topic
``$aws/rules/{rule}/wearables/{deviceId}/telemetry`` (``service.runtime.ingest_topic``) over TLS with client
certificates, AWS IoT Core style.

Contract:

- ``sent`` counts messages the broker acknowledged (PUBACK); ``publish`` returns only when every message
  of the call is acknowledged or counted ``failed`` because no PUBACK arrived on its connection for
  ``ack_timeout_s`` (such a message may still reach the broker later). ``retried`` counts messages that
  were unacknowledged when their connection dropped: paho re-sends them (DUP) after it reconnects, with
  back-off between ``reconnect_min_s`` and ``reconnect_max_s``.
- Per-device order: all messages of a device go over one connection, in call order.
- Shared certificate (``cert``/``key``): devices are spread over at most ``connections`` connections by a
  stable hash of the device id. Per-device certificates (``cert_dir`` holding ``{deviceId}.crt`` and
  ``{deviceId}.key``): each device connects with its own certificate and client id = device id, at most
  ``connections`` at once (least recently used is drained and closed first); a device without both files
  has its messages counted as failed. A broker that lets each certificate publish only to its own
  topic (IoT Core's device policy, ``infra/mosquitto``) needs ``cert_dir``. MQTT 3.1.1 cannot refuse
  a PUBLISH: Mosquitto acknowledges a message its ACL drops, so that message counts as sent.
- ``rate`` caps messages per second over all connections (0 = unlimited).
- In flight: at most ``max_in_flight`` unacknowledged messages per connection.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from service.runtime.adapters.pacing import TokenBucket
from service.runtime.ingest_topic import DEFAULT_RULE, telemetry_topic
from service.runtime.publishing import Message, PublishReport


@dataclass(frozen=True, slots=True)
class MqttOptions:
    """Where and how to connect. ``ca`` None means plain TCP (a local broker without TLS)."""

    host: str
    port: int = 8883
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    cert_dir: Path | None = None
    connections: int = 4
    rate: float = 0.0  # messages per second over all connections; 0 = unlimited
    max_in_flight: int = 100
    ack_timeout_s: float = 30.0
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    rule: str = DEFAULT_RULE  # the IoT rule named in the topic


class _Connection:
    """One paho client with its network thread, counting PUBACKs of its QoS 1 publishes.

    Order across reconnects: paho re-sends the unacknowledged messages right after the CONNACK, in the
    network thread, while a new publish from another thread could go out first. So a new message is
    published only while connected and once every message unacknowledged at the last disconnect has
    been acknowledged (the ``_resend`` barrier)."""

    def __init__(self, options: MqttOptions, client_id: str, cert: Path | None, key: Path | None) -> None:
        self._options = options
        self._done = threading.Condition()
        self._unacked: set[int] = set()
        self._early: set[int] = set()  # PUBACKs that arrived before publish() returned their mid
        self._abandoned: set[int] = set()
        self._resend: set[int] = set()  # unacknowledged at the last disconnect: re-sent by paho first
        self._connected = False
        self._stalled = False  # a wait timed out while disconnected: fail fast until connected again
        self._progress = 0  # PUBACKs and connects seen, for the ack timeout
        self.report = PublishReport()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
        )
        if options.ca is not None:
            client.tls_set(
                ca_certs=str(options.ca),
                certfile=str(cert) if cert else None,
                keyfile=str(key) if key else None,
            )
        client.max_inflight_messages_set(options.max_in_flight)
        client.reconnect_delay_set(options.reconnect_min_s, options.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        client.connect_async(options.host, options.port, options.keepalive_s)
        client.loop_start()
        self._client = client

    def _on_connect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        with self._done:
            if not reason.is_failure:
                self._connected = True
                self._stalled = False
                self._progress += 1
                self._done.notify_all()

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, *_rest: Any) -> None:
        with self._done:
            self._progress += 1
            if mid in self._unacked:
                self._unacked.discard(mid)
                self.report.sent += 1
            elif mid in self._abandoned:
                self._abandoned.discard(mid)
            else:
                self._early.add(mid)
            self._done.notify_all()

    def _on_disconnect(self, *_args: Any) -> None:
        with self._done:
            self._connected = False
            self._resend = set(self._unacked)
            self.report.retried += len(self._unacked)

    def _may_send(self) -> bool:
        return (
            self._connected
            and len(self._unacked) < self._options.max_in_flight
            and not self._resend & self._unacked
        )

    def send(self, message: Message) -> None:
        if not self._wait(self._may_send):
            with self._done:
                self.report.failed += 1
            return
        info = self._client.publish(
            telemetry_topic(message.device_id, self._options.rule), message.payload, qos=1
        )
        with self._done:
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                self.report.failed += 1
            elif info.mid in self._early:
                self._early.discard(info.mid)
                self.report.sent += 1
            else:
                self._unacked.add(info.mid)
                if info.rc == mqtt.MQTT_ERR_NO_CONN:  # disconnected meanwhile: paho re-sends it first
                    self._resend.add(info.mid)

    def drain(self) -> PublishReport:
        """Wait for every PUBACK (or the ack timeout); return and reset the counts."""
        self._wait(lambda: not self._unacked)
        with self._done:
            report, self.report = self.report, PublishReport()
        return report

    def _wait(self, ready: Callable[[], bool]) -> bool:
        """Wait until ``ready()``. When neither a PUBACK nor a connect happens for the ack timeout,
        count the unacknowledged messages as failed, stop waiting for them and return False."""
        with self._done:
            while not ready():
                if self._stalled:
                    return False
                seen = self._progress
                self._done.wait_for(
                    lambda: ready() or self._progress > seen,  # noqa: B023 - called before the loop moves on
                    timeout=self._options.ack_timeout_s,
                )
                if not ready() and self._progress == seen:
                    self.report.failed += len(self._unacked)
                    self._abandoned |= self._unacked
                    self._unacked.clear()
                    self._stalled = not self._connected
                    return False
            return True

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class MqttPublisher:
    """``Publisher`` onto an MQTT broker (see the module contract)."""

    def __init__(self, options: MqttOptions) -> None:
        if options.connections < 1:
            raise ValueError(f"--mqtt-connections must be >= 1, got {options.connections}")
        self._options = options
        self._shared: dict[int, _Connection] = {}
        self._per_device: OrderedDict[str, _Connection] = OrderedDict()
        self._bucket = TokenBucket(options.rate)

    def publish(self, messages: Sequence[Message]) -> PublishReport:
        report = PublishReport()
        if self._options.cert_dir is None:
            for message in messages:
                self._pace()
                self._shared_connection(message.device_id).send(message)
        else:
            for device_id, own in _by_device(messages).items():
                connection = self._device_connection(device_id, report)
                if connection is None:
                    report.failed += len(own)
                    continue
                for message in own:
                    self._pace()
                    connection.send(message)
        for connection in (*self._shared.values(), *self._per_device.values()):
            report.add(connection.drain())
        return report

    def close(self) -> None:
        for connection in (*self._shared.values(), *self._per_device.values()):
            connection.drain()
            connection.close()
        self._shared.clear()
        self._per_device.clear()

    def _pace(self) -> None:
        wait = self._bucket.reserve(1)
        if wait > 0:
            time.sleep(wait)

    def _shared_connection(self, device_id: str) -> _Connection:
        index = zlib.crc32(device_id.encode("utf-8")) % self._options.connections
        connection = self._shared.get(index)
        if connection is None:
            client_id = f"vitalstream-sim-{os.getpid()}-{index}"
            connection = _Connection(self._options, client_id, self._options.cert, self._options.key)
            self._shared[index] = connection
        return connection

    def _device_connection(self, device_id: str, report: PublishReport) -> _Connection | None:
        connection = self._per_device.get(device_id)
        if connection is not None:
            self._per_device.move_to_end(device_id)
            return connection
        assert self._options.cert_dir is not None
        cert = self._options.cert_dir / f"{device_id}.crt"
        key = self._options.cert_dir / f"{device_id}.key"
        if not (cert.is_file() and key.is_file()):
            return None
        if len(self._per_device) >= self._options.connections:
            _, evicted = self._per_device.popitem(last=False)
            report.add(evicted.drain())
            evicted.close()
        connection = _Connection(self._options, device_id, cert, key)
        self._per_device[device_id] = connection
        return connection


def _by_device(messages: Sequence[Message]) -> dict[str, list[Message]]:
    grouped: dict[str, list[Message]] = {}
    for message in messages:
        grouped.setdefault(message.device_id, []).append(message)
    return grouped
