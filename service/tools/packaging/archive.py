"""A reproducible zip: the same files give the same bytes, whoever builds it and whenever.

Entries are sorted by path; every entry has the same timestamp (``SOURCE_DATE_EPOCH`` when set,
else 1980-01-01, the earliest a zip can hold), mode 0644 (Lambda needs read access only; shared
objects are mapped, not executed), Unix as the creating system, deflate at level 9, and no directory
entries, comments or extra fields. The file is written beside ``out`` and renamed over it, so a
failed build never leaves half a zip behind.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_LAST_ZIP_YEAR = 2107
_UNIX = 3
_REGULAR_FILE_0644 = 0o100644 << 16

# What the runtime never reads: caches, type stubs, install bookkeeping whose content depends on
# the machine that ran pip (RECORD hashes the scripts, whose shebang names the build's Python).
_DROPPED_DIRS = frozenset({"__pycache__", "tests"})
_DROPPED_SUFFIXES = (".pyc", ".pyo", ".pyi")
_DROPPED_NAMES = frozenset({"py.typed"})
_DROPPED_DIST_INFO = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
_DROPPED_TOP_LEVEL = frozenset({"bin"})


def zip_date_time(source_date_epoch: str | None = None) -> tuple[int, int, int, int, int, int]:
    """The entries' timestamp: ``source_date_epoch`` (seconds, UTC) clamped to what a zip holds."""
    if not source_date_epoch:
        return ZIP_EPOCH
    try:
        seconds = int(source_date_epoch)
    except ValueError:
        raise ValueError(f"SOURCE_DATE_EPOCH={source_date_epoch!r} is not an integer") from None
    moment = datetime.fromtimestamp(max(seconds, 315_532_800), UTC)  # 1980-01-01T00:00:00Z
    if moment.year > _LAST_ZIP_YEAR:
        raise ValueError(f"SOURCE_DATE_EPOCH={source_date_epoch} is past what a zip can hold")
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def runtime_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """``(archive path, file)`` for each file under ``directory`` that the runtime may read."""
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        parts = relative.parts
        if not path.is_file() or parts[0] in _DROPPED_TOP_LEVEL:
            continue
        if _DROPPED_DIRS.intersection(parts[:-1]) or path.suffix in _DROPPED_SUFFIXES:
            continue
        if path.name in _DROPPED_NAMES:
            continue
        if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in _DROPPED_DIST_INFO:
            continue
        yield relative.as_posix(), path


def write_zip(
    out: Path, entries: Iterable[tuple[str, Path]], date_time: tuple[int, int, int, int, int, int]
) -> int:
    """Write ``entries`` (archive path, source file) to ``out``; returns the uncompressed size."""
    ordered = sorted(entries)
    names = [name for name, _ in ordered]
    if len(set(names)) != len(names):
        raise ValueError("two files claim the same archive path")
    partial = out.with_name(f".{out.name}.partial")
    size = 0
    try:
        with zipfile.ZipFile(partial, "w") as archive:
            for name, source in ordered:
                info = zipfile.ZipInfo(name, date_time)
                info.create_system = _UNIX
                info.external_attr = _REGULAR_FILE_0644
                info.compress_type = zipfile.ZIP_DEFLATED
                data = source.read_bytes()
                size += len(data)
                archive.writestr(info, data, compresslevel=9)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return size
