"""The commands a document shows, as its reader would type them: the lines of its ```bash blocks."""

from __future__ import annotations

import re
import shlex


def bash_lines(text: str) -> list[list[str]]:
    """The command lines of the bash blocks, split as a shell would."""
    lines: list[list[str]] = []
    for body in re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        lines += [words for line in body.splitlines() if (words := shlex.split(line, comments=True))]
    return lines
