"""The locks agree with pyproject.toml: refreshed by ``python3 scripts/dev.py lock`` whenever a
dependency list changes, every pyproject requirement pinned to a version it allows, every pin hashed,
and the runtime lock the dev lock's versions (what the tests ran against is what ships)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

from service.tools.packaging.lock import DEV_LOCK, RUNTIME_LOCK, canonical, read_lock, versions

ROOT = Path(__file__).resolve().parents[2]
MINISTACK_LOCK = ROOT / "requirements" / "ministack.lock"
LOCALSTACK_LOCK = ROOT / "requirements" / "localstack.lock"
REFRESH = "the lock is stale: run `python3 scripts/dev.py lock` and commit requirements/"


def dev_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vitalstream_dev_script", ROOT / "scripts" / "dev.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


DEV = dev_script()


@pytest.mark.parametrize(
    "lock", [DEV_LOCK, RUNTIME_LOCK, MINISTACK_LOCK, LOCALSTACK_LOCK], ids=lambda p: p.name
)
def test_each_lock_was_resolved_from_the_current_dependency_lists(lock: Path) -> None:
    assert DEV.stamped_digest(lock) == DEV.dependency_digest(), REFRESH


@pytest.mark.parametrize(
    ("lock", "lists"),
    [
        (DEV_LOCK, ("dependencies", "dev", "build-system")),
        (RUNTIME_LOCK, ("dependencies", "build-system")),
        (MINISTACK_LOCK, ("ministack",)),
        (LOCALSTACK_LOCK, ("localstack",)),
    ],
    ids=lambda value: value.name if isinstance(value, Path) else "+".join(value),
)
def test_every_requirement_is_pinned_to_a_version_it_allows(lock: Path, lists: tuple[str, ...]) -> None:
    locked = versions(read_lock(lock))
    declared = DEV.dependency_lists()
    for line in (line for name in lists for line in declared[name]):
        requirement = Requirement(line)
        name = canonical(requirement.name)
        assert name in locked, f"{line!r} is not in {lock.name}: {REFRESH}"
        assert all(requirement.specifier.contains(v, prereleases=True) for v in locked[name]), (
            f"{lock.name} pins {name} {locked[name]}, outside {line!r}: {REFRESH}"
        )


@pytest.mark.parametrize(
    "lock", [DEV_LOCK, RUNTIME_LOCK, MINISTACK_LOCK, LOCALSTACK_LOCK], ids=lambda p: p.name
)
def test_every_pin_carries_hashes(lock: Path) -> None:
    unhashed = [e.name for group in read_lock(lock).values() for e in group if not e.hashes]
    assert not unhashed


def test_the_runtime_lock_pins_the_dev_locks_versions() -> None:
    dev, runtime = versions(read_lock(DEV_LOCK)), versions(read_lock(RUNTIME_LOCK))
    assert {name: dev.get(name) for name in runtime} == runtime


def test_a_stale_lock_is_detected(tmp_path: Path) -> None:
    stale = tmp_path / "dev.lock"
    text = DEV_LOCK.read_text().replace(DEV.DIGEST_LINE, DEV.DIGEST_LINE + "0", 1)
    stale.write_text(text)
    assert DEV.stamped_digest(stale) != DEV.dependency_digest()
