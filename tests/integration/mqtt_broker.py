"""A real Mosquitto for tests, run from the shipped configuration.

``make_pki`` runs ``infra/mosquitto/make-certs``, the helper users run: a throwaway CA, a broker
certificate for 127.0.0.1, the bridge's certificate, one certificate per device, and the broker
directory with ``infra/mosquitto/vitalstream.conf`` and ``vitalstream.acl`` in it. ``Mosquitto`` starts
that ``mosquitto.conf`` with two changes only: its listener moves from 8883 on every interface to a free
port on 127.0.0.1, and a header in front runs the broker as the current user with persistence and its
log in the work directory. Identity (certificate CN = user name) and the ACL are the shipped ones.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from service.tools.emulators import free_port
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
MAKE_CERTS = ROOT / "infra" / "mosquitto" / "make-certs"
SHIPPED_LISTENER = re.compile(r"^listener 8883$", re.MULTILINE)
BRIDGE_IDENTITY = "vitalstream-bridge"  # the CN make-certs gives the bridge, the ACL's `user` line


@dataclass(frozen=True)
class Pki:
    """The directory ``make-certs`` wrote (see its usage text for the layout)."""

    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca.crt"

    @property
    def broker_config(self) -> Path:
        return self.root / "broker" / "mosquitto.conf"

    @property
    def devices(self) -> Path:
        """One ``{deviceId}.crt`` / ``{deviceId}.key`` per device: the simulator's ``--mqtt-cert-dir``."""
        return self.root / "devices"

    @property
    def bridge_cert(self) -> Path:
        return self.root / "bridge" / f"{BRIDGE_IDENTITY}.crt"

    @property
    def bridge_key(self) -> Path:
        return self.root / "bridge" / f"{BRIDGE_IDENTITY}.key"

    def cert(self, device: str) -> Path:
        return self.devices / f"{device}.crt"

    def key(self, device: str) -> Path:
        return self.devices / f"{device}.key"


def make_pki(directory: Path, devices: list[str]) -> Pki:
    """Run the shipped ``make-certs`` for a broker on 127.0.0.1 (skips when openssl is missing)."""
    require_tool("openssl", "openssl")
    subprocess.run(
        [str(MAKE_CERTS), str(directory), "127.0.0.1", *devices], check=True, capture_output=True, timeout=120
    )
    return Pki(directory.resolve())


@dataclass
class Mosquitto:
    """One broker on 127.0.0.1:``port`` from the shipped configuration, with persistence in
    ``workdir``; ``stop`` then ``start`` restarts it on the same port with the same persisted sessions."""

    binary: str
    workdir: Path
    pki: Pki
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "mosquitto.log"

    def config(self) -> Path:
        shipped = self.pki.broker_config.read_text()
        local, listeners = SHIPPED_LISTENER.subn(f"listener {self.port} 127.0.0.1", shipped)
        assert listeners == 1, f"expected one 'listener 8883' line in {self.pki.broker_config}"
        user = pwd.getpwuid(os.geteuid()).pw_name  # run as root, mosquitto would switch to "mosquitto"
        header = (
            f"user {user}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "",
        )
        path = self.workdir / "mosquitto.conf"
        path.write_text("\n".join(header) + local)
        return path

    def start(self, timeout_s: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config())], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited: {self.process.stderr.read().decode() if self.process.stderr else ''}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file on the way out), then wait."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout_s)
        finally:
            if self.process.stderr:
                self.process.stderr.close()


def publish_each(
    broker: Mosquitto,
    cert: Path,
    key: Path,
    messages: list[tuple[str, bytes]],
    *,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    client_id: str = "",
    timeout_s: float = 10.0,
) -> list[str]:
    """Connect with ``cert``, publish each (topic, payload) at QoS 1 and wait for its PUBACK before the
    next one; return the PUBACK reason codes ("Success", "Not authorized", ...). MQTT 3.1.1 has no
    refusal in PUBACK, so under it every code is "Success"."""
    acked: dict[int, str] = {}
    connected = threading.Event()
    done = threading.Condition()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        if not reason.is_failure:
            connected.set()

    def on_publish(_c: mqtt.Client, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        with done:
            acked[mid] = str(reason)
            done.notify_all()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    client.tls_set(ca_certs=str(broker.pki.ca), certfile=str(cert), keyfile=str(key))
    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert connected.wait(timeout_s), f"no CONNACK within {timeout_s} s"
        codes: list[str] = []
        for topic, payload in messages:
            mid = client.publish(topic, payload, qos=1).mid
            with done:
                assert done.wait_for(lambda: mid in acked, timeout_s), f"no PUBACK for {topic}"  # noqa: B023 - waited on at once
                codes.append(acked[mid])
        return codes
    finally:
        client.disconnect()
        client.loop_stop()
