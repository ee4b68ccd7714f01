"""Reading JSON Lines files of objects, with the line number of any malformed line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec


def read_objects(path: Path, error: type[ValueError]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line; ``error`` names a line that is not one JSON
    object. Opening the file may raise ``OSError``."""
    with path.open("rb") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                body = msgspec.json.decode(line)
            except msgspec.DecodeError as exc:
                raise error(f"line {number}: not JSON ({exc})") from None
            if not isinstance(body, dict):
                raise error(f"line {number}: not a JSON object")
            yield number, body
