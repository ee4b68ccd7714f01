"""The consumer image, for real: the Dockerfile's properties read from the file, then the image built
from it, unmodified, by the Docker engine (``tests/containers/images.py``) and run as it ships —
numeric non-root user, read-only root filesystem, no network but loopback.

Needs a Docker engine (``python -m tests.containers.engine start``; Debian's ``docker.io``) and, where
no ``python:3.11-slim`` can be pulled, ``debootstrap`` for the stand-in base. Without them the tests
that run the image skip with the reason (fail under ``VITALSTREAM_REQUIRE_TOOLS``).

The short ``consume`` reaches the session's emulator through a unix socket: the host relays a socket
file in a bind-mounted directory to the emulator's loopback port, and a relay container (the same
image, running ``tests/containers/relay.py``) offers that file as ``127.0.0.1:4566`` inside a network
namespace that the consumer's container shares (``--network container:<relay>``).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest

from service.tools.emulator import EMULATOR_KEY
from service.tools.packaging.lock import RUNTIME_LOCK, canonical, read_lock, versions
from service.tools.provisioning import provision_stack
from tests.containers import engine, images
from tests.containers.relay import Relay
from tests.events import LIVE_T0_MS, sample
from tests.integration.dockerfile import DockerIgnore, Stage, parse_dockerfile
from tests.tools import missing

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STAGES = parse_dockerfile((ROOT / "Dockerfile").read_text())
IGNORE = DockerIgnore.parse((ROOT / ".dockerignore").read_text())
VENV = "/opt/venv"
CODE = ("service/__init__.py", "service/core", "service/runtime", "service/cli", "lambda_shim")
RELAY = ROOT / "tests" / "containers" / "relay.py"
RELAY_PORT = 4566
RUN_TIMEOUT_S = 120


def builder() -> Stage:
    return STAGES[0]


def runtime() -> Stage:
    return STAGES[-1]


def test_no_parser_directive_so_no_frontend_image_is_pulled() -> None:
    first = (ROOT / "Dockerfile").read_text().splitlines()[0]
    assert not re.match(r"#\s*syntax\s*=", first, re.IGNORECASE)


def test_two_stages_and_the_runtime_copies_only_the_environment() -> None:
    assert len(STAGES) == 2
    assert builder().name == "builder"
    assert runtime().base == builder().base
    assert re.fullmatch(r"python:3\.\d+-slim", runtime().base)
    assert not runtime().of("RUN")
    copies = [i.arguments.split() for i in runtime().of("COPY")]
    assert copies == [["--from=builder", VENV, VENV]]


def test_the_runtime_runs_as_a_numeric_non_root_user() -> None:
    (user,) = runtime().of("USER")
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user.arguments)
    assert match is not None, f"USER {user.arguments} is not numeric"
    assert int(match.group(1)) != 0
    assert match.group(2) is None or int(match.group(2)) != 0


def test_the_entrypoint_is_exec_form_so_sigterm_reaches_python() -> None:
    (entrypoint,) = runtime().of("ENTRYPOINT")
    assert entrypoint.exec_form is not None, "shell-form ENTRYPOINT runs under /bin/sh, which eats SIGTERM"
    assert all(cmd.exec_form is not None for cmd in runtime().of("CMD"))
    command = [*entrypoint.exec_form, *(arg for cmd in runtime().of("CMD") for arg in cmd.exec_form or [])]
    assert command[:2] == ["vitalstream", "consume"]
    env = runtime().env()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith(f"{VENV}/bin:")
    assert [i.arguments for i in runtime().of("EXPOSE")] == ["9400"]


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    steps = builder().instructions
    copies = [(index, i.arguments.split()) for index, i in enumerate(steps) if i.keyword == "COPY"]
    installs = [index for index, i in enumerate(steps) if i.keyword == "RUN" and "pip install" in i.arguments]
    first_code = min(index for index, args in copies if args[0] in CODE)
    before_dependencies = [args[0] for index, args in copies if index < installs[0]]

    assert before_dependencies == ["requirements/runtime.lock"], "deps: the lock alone"
    assert "--require-hashes" in steps[installs[0]].arguments
    assert installs[0] < first_code
    assert "--no-deps" in steps[installs[-1]].arguments
    assert installs[-1] > first_code
    assert all("--compile" in steps[index].arguments for index in installs), "byte-compile every layer"


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("pyproject.toml", True),
        ("requirements/runtime.lock", True),
        ("requirements/dev.lock", False),
        ("README.md", True),
        ("service/__init__.py", True),
        ("service/cli/__init__.py", True),
        ("service/core/decode.py", True),
        ("service/runtime/consumer/worker.py", True),
        ("lambda_shim/handler.py", True),
        ("service/tools/replay.py", False),
        ("service/tools/emulators/ministack_server.py", False),
        ("simulator/__init__.py", False),
        ("service/cli/__pycache__/__init__.cpython-311.pyc", False),
        ("service/core/__pycache__/decode.cpython-311.pyc", False),
        ("tests/unit/test_score.py", False),
        (".git", False),
        (".git/HEAD", False),
        ("bench/core.py", False),
        ("docs/performance.md", False),
        (".venv/bin/python", False),
        ("examples/telemetry.jsonl", False),
        ("out/demo-report.json", False),
        ("dist/vitalstream-lambda.zip", False),
        ("vitalstream.egg-info/PKG-INFO", False),
        ("Dockerfile", False),
        (".env", False),
    ],
)
def test_dockerignore_sends_only_the_build_inputs(path: str, sent: bool) -> None:
    assert IGNORE.excluded(path) is not sent


def test_every_copy_source_is_in_the_context() -> None:
    sent = set(IGNORE.context_files(ROOT))
    for instruction in builder().of("COPY"):
        *sources, _ = instruction.arguments.split()
        for source in sources:
            assert source in sent or any(name.startswith(source + "/") for name in sent), source


def docker(*args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [engine.client(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def image() -> str:
    """The project image, built by the engine from the unmodified Dockerfile (cached by BuildKit)."""
    reason = engine.unavailable_reason()
    if reason is not None:
        missing(reason)
    try:
        return images.project()
    except images.ToolMissing as exc:
        missing(str(exc))
        raise


def run_image(image: str, *args: str, network: str = "none") -> subprocess.CompletedProcess[str]:
    """``docker run`` the image as it ships: its own user, read-only root, loopback only."""
    return docker("run", "--rm", "--read-only", "--network", network, image, *args)


def test_the_built_image_runs_as_uid_10001_not_root(image: str) -> None:
    inspected = json.loads(docker("image", "inspect", image).stdout)[0]
    assert inspected["Config"]["User"] == "10001:10001"

    result = docker("run", "--rm", "--read-only", "--network", "none", "--entrypoint", "id", image)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["uid=10001", "gid=10001"]


def test_the_built_image_holds_the_project_as_a_byte_compiled_wheel(image: str) -> None:
    listing = docker(
        *("run", "--rm", "--read-only", "--network", "none", "--entrypoint", "sh", image, "-c"),
        "ls -d /opt/venv/lib/python3.*/site-packages/service/cli/__pycache__/__init__.*.pyc "
        "/opt/venv/lib/python3.*/site-packages/__editable__* /opt/venv/lib/python3.*/site-packages/tests "
        "2>/dev/null; true",
    )
    found = listing.stdout.split()
    assert any("/service/cli/__pycache__/__init__." in path for path in found), listing.stdout
    assert not any("__editable__" in path or path.endswith("/tests") for path in found)


_LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
)


def test_the_built_image_holds_exactly_the_locked_versions(image: str) -> None:
    listed = docker(
        *("run", "--rm", "--read-only", "--network", "none", "--entrypoint", "python", image),
        *("-c", _LIST_DISTRIBUTIONS),
    )
    assert listed.returncode == 0, listed.stderr
    installed = {
        canonical(name): version
        for name, version in json.loads(listed.stdout).items()
        if canonical(name) not in {"vitalstream", "pip"}
    }
    locked = versions(read_lock(RUNTIME_LOCK))
    assert {name: {version} for name, version in installed.items()} == locked


def test_the_built_image_answers_help(image: str) -> None:
    result = run_image(image, "--help")

    assert result.returncode == 0, result.stderr
    assert "consume" in result.stdout


_LIST_PACKAGES = (
    "import pathlib, service; root = pathlib.Path(service.__file__).parent.parent; "
    "print('\\n'.join(sorted(str(p.relative_to(root)) for p in root.glob('**/*.py') "
    "if p.parts[len(root.parts)] in ('service', 'lambda_shim', 'simulator'))))"
)


def test_the_built_image_holds_the_runtime_and_nothing_of_the_tools(image: str) -> None:
    listed = docker(
        *("run", "--rm", "--read-only", "--network", "none", "--entrypoint", "python", image),
        *("-c", _LIST_PACKAGES),
    )
    assert listed.returncode == 0, listed.stderr
    packages = {str(Path(path).parent) for path in listed.stdout.split()}
    assert {
        "service",
        "service/core",
        "service/runtime",
        "service/runtime/consumer",
        "service/cli",
    } <= packages
    assert not {p for p in packages if p.startswith(("service/tools", "simulator"))}, packages


def test_a_tool_command_in_the_image_says_it_is_not_installed(image: str) -> None:
    result = run_image(image, "replay", "--help")

    assert result.returncode == 2
    assert "replay (service.tools.replay) is not installed here" in result.stderr


def test_the_default_command_consume_answers_help(image: str) -> None:
    result = run_image(image, "consume", "--help")

    assert result.returncode == 0, result.stderr
    assert "--stop-after" in result.stdout


@pytest.fixture
def loopback_to(image: str, aws_endpoint: str, tmp_path: Path) -> Iterator[str]:
    """A relay container whose loopback port ``RELAY_PORT`` reaches ``aws_endpoint``: its network
    namespace, ``container:<id>``, for the container under test to join."""
    sockets = tmp_path / "relay"
    sockets.mkdir(mode=0o755)
    sockets.chmod(0o755)
    port = urlsplit(aws_endpoint).port
    assert port is not None
    host_side = Relay.unix_to_tcp(sockets / "aws.sock", port).start()
    name = f"vitalstream-relay-{uuid.uuid4().hex[:8]}"
    started = docker(
        *("run", "--detach", "--rm", "--name", name, "--read-only", "--network", "none"),
        *("--volume", f"{sockets}:/relay", "--volume", f"{RELAY}:/opt/relay.py:ro"),
        *("--entrypoint", f"{VENV}/bin/python", image, "/opt/relay.py"),
        *("tcp-to-unix", str(RELAY_PORT), "/relay/aws.sock"),
    )
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 30
        while "listening" not in docker("logs", name).stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        yield f"container:{name}"
    finally:
        docker("rm", "--force", name)
        host_side.close()


def test_the_default_command_consumes_and_stops_cleanly(
    image: str, aws_endpoint: str, loopback_to: str
) -> None:
    prefix = f"vs-{uuid.uuid4().hex[:8]}"
    stack = provision_stack(prefix, endpoint_url=aws_endpoint, parameters={"NamePrefix": prefix})
    session = boto3.Session(
        aws_access_key_id=EMULATOR_KEY, aws_secret_access_key=EMULATOR_KEY, region_name="us-east-1"
    )
    kinesis = session.client("kinesis", endpoint_url=aws_endpoint)
    stream = stack.environment["VITALSTREAM_STREAM_NAME"]
    for index in range(5):
        record = sample("image-test-device", 10.0 * index, 72, base_ms=LIVE_T0_MS)
        kinesis.put_record(
            StreamName=stream, Data=json.dumps(record).encode(), PartitionKey=record["deviceId"]
        )
    settings = {
        **stack.environment,
        "VITALSTREAM_ENDPOINT_URL": f"http://127.0.0.1:{RELAY_PORT}",
        "AWS_ACCESS_KEY_ID": EMULATOR_KEY,
        "AWS_SECRET_ACCESS_KEY": EMULATOR_KEY,
    }
    env = [arg for key, value in settings.items() for arg in ("--env", f"{key}={value}")]

    result = docker(
        *("run", "--rm", "--read-only", "--network", loopback_to, *env, image),
        *("consume", "--stop-after", "5s"),
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    dynamodb = session.client("dynamodb", endpoint_url=aws_endpoint)
    leases = dynamodb.scan(TableName=stack.environment["VITALSTREAM_LEASE_TABLE"], ConsistentRead=True)
    assert leases["Items"], "the consumer in the container took no lease"
    state = dynamodb.get_item(
        TableName=stack.environment["VITALSTREAM_DEVICE_STATE_TABLE"],
        Key={"deviceId": {"S": "image-test-device"}},
        ConsistentRead=True,
    )
    assert "Item" in state, "the consumer in the container wrote no device state"
