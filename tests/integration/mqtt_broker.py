"""A real Mosquitto for tests: a throwaway PKI (CA, server certificate for 127.0.0.1/localhost, client
certificates with CN = client name) and a broker process on 127.0.0.1 with mutual TLS and persistence."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from service.demo.replicas import free_port

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")


def mosquitto_binary() -> str | None:
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    directory: Path  # holds {name}.crt / {name}.key for every client

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
    key_path = path.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path.with_suffix(".crt"), key_path


def _issue(
    subject: str,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name if ca else issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        sans = [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return key, builder.sign(key if ca else signer, hashes.SHA256())


def make_pki(directory: Path, clients: list[str]) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _issue(
        "vitalstream-test-ca", x509.Name([]), ec.generate_private_key(ec.SECP256R1()), ca=True
    )
    ca_path, _ = _write(directory / "ca", ca_key, ca_cert)
    server_cert, server_key = _write(
        directory / "server", *_issue("127.0.0.1", ca_cert.subject, ca_key, server=True)
    )
    for client in clients:
        _write(directory / client, *_issue(client, ca_cert.subject, ca_key))
    return Pki(ca_path, server_cert, server_key, directory)


@dataclass
class Mosquitto:
    """One broker on 127.0.0.1:``port`` with mTLS (CN = username) and persistence in ``workdir``;
    ``stop`` then ``start`` restarts it on the same port with the same persisted sessions."""

    binary: str
    workdir: Path
    pki: Pki
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def config(self) -> Path:
        user = pwd.getpwuid(os.geteuid()).pw_name  # run as root, mosquitto would switch to "mosquitto"
        path = self.workdir / "mosquitto.conf"
        path.write_text(
            "\n".join(
                (
                    f"user {user}",
                    "persistence true",
                    f"persistence_location {self.workdir}/",
                    "max_inflight_messages 1000",
                    "max_queued_messages 100000",
                    f"log_dest file {self.workdir}/mosquitto.log",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    f"listener {self.port} 127.0.0.1",
                    f"cafile {self.pki.ca}",
                    f"certfile {self.pki.server_cert}",
                    f"keyfile {self.pki.server_key}",
                    "require_certificate true",
                    "use_identity_as_username true",
                    "",
                )
            )
        )
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
