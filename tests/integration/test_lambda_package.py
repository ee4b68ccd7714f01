"""``vitalstream package-lambda`` end to end: real wheels from PyPI, and the unzipped package run by a
clean interpreter that sees only the package and boto3 (as the Lambda runtime provides it).

Building needs PyPI: without it these tests fail (pip's message says why); they never skip.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import platform
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from service.tools.packaging import Architecture, LambdaPackage, build_lambda_package, read_manifest
from service.tools.packaging.lock import RUNTIME_LOCK, read_lock, versions
from tests.events import episode, interleave, kinesis_event, sample, sequences
from tests.integration.conftest import DUMMY_KEY, AwsStack

pytestmark = pytest.mark.integration

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
HOST_ARCHITECTURE = Architecture.ARM64 if platform.machine() in {"aarch64", "arm64"} else Architecture.X86_64

# Runs in ``python -I -S``: the standard library only, then the package and the runtime's boto3.
INVOKE = """
import json, sys, time
task, runtime, event_file = sys.argv[1:4]
sys.path[:0] = [task, runtime]
started = time.perf_counter()
import lambda_shim.handler
imported = time.perf_counter()
response = lambda_shim.handler.handler(json.loads(open(event_file).read()), None)
invoked = time.perf_counter()
modules = {name: getattr(sys.modules.get(name), "__file__", None)
           for name in ("msgspec", "pydantic", "pydantic_core", "pydantic_settings", "service", "boto3")}
print(json.dumps({"response": response, "import_s": imported - started,
                  "first_invoke_s": invoked - imported, "modules": modules}))
"""


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lambda-packages")


@pytest.fixture(scope="session")
def runnable_package(packages: Path) -> LambdaPackage:
    """Built for this interpreter and machine, so that this test run can execute it."""
    return build_lambda_package(
        packages / "runnable.zip", python_version=HOST_PYTHON, architecture=HOST_ARCHITECTURE
    )


@pytest.fixture(scope="session")
def deployable_package(packages: Path) -> LambdaPackage:
    """Built with the defaults: the template's function (python3.12 on x86_64)."""
    return build_lambda_package(packages / "vitalstream-lambda.zip")


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[lambda package] {line}")


def test_two_builds_are_byte_identical(
    packages: Path, runnable_package: LambdaPackage, capsys: pytest.CaptureFixture[str]
) -> None:
    again = build_lambda_package(
        packages / "again.zip", python_version=HOST_PYTHON, architecture=HOST_ARCHITECTURE
    )

    assert hashlib.sha256(again.path.read_bytes()).hexdigest() == runnable_package.sha256
    assert again.path.read_bytes() == runnable_package.path.read_bytes()
    report(capsys, f"rebuild sha256 {again.sha256} (same)")


def test_the_default_package_targets_the_templates_function(
    deployable_package: LambdaPackage, capsys: pytest.CaptureFixture[str]
) -> None:
    with zipfile.ZipFile(deployable_package.path) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    tops = {name.split("/")[0] for name in names}

    assert names == sorted(names)
    assert {"lambda_shim", "service", "msgspec", "pydantic", "pydantic_core", "pydantic_settings"} <= tops
    assert not tops & {"boto3", "botocore", "s3transfer", "simulator", "tests", "bin", "bench"}
    assert not [
        n
        for n in names
        if n.startswith(("service/tools/demo/", "service/tools/esm/", "service/runtime/consumer/"))
    ]
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyi", "/RECORD"))]
    (native,) = [n for n in names if n.startswith("pydantic_core/_pydantic_core.") and n.endswith(".so")]
    assert "cpython-312-x86_64-linux-gnu" in native
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}
    manifest = read_manifest(deployable_package.path)
    assert manifest is not None
    assert (manifest.runtime, manifest.architecture) == ("python3.12", "x86_64")
    assert manifest.dependencies["msgspec"] == importlib.metadata.version("msgspec")
    assert manifest.dependencies["pydantic-core"] == importlib.metadata.version("pydantic-core")
    locked = versions(read_lock(RUNTIME_LOCK))
    assert {name: {version} for name, version in manifest.dependencies.items()} == {
        name: locked[name] for name in manifest.dependencies
    }, "the package bundles exactly the locked versions"
    report(
        capsys,
        f"{deployable_package.path.name}: {deployable_package.zip_bytes:,} bytes zipped, "
        f"{deployable_package.unpacked_bytes:,} unzipped, {deployable_package.files} files",
    )


def boto3_as_the_runtime_provides_it(directory: Path) -> Path:
    """``directory`` with links to boto3 and what it requires from this environment, nothing else."""
    providers: dict[str, list[str]] = {}
    for module, names in importlib.metadata.packages_distributions().items():
        for name in names:
            providers.setdefault(name.lower(), []).append(module)
    pending, seen = ["boto3"], set()
    directory.mkdir()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                match = re.match(r"[A-Za-z0-9._-]+", requirement)
                assert match is not None
                pending.append(match.group(0).lower())
        for module in providers.get(name, providers.get(dist.metadata["Name"].lower(), [])):
            for candidate in (
                Path(str(dist.locate_file(module))),
                Path(str(dist.locate_file(f"{module}.py"))),
            ):
                if candidate.exists() and not (directory / candidate.name).exists():
                    (directory / candidate.name).symlink_to(candidate)
    return directory


def lambda_environment(aws: AwsStack) -> dict[str, str]:
    values = aws.settings.model_dump(exclude={"detection"})
    env = {f"VITALSTREAM_{name.upper()}": str(value) for name, value in values.items() if value is not None}
    return env | {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
        "AWS_DEFAULT_REGION": aws.settings.region,
        "LANG": "C.UTF-8",
    }


def test_the_unzipped_package_runs_the_handler_in_a_clean_interpreter(
    aws: AwsStack, runnable_package: LambdaPackage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = tmp_path / "task"
    with zipfile.ZipFile(runnable_package.path) as archive:
        archive.extractall(task)
    runtime = boto3_as_the_runtime_provides_it(tmp_path / "runtime")
    calm = [sample("watch-calm", t, 72, steps=3, battery=80) for t in range(0, 40, 5)]
    event = kinesis_event(interleave(calm, episode("watch-racing", 0, 35, 130)))
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event))

    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", INVOKE, str(task), str(runtime), str(event_file)],
        env=lambda_environment(aws),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["response"] == {"batchItemFailures": []}
    for name in ("msgspec", "pydantic", "pydantic_core", "pydantic_settings", "service"):
        assert str(outcome["modules"][name]).startswith(str(task)), name
    assert str(outcome["modules"]["boto3"]).startswith(str(runtime))
    objects = aws.objects(aws.settings.archive_bucket, aws.settings.archive_prefix)
    lines = [json.loads(line) for body in objects.values() for line in gzip.decompress(body).splitlines()]
    assert [line["sequenceNumber"] for line in lines] == sequences(event)
    state = aws.dynamodb.get_item(
        TableName=aws.settings.device_state_table,
        Key={"deviceId": {"S": "watch-racing"}},
        ConsistentRead=True,
    )["Item"]
    assert state["anomalies"]["L"] == [{"S": "TACHYCARDIA"}]
    assert [alert["body"]["type"] for alert in aws.drain(aws.alert_queue_url)] == ["TACHYCARDIA"]
    report(
        capsys,
        f"cold import of lambda_shim.handler from the unzipped package: {outcome['import_s'] * 1000:.0f} ms; "
        f"first invocation (settings, boto3 clients, {len(lines)} records): "
        f"{outcome['first_invoke_s'] * 1000:.0f} ms",
    )
