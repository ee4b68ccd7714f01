"""infra/mosquitto: what make-certs writes, and docs/self-hosted-mqtt.md checked against it.

make-certs runs for real (bash + openssl). The doc's commands are checked the way
tests/unit/test_deploy_doc.py checks docs/deploy.md: its make-certs line is run, the files every other
line names must then exist, and its `vitalstream` lines parse with the real CLI parser. That the broker
enforces the ACL is proven in tests/integration/test_mqtt_bridge.py."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from pathlib import Path

import pytest

from service.cli import build_parser
from service.core.telemetry import DEVICE_ID_PATTERN
from simulator.fleet import Fleet
from tests.doc_commands import bash_lines
from tests.observability import ROOT
from tests.tools import require_tool

MOSQUITTO_DIR = ROOT / "infra" / "mosquitto"
MAKE_CERTS = MOSQUITTO_DIR / "make-certs"
SHIPPED_CONF = MOSQUITTO_DIR / "vitalstream.conf"
SHIPPED_ACL = MOSQUITTO_DIR / "vitalstream.acl"
SHIPPED_DIR = "/etc/mosquitto/vitalstream"
DOC = ROOT / "docs" / "self-hosted-mqtt.md"
README = ROOT / "README.md"
FILE_OPTIONS = ("cafile", "certfile", "keyfile", "acl_file")


def make_certs(out: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    require_tool("openssl", "openssl")
    return subprocess.run(
        [str(MAKE_CERTS), str(out), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def openssl(*args: str) -> str:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout


def conf_files(text: str) -> dict[str, str]:
    """The file each of ``FILE_OPTIONS`` names in a mosquitto.conf."""
    return dict(re.findall(rf"^({'|'.join(FILE_OPTIONS)}) (\S+)$", text, flags=re.MULTILINE))


def option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


# --- make-certs ---------------------------------------------------------------------------------


def test_the_broker_directory_holds_the_shipped_config_pointed_at_it(tmp_path: Path) -> None:
    done = make_certs(tmp_path / "pki", "127.0.0.1", "dev-A")
    assert done.returncode == 0, done.stderr
    broker = tmp_path / "pki" / "broker"
    rendered = (broker / "mosquitto.conf").read_text()
    assert rendered == SHIPPED_CONF.read_text().replace(SHIPPED_DIR, str(broker))
    assert (broker / "vitalstream.acl").read_text() == SHIPPED_ACL.read_text()
    files = conf_files(rendered)
    assert sorted(files) == sorted(FILE_OPTIONS)
    assert all(Path(path).is_file() and Path(path).parent == broker for path in files.values())
    assert {Path(path).parent for path in conf_files(SHIPPED_CONF.read_text()).values()} == {
        Path(SHIPPED_DIR)
    }


def test_certificates_name_the_device_the_bridge_and_the_broker(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert make_certs(pki, "127.0.0.1,broker.example.org", "dev-A").returncode == 0
    ca = str(pki / "ca.crt")
    device, bridge, broker = (
        pki / "devices/dev-A.crt",
        pki / "bridge/vitalstream-bridge.crt",
        pki / "broker/broker.crt",
    )
    assert openssl("x509", "-in", str(device), "-noout", "-subject").strip() == "subject=CN = dev-A"
    # The ACL names the bridge by the CN its certificate carries.
    (acl_user,) = re.findall(r"^user (\S+)$", SHIPPED_ACL.read_text(), flags=re.MULTILINE)
    assert openssl("x509", "-in", str(bridge), "-noout", "-subject").strip() == f"subject=CN = {acl_user}"
    assert "IP Address:127.0.0.1, DNS:broker.example.org" in openssl(
        "x509", "-in", str(broker), "-noout", "-ext", "subjectAltName"
    )
    for cert, purpose in ((device, "sslclient"), (bridge, "sslclient"), (broker, "sslserver")):
        assert openssl("verify", "-CAfile", ca, "-purpose", purpose, str(cert)).strip() == f"{cert}: OK"
    # A device certificate is no server certificate, and the reverse.
    refused = subprocess.run(
        ["openssl", "verify", "-CAfile", ca, "-purpose", "sslserver", str(device)],
        capture_output=True,
        check=False,
    )
    assert refused.returncode != 0


def test_a_second_run_keeps_every_key_and_certificate_and_adds_devices(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert make_certs(pki, "127.0.0.1", "dev-A").returncode == 0
    before = {path: path.read_bytes() for path in pki.rglob("*") if path.suffix in (".crt", ".key")}
    again = make_certs(pki, "127.0.0.1", "dev-A", "dev-B")
    assert again.returncode == 0, again.stderr
    assert all(path.read_bytes() == data for path, data in before.items())
    assert (pki / "devices/dev-B.crt").is_file()
    assert oct((pki / "devices/dev-B.key").stat().st_mode & 0o777) == "0o600"
    ca = str(pki / "ca.crt")
    assert openssl("verify", "-CAfile", ca, str(pki / "devices/dev-B.crt")).strip().endswith(": OK")


def test_no_private_key_is_readable_by_others_and_the_brokers_user_reads_the_brokers(tmp_path: Path) -> None:
    """As root, Mosquitto reads its key after dropping to its user: make-certs gives that user's group
    the broker's key (0640) and nothing else; as another user, every key stays 0600."""
    assert make_certs(tmp_path / "pki", "127.0.0.1", "dev-A").returncode == 0
    keys = sorted((tmp_path / "pki").rglob("*.key"))
    assert len(keys) == 4
    assert all(key.stat().st_mode & 0o007 == 0 for key in keys), "a private key readable by others"
    broker_key = tmp_path / "pki" / "broker" / "broker.key"
    others = [key for key in keys if key != broker_key]
    assert all(key.stat().st_mode & 0o777 == 0o600 for key in others)
    try:
        broker_user = pwd.getpwnam("mosquitto")
    except KeyError:
        broker_user = None
    if os.geteuid() != 0 or broker_user is None:
        assert broker_key.stat().st_mode & 0o777 == 0o600
        return
    assert broker_key.stat().st_mode & 0o777 == 0o640
    assert (broker_key.stat().st_uid, broker_key.stat().st_gid) == (0, broker_user.pw_gid)


def test_make_certs_checks_device_ids_by_the_telemetry_contract() -> None:
    (rule,) = re.findall(r"\$device =~ \^(.+)\$ \]\]", MAKE_CERTS.read_text())
    assert rule == DEVICE_ID_PATTERN.pattern


@pytest.mark.parametrize("device", ["a/b", "dev A", "dev+", "dev#", "", "x" * 129, "vitalstream-bridge"])
def test_what_is_not_a_device_id_is_refused_before_anything_is_written(tmp_path: Path, device: str) -> None:
    done = make_certs(tmp_path / "pki", "127.0.0.1", device)
    assert done.returncode == 2
    assert "make-certs:" in done.stderr
    assert not (tmp_path / "pki").exists()


# --- docs/self-hosted-mqtt.md -------------------------------------------------------------------


def test_the_documented_commands_fit_together(tmp_path: Path) -> None:
    """Run the doc's make-certs line; every mqtt/… file the other lines name must then exist."""
    lines = bash_lines(DOC.read_text())
    (make,) = [words for words in lines if words[0] == "infra/mosquitto/make-certs"]
    done = make_certs(Path(make[1]), *make[2:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    named = {word for words in lines for word in words if word.startswith(make[1] + "/")}
    assert named, "the doc names no file make-certs writes"
    assert sorted(word for word in named if not (tmp_path / word).exists()) == []
    repository = {word for words in lines for word in words if word.startswith("infra/")}
    assert all((ROOT / word).exists() for word in repository)


def test_the_simulated_devices_have_certificates(tmp_path: Path) -> None:
    lines = bash_lines(DOC.read_text())
    (make,) = [words for words in lines if words[0] == "infra/mosquitto/make-certs"]
    (simulate,) = [words for words in lines if words[:2] == ["vitalstream", "simulate"]]
    ids = Fleet(int(option(simulate, "--devices")), 0, 0, 5_000).ids
    assert make[3:] == ids


def test_the_vitalstream_lines_parse_with_the_real_cli() -> None:
    lines = [words for words in bash_lines(DOC.read_text()) if words[0] == "vitalstream"]
    assert {words[1] for words in lines} == {"bridge", "simulate"}
    parser = build_parser()
    for words in lines:
        parser.parse_args(words[1:])


def test_the_debian_install_lines_put_the_files_where_the_shipped_config_reads_them() -> None:
    lines = bash_lines(DOC.read_text())
    installs = [words for words in lines if words[:2] == ["sudo", "install"] and "-d" not in words]
    broker_files = next(words for words in installs if any(w.startswith("mqtt/broker/") for w in words))
    assert broker_files[-1].rstrip("/") == SHIPPED_DIR
    installed = {Path(word).name for word in broker_files if word.startswith("mqtt/broker/")}
    assert {Path(path).name for path in conf_files(SHIPPED_CONF.read_text()).values()} <= installed
    assert [
        "sudo",
        "install",
        "-m",
        "0644",
        "infra/mosquitto/vitalstream.conf",
        "/etc/mosquitto/conf.d/",
    ] in installs


def test_the_readme_shows_the_three_commands() -> None:
    doc, readme = bash_lines(DOC.read_text()), bash_lines(README.read_text())
    three = doc[:3]
    assert [words[0] for words in three] == ["infra/mosquitto/make-certs", "mosquitto", "vitalstream"]
    assert all(words in readme for words in three)
