"""Starting the API server: the listening socket ``garvideo serve`` binds, the app on uvicorn in a thread
of this process, and a server subprocess that says where it listens.

The tests and the benchmarks start servers only through :class:`ServerThread` and :class:`ServerProcess`::

    from garvideo.serve import ServeConfig, create_app
    from garvideo.serve.launch import ServerThread

    with ServerThread(create_app(gv, ServeConfig())) as server:   # a free port of 127.0.0.1
        print(server.url)                                         # http://127.0.0.1:PORT, /health answered

Needs the ``serve`` extra (uvicorn) for :class:`ServerThread`; importing this module loads nothing of it.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from garvideo.errors import InputError

__all__ = ["LISTENING", "ServerProcess", "ServerThread", "bind_socket"]

logger = logging.getLogger(__name__)

LISTENING = re.compile(r"listening on (http://\S+)")
"""What ``garvideo serve`` prints on stderr once the model is loaded and the socket listens."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free port chosen by the system), inheritable.

    Raises:
        InputError: (``port``) the address cannot be bound (in use, not this machine's, ...).
    """
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        raise InputError("port", f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class ServerThread:
    """``app`` (:func:`garvideo.serve.create_app`) on uvicorn in a daemon thread of this process, on a free
    port of ``host``; :meth:`start` returns once ``GET /health`` answers. A context manager (stops on exit).

    Args:
        app: the ASGI app.
        host: the address to listen on (loopback by default).
        timeout: seconds :meth:`start` waits for the server.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", timeout: float = 120.0) -> None:
        self.app = app
        self.host = host
        self.timeout = timeout
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> ServerThread:
        """Bind, serve, and wait for ``/health``; returns ``self``.

        Raises:
            RuntimeError: the server stopped or did not answer within ``timeout`` seconds.
        """
        import uvicorn  # the serve extra: only when a server is started

        sock = bind_socket(self.host, 0)
        host, port = sock.getsockname()[:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        end = time.monotonic() + self.timeout
        while not (self._server.started and _health_ok(self.url)):
            if time.monotonic() > end or not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.05)
        logger.info("serving on %s", self.url)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Ask uvicorn to exit and wait for its thread (up to ``timeout`` seconds)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> ServerThread:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ServerProcess:
    """A server subprocess (``garvideo serve ...`` or a script that serves the same way): its stderr is
    read into :attr:`log` by a thread, and :attr:`url` is set once it prints ``listening on URL``.

    Args:
        argv: the command line (e.g. ``[sys.executable, "-c", "from garvideo.cli import main; main()",
            "serve", "--port", "0", ...]``).
        env: its environment (default: this process's).
        cwd: its working folder (default: this process's).
    """

    def __init__(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            stderr=subprocess.PIPE,
            text=True,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
        self.log: list[str] = []
        self.url = ""
        self._ready = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            m = LISTENING.search(line)
            if m and not self._ready.is_set():
                self.url = m.group(1)
                self._ready.set()

    def wait(self, timeout: float = 120.0) -> ServerProcess:
        """Wait until the server listens; returns ``self``.

        Raises:
            RuntimeError: it exited or did not listen within ``timeout`` seconds (stopped then); the
                message ends with its last stderr lines.
        """
        end = time.monotonic() + timeout
        while not self._ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError("the server did not start:\n" + "".join(self.log[-40:]))
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Terminate it (killed after ``timeout`` seconds)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ServerProcess:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self.wait()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
