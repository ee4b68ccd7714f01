"""Reading a Dockerfile and its .dockerignore: stages and instructions, and the files
``docker build`` would send (what ``tests/integration/test_image.py`` checks before it builds)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction; None for the shell form."""
        try:
            value = json.loads(self.arguments)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """``ENV`` assignments in order (``KEY=VALUE`` pairs; later ones win), unexpanded."""
        values: dict[str, str] = {}
        for instruction in self.of("ENV"):
            for pair in re.findall(r"(\w+)=(\S+)", instruction.arguments):
                values[pair[0]] = pair[1]
        return values


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages in order; line continuations joined, comments and parser directives dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", arguments.strip(), re.IGNORECASE)
            assert match is not None, line
            stages.append(Stage(match.group(1), match.group(2)))
        else:
            assert stages, f"{line!r} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, arguments.strip()))
    return stages


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        elif pattern[index] == "[":
            end = pattern.index("]", index)
            parts.append(pattern[index : end + 1])
            index = end + 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(parts))


@dataclass(frozen=True)
class DockerIgnore:
    """Docker's rules: a pattern matches a path or any directory above it; the last match decides;
    ``!`` re-includes."""

    rules: tuple[tuple[bool, re.Pattern[str], str], ...]  # (re-include, regex, pattern)

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        rules = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            rules.append((negated, _pattern_regex(pattern), pattern))
        return cls(tuple(rules))

    def excluded(self, path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        verdict = False
        for negated, regex, _ in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                verdict = not negated
        return verdict

    def may_reinclude_below(self, directory: str) -> bool:
        return any(negated and pattern.startswith(directory + "/") for negated, _, pattern in self.rules)

    def context_files(self, root: Path) -> Iterator[str]:
        """Paths (relative, ``/``-separated) of the files ``docker build`` would send from ``root``."""
        for current, dirs, files in os.walk(root):
            base = Path(current).relative_to(root).as_posix()
            prefix = "" if base == "." else base + "/"
            dirs[:] = sorted(
                d for d in dirs if not self.excluded(prefix + d) or self.may_reinclude_below(prefix + d)
            )
            for name in sorted(files):
                if not self.excluded(prefix + name):
                    yield prefix + name
