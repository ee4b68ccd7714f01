"""Reading a Dockerfile and its .dockerignore, and replaying a stage's steps without a Docker engine.

The replay runs each ``RUN`` with ``sh -c`` on this machine, in a scratch directory standing for the
image's filesystem: the stage's absolute paths (``WORKDIR``s, ``/opt/venv``) are rewritten into it,
BuildKit ``--mount`` flags are dropped (pip's own cache stands in for the cache mount) and ``python``
is this machine's CPython of the same minor version as the base image, where the test runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
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


@dataclass
class Replay:
    """The scratch filesystem of one replay and the environment its steps ran with."""

    root: Path
    env: dict[str, str]
    workdir: str = "/"

    def host(self, path: str) -> Path:
        """Where an absolute image path lives on this machine."""
        return self.root / path.lstrip("/")

    def rewrite(self, text: str, absolute: tuple[str, ...]) -> str:
        for path in sorted(absolute, key=len, reverse=True):
            text = re.sub(rf"(?<![\w/.]){re.escape(path)}(?=[/:\s\"']|$)", str(self.host(path)), text)
        return text


def replay_stage(stage: Stage, context: Path, scratch: Path, absolute: tuple[str, ...]) -> Replay:
    """Run ``stage``'s WORKDIR, ENV, COPY (from ``context``) and RUN steps under ``scratch``;
    ``absolute`` lists the image paths the steps use (rewritten into ``scratch``)."""
    shims = scratch / "shims"
    shims.mkdir(parents=True)
    python = shims / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys._base_executable}" "$@"\n')
    python.chmod(0o755)
    replay = Replay(scratch / "fs", {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"})
    for instruction in stage.instructions:
        arguments = replay.rewrite(instruction.arguments, absolute)
        if instruction.keyword == "WORKDIR":
            replay.workdir = instruction.arguments
            replay.host(replay.workdir).mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", arguments):
                replay.env[key] = _expand(value, replay.env)
        elif instruction.keyword == "COPY":
            *sources, destination = [t for t in arguments.split() if not t.startswith("--")]
            target = replay.host(replay.workdir) / destination
            for source in sources:
                origin = context / source
                if origin.is_dir():
                    shutil.copytree(origin, target, dirs_exist_ok=True)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
        elif instruction.keyword == "RUN":
            command = re.sub(r"^(?:--\S+\s+)+", "", arguments)
            result = subprocess.run(
                ["sh", "-c", command],
                cwd=replay.host(replay.workdir),
                env=replay.env,
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, f"RUN {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return replay


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)


def filtered_context(source: Path, ignore: DockerIgnore, destination: Path) -> Path:
    for name in ignore.context_files(source):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target)
    return destination
