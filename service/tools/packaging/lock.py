"""The dependency lock (``requirements/*.lock``, written by ``python3 scripts/dev.py lock``) as data.

A lock is pip's requirements format as uv writes it: one ``name==version [; marker]`` entry per
distribution, its ``--hash`` options, and ``# via`` comments naming the distributions that require it.
``read_lock`` returns every entry; ``closure`` follows the ``via`` edges from a set of roots to every
distribution they need, so a subset can be installed with ``--require-hashes --no-deps`` at exactly
the locked versions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import service

SOURCE_ROOT = Path(service.__file__).resolve().parents[1]
RUNTIME_LOCK = SOURCE_ROOT / "requirements" / "runtime.lock"
DEV_LOCK = SOURCE_ROOT / "requirements" / "dev.lock"

_ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;\s*(?P<marker>[^\\]+?))?\s*\\?$"
)
_HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")
_VIA = re.compile(r"^#\s+(?:via\s+)?(?!via\s*$)(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*$")


class LockError(ValueError):
    """A lock file is missing, unreadable, or lacks a distribution asked of it."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class LockEntry:
    name: str  # canonical
    version: str
    marker: str | None
    hashes: tuple[str, ...]
    required_by: tuple[str, ...]  # canonical names of the locked distributions that require it

    def requirement_line(self) -> str:
        marker = f" ; {self.marker}" if self.marker else ""
        hashes = "".join(f" --hash={digest}" for digest in self.hashes)
        return f"{self.name}=={self.version}{marker}{hashes}"


def read_lock(path: Path) -> dict[str, list[LockEntry]]:
    """``{canonical name: entries}``; a name has several entries when markers split its versions."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise LockError(f"cannot read the lock {path}: {exc}") from exc
    entries: dict[str, list[LockEntry]] = {}
    current: dict[str, object] | None = None

    def close() -> None:
        if current is not None:
            entry = LockEntry(**current)  # type: ignore[arg-type]
            entries.setdefault(entry.name, []).append(entry)

    for line in lines:
        match = _ENTRY.match(line)
        if match:
            close()
            current = {
                "name": canonical(match["name"]),
                "version": match["version"],
                "marker": match["marker"],
                "hashes": (),
                "required_by": (),
            }
        elif current is not None and (found := _HASH.search(line)):
            current["hashes"] = (*current["hashes"], found.group(1))  # type: ignore[misc]
        elif current is not None and (via := _VIA.match(line.strip())):
            current["required_by"] = (*current["required_by"], canonical(via["name"]))  # type: ignore[misc]
    close()
    if not entries:
        raise LockError(f"{path} pins no distribution")
    return entries


def versions(entries: Mapping[str, list[LockEntry]]) -> dict[str, set[str]]:
    return {name: {entry.version for entry in group} for name, group in entries.items()}


def closure(entries: Mapping[str, list[LockEntry]], roots: Iterable[str]) -> list[LockEntry]:
    """The entries of ``roots`` and of every locked distribution they need, sorted by name."""
    needs: dict[str, set[str]] = {}
    for name, group in entries.items():
        for entry in group:
            for parent in entry.required_by:
                needs.setdefault(parent, set()).add(name)
    wanted = [canonical(name) for name in roots]
    missing = [name for name in wanted if name not in entries]
    if missing:
        raise LockError(f"not in the lock: {', '.join(missing)} (run: python3 scripts/dev.py lock)")
    seen: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        wanted.extend(needs.get(name, ()))
    return [entry for name in sorted(seen) for entry in entries[name]]
