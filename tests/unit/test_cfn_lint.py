"""``cfn-lint`` passes on the template (CI runs the same check)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.tools.provisioning.template import TEMPLATE_PATH


def test_cfn_lint_passes() -> None:
    pytest.importorskip("cfnlint", reason="cfn-lint is not installed (pip install cfn-lint)")
    executable = Path(sys.executable).with_name("cfn-lint")
    command = [str(executable)] if executable.exists() else [shutil.which("cfn-lint") or "cfn-lint"]
    result = subprocess.run(
        [*command, str(TEMPLATE_PATH)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
