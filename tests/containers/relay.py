"""A byte relay between a TCP port on 127.0.0.1 and a unix socket: how a container with no network
but loopback talks to the host, through a socket file in a bind-mounted directory.

    python relay.py unix-to-tcp SOCKET PORT   # listen on SOCKET (mode 0666), connect to 127.0.0.1:PORT
    python relay.py tcp-to-unix PORT SOCKET   # listen on 127.0.0.1:PORT, connect to SOCKET

Inside a container the first form exposes a loopback-only server (LocalStack's gateway) as a socket
file; on the host ``Relay`` (the second form, in a thread) gives that file a loopback port again. Unix
sockets are files, not network endpoints: they cross network namespaces and nothing listens on an
address. Standard library only: the LocalStack image runs it with its own Python.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"
CHUNK = 65536


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(CHUNK):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _splice(accepted: socket.socket, upstream: socket.socket) -> None:
    with accepted, upstream:
        back = threading.Thread(target=_pump, args=(upstream, accepted), daemon=True)
        back.start()
        _pump(accepted, upstream)
        back.join()


def _connect_unix(path: str) -> socket.socket:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    upstream.connect(path)
    return upstream


def _connect_tcp(port: int) -> socket.socket:
    return socket.create_connection((LOOPBACK, port))


class Relay:
    """A listening socket whose connections are spliced to a fresh upstream connection each; serves
    in a daemon thread until ``close``."""

    def __init__(self, listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
        self._listener = listener
        self._connect = connect
        self._thread = threading.Thread(target=self._serve, name="relay", daemon=True)
        self._closed = threading.Event()

    @classmethod
    def tcp_to_unix(cls, path: Path, port: int = 0) -> Relay:
        listener = socket.create_server((LOOPBACK, port))
        return cls(listener, lambda: _connect_unix(str(path)))

    @classmethod
    def unix_to_tcp(cls, path: Path, port: int) -> Relay:
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        os.chmod(path, 0o666)  # the peer may run as another user (the image's 10001)
        listener.listen(64)
        return cls(listener, lambda: _connect_tcp(port))

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def start(self) -> Relay:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                accepted, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = self._connect()
            except OSError:
                accepted.close()
                continue
            threading.Thread(target=_splice, args=(accepted, upstream), daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "unix-to-tcp":
        relay = Relay.unix_to_tcp(Path(argv[1]), int(argv[2]))
    elif len(argv) == 3 and argv[0] == "tcp-to-unix":
        relay = Relay.tcp_to_unix(Path(argv[2]), int(argv[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(f"relay: listening ({argv[0]} {argv[1]} {argv[2]})", flush=True)
    relay._serve()  # in the foreground: the process is the relay
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
