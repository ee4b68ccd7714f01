"""Which of our modules the Lambda runtime imports: the static import closure of ``lambda_shim``.

Every module of the entry package is a root; each first-party import (``service``, ``lambda_shim``),
at module level or inside a function, pulls in its module and the ``__init__`` of every package
above it. Imports under ``if TYPE_CHECKING:`` are for the type checker only and are not followed.
Whatever the handler never imports (the CLI, the simulator, the demo, the emulator, the consumer)
stays out of the package by construction, without a list to keep in step.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FIRST_PARTY = ("service", "lambda_shim")
ENTRY_PACKAGE = "lambda_shim"


class SourceError(RuntimeError):
    """A first-party import that names no module file."""


@dataclass(frozen=True)
class RuntimeSources:
    """``files``: archive paths (``service/core/decode.py``, ...) relative to ``root``, sorted.
    ``third_party``: top-level names of the non-stdlib modules those files import at runtime."""

    root: Path
    files: tuple[str, ...]
    third_party: frozenset[str]


def source_root() -> Path:
    """The directory holding ``service/`` and ``lambda_shim/``: the checkout or site-packages."""
    return Path(__file__).resolve().parents[3]


def runtime_sources(root: Path | None = None, entry: str = ENTRY_PACKAGE) -> RuntimeSources:
    """The import closure of every module in package ``entry`` under ``root``."""
    root = root or source_root()
    entry_dir = root / entry
    if not (entry_dir / "__init__.py").is_file():
        raise SourceError(f"{entry_dir} is not a package")
    pending = [_module_name(root, path) for path in sorted(entry_dir.rglob("*.py"))]
    seen: set[str] = set()
    files: set[str] = set()
    third_party: set[str] = set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(root, module)
        if path is None:
            raise SourceError(f"no file for first-party module {module} under {root}")
        files.update(_package_inits(root, module))
        files.add(path.relative_to(root).as_posix())
        for name, optional in _runtime_imports(path, module):
            top = name.split(".")[0]
            if top in FIRST_PARTY:
                if _module_file(root, name) is not None:
                    pending.append(name)
                elif not optional:
                    raise SourceError(f"{path.relative_to(root)} imports {name}, which has no file")
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
    return RuntimeSources(root, tuple(sorted(files)), frozenset(third_party))


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _package_inits(root: Path, module: str) -> Iterator[str]:
    parts = module.split(".")
    for depth in range(1, len(parts)):
        init = root.joinpath(*parts[:depth], "__init__.py")
        if init.is_file():
            yield init.relative_to(root).as_posix()


def _runtime_imports(path: Path, module: str) -> Iterator[tuple[str, bool]]:
    """``(module name, optional)`` for each import run outside ``if TYPE_CHECKING:``; ``optional``
    marks ``from package import name`` candidates, which may be a name rather than a submodule."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, False
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            yield base, False
            for alias in node.names:
                if alias.name != "*":
                    yield f"{base}.{alias.name}", True


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    anchor = ".".join(parts[: len(parts) - node.level + 1])
    return f"{anchor}.{node.module}" if node.module else anchor


def _walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from (n for stmt in child.orelse for n in (stmt, *_walk_runtime(stmt)))
            continue
        yield child
        yield from _walk_runtime(child)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
