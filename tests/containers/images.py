"""The images the container tests run, built from package registries alone (no image registry).

    python -m tests.containers.images [debian|python-base|project|localstack|all]   # default: all

- ``vitalstream-debian:<suite>-<digest>``: a Debian ``debootstrap --variant=minbase`` root, imported with
  ``docker import``. Tagged by the digest of its recipe (suite, variant, mirror, debootstrap's version),
  so it is built once per recipe and reused after (``docker import`` has no cache of its own).
- the stand-in for the Dockerfile's base (``python:3.11-slim``): Debian bookworm's Python 3.11 with the
  same ``/usr/local/bin`` entry points (``tests/containers/python-base/Dockerfile``). Built only when
  no image of that name exists or the one that exists is this stand-in (label ``STAND_IN_LABEL``):
  where a registry is reachable and the real image was pulled, the real one is used.
- ``vitalstream:local``: the project's own ``Dockerfile``, unmodified.
- ``vitalstream-localstack:<version>``: LocalStack (``localstack-core`` from PyPI as pinned in
  ``requirements/localstack.lock``) on Debian trixie, with the programs it would download at run time
  placed where its installers look (``tests/containers/localstack/Dockerfile``).

Every ``docker build`` goes through the engine's BuildKit, whose layer cache is keyed by content: a
rebuild with unchanged inputs takes seconds. Builds that fetch packages use host networking (the
build only; no container runs with it). The host's own CA certificates
(``/usr/local/share/ca-certificates``) are copied into the images that fetch over TLS, for machines
whose traffic to the registries passes a TLS-inspecting proxy.

Standard library only (``scripts/dev.py`` runs it before ``.venv`` matters); needs root and the
Debian packages ``docker.io`` and ``debootstrap``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from tests.containers.engine import LOCALSTACK_IMAGE, PROJECT_IMAGE, client

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HOST_CA = Path("/usr/local/share/ca-certificates")
STAND_IN_LABEL = "org.vitalstream.stand-in"
LOCALSTACK_LOCK = ROOT / "requirements" / "localstack.lock"
DEBOOTSTRAP_VARIANT = "minbase"
LOG = ROOT / "out" / "images" / "build.log"


class ToolMissing(SystemExit):
    """A build needs a program this machine lacks; the message names the Debian package."""


def log(message: str) -> None:
    print(f"images: {message}", flush=True)


def docker(*args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the engine's client; with ``quiet`` its output goes to ``LOG`` (tail shown on failure)."""
    command = [client(), *args]
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    if not quiet:
        return subprocess.run(command, env=env, capture_output=True, text=True, check=check)
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOG.open("a") as out:
        out.write(f"\n+ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, check=False)
    if check and done.returncode != 0:
        tail = "".join(LOG.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise SystemExit(f"{tail}\nimages: {' '.join(args[:2])} failed (exit {done.returncode}); log: {LOG}")
    return done


def exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def labels(tag: str) -> dict[str, str]:
    done = docker("image", "inspect", "--format", "{{json .Config.Labels}}", tag, check=False)
    return json.loads(done.stdout or "null") or {} if done.returncode == 0 else {}


def digest(*parts: str | bytes) -> str:
    hashed = hashlib.sha256()
    for part in parts:
        hashed.update(part.encode() if isinstance(part, str) else part)
        hashed.update(b"\0")
    return hashed.hexdigest()[:16]


def debian_mirror() -> str:
    """``VITALSTREAM_DEBIAN_MIRROR``, else the first Debian archive this machine's apt sources name."""
    configured = os.environ.get("VITALSTREAM_DEBIAN_MIRROR")
    if configured:
        return configured
    sources = sorted(Path("/etc/apt").glob("sources.list.d/*.sources"))
    sources += [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt").glob("sources.list.d/*.list"))]
    for path in (p for p in sources if p.is_file()):
        for uri in re.findall(r"(?:^URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+)", path.read_text(), re.M):
            if uri.rstrip("/").endswith("/debian"):
                return str(uri)
    raise SystemExit("images: no Debian archive in /etc/apt; set VITALSTREAM_DEBIAN_MIRROR")


def debian(suite: str) -> str:
    """The tag of a minimal Debian ``suite`` root filesystem image, built when missing."""
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ToolMissing("images: debootstrap is not installed (apt-get install -y debootstrap)")
    version = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "debootstrap"], capture_output=True, text=True, check=False
    ).stdout
    mirror = debian_mirror()
    tag = f"vitalstream-debian:{suite}-{digest(suite, DEBOOTSTRAP_VARIANT, mirror, version)}"
    if exists(tag):
        return tag
    began = time.monotonic()
    log(f"debootstrap --variant={DEBOOTSTRAP_VARIANT} {suite} -> {tag}")
    with tempfile.TemporaryDirectory(prefix=f"debootstrap-{suite}-", dir="/var/tmp") as scratch:
        root = Path(scratch) / "root"
        LOG.parent.mkdir(parents=True, exist_ok=True)
        with LOG.open("a") as out:
            made = subprocess.run(
                [debootstrap, f"--variant={DEBOOTSTRAP_VARIANT}", suite, str(root), mirror],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if made.returncode != 0:
            raise SystemExit(f"images: debootstrap {suite} failed (exit {made.returncode}); log: {LOG}")
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [client(), "import", "--change", 'CMD ["/bin/bash"]', "-", tag],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise SystemExit(f"images: docker import {tag} failed: {imported.stderr.strip()}")
    log(f"{tag} in {time.monotonic() - began:.0f} s")
    return tag


def _context(files: Iterable[tuple[Path, str]]) -> tempfile.TemporaryDirectory[str]:
    """A scratch build context: each ``(source, name)`` copied in, plus the host's CA certificates
    under ``ca/``."""
    scratch = tempfile.TemporaryDirectory(prefix="vitalstream-context-")
    base = Path(scratch.name)
    for source, name in files:
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, base / name)
    (base / "ca").mkdir()
    for certificate in sorted(HOST_CA.glob("*.crt")) if HOST_CA.is_dir() else []:
        shutil.copy2(certificate, base / "ca" / certificate.name)
    return scratch


def build(tag: str, context: Path, *args: str, dockerfile: Path | None = None) -> str:
    began = time.monotonic()
    file = ("--file", str(dockerfile)) if dockerfile else ()
    docker("build", "--network", "host", "--tag", tag, *file, *args, str(context), quiet=True)
    log(f"{tag} built in {time.monotonic() - began:.0f} s")
    return tag


def dockerfile_base() -> str:
    """The image the project's Dockerfile starts from (its first ``FROM``)."""
    match = re.search(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M | re.I)
    assert match is not None, "the Dockerfile has no FROM"
    return match.group(1)


def python_base() -> str:
    """The Dockerfile's base: the real one when present, else the stand-in built and tagged so."""
    wanted = dockerfile_base()
    if exists(wanted) and STAND_IN_LABEL not in labels(wanted):
        return wanted
    version = re.fullmatch(r"python:(\d+\.\d+)-slim", wanted)
    assert version is not None, f"no stand-in for {wanted}"
    with _context([(HERE / "python-base" / "Dockerfile", "Dockerfile")]) as context:
        build(
            wanted,
            Path(context),
            *("--build-arg", f"BASE={debian('bookworm')}", "--build-arg", f"PYTHON={version.group(1)}"),
            *("--label", f"{STAND_IN_LABEL}={wanted}"),
        )
    return wanted


def project() -> str:
    """The project's own Dockerfile, unmodified, on its base (real or stand-in)."""
    python_base()
    return build(PROJECT_IMAGE, ROOT)


def localstack() -> str:
    files = [(path, path.name) for path in sorted((HERE / "localstack").iterdir()) if path.is_file()]
    files += [(LOCALSTACK_LOCK, "localstack.lock"), (HERE / "relay.py", "relay.py")]
    with _context(files) as context:
        return build(LOCALSTACK_IMAGE, Path(context), "--build-arg", f"BASE={debian('trixie')}")


TARGETS = {
    "debian": lambda: [debian("bookworm"), debian("trixie")],
    "python-base": lambda: [python_base()],
    "project": lambda: [project()],
    "localstack": lambda: [localstack()],
}


def main(argv: list[str]) -> int:
    names = argv or list(TARGETS)
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        print(__doc__, file=sys.stderr)
        return 2
    for name in names:
        TARGETS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main([name for name in sys.argv[1:] if name != "all"]))
