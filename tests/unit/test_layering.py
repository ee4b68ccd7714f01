"""What the product runs (core, adapters, pipeline, Lambda shim, event source mapping, bridge) never
imports the simulator: that is a tool beside the product, not a part of it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = [
    *sorted((ROOT / "service" / "core").glob("*.py")),
    *sorted((ROOT / "service" / "adapters").glob("*.py")),
    *sorted((ROOT / "service" / "esm").glob("*.py")),
    *sorted((ROOT / "lambda_shim").glob("*.py")),
    *(
        ROOT / "service" / name
        for name in (
            "effects.py",
            "pipeline.py",
            "window.py",
            "ports.py",
            "config.py",
            "composition.py",
            "bridge.py",
            "bridge_routing.py",
            "accounting.py",
        )
    ),
]


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: str(p.relative_to(ROOT)))
def test_runtime_module_does_not_import_the_simulator(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}

    assert not {m for m in modules if m.split(".")[0] == "simulator"}
