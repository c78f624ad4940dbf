"""`market serve --workers N` (N > 1): uvicorn's supervisor, each API process with a listening socket of
its own on the same port (SO_REUSEPORT), so that the kernel spreads new connections over the processes.

With one socket shared by every process (uvicorn's default), the process whose event loop wakes first
accepts every connection waiting in the queue at once (uvloop's accept loop runs until the queue is
empty): a burst of keep-alive connections, say a dashboard's 16, all went to one process and stayed
there for their lifetime while the other process idled (measured 648 : 33 requests, docs/benchmarks.md
"perf-api2"), so one process's event loop, threads and GIL carried the whole load and its tail latency.
With a socket per process the kernel picks the socket for each new connection by a hash of its
addresses and ports: an even spread in expectation, decided before any process wakes.

What it costs: connections waiting in the queue of a process that dies are reset (the supervisor starts
a replacement, with a socket of its own); the shared socket would have let another process take them.
The parent listens on nothing (a listening socket there would join the group and take connections
nobody accepts); it only tries a bind first, so that a port already taken fails once, at start.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess


def _listening(host: str, port: int, backlog: int, *, listen: bool = True) -> socket.socket:
    """A listening socket on (host, port) that other processes may also listen on (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    if listen:
        sock.listen(backlog)
    return sock


class PerProcessSocket(socket.socket):
    """Stands for the listening socket in the supervisor: never bound there; pickled to each child
    (uvicorn starts them with multiprocessing's spawn) as the recipe for a fresh SO_REUSEPORT socket
    of the child's own, instead of a duplicate of one shared socket."""

    def __init__(self, host: str, port: int, backlog: int) -> None:
        super().__init__(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.recipe = (host, port, backlog)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_listening, self.recipe)


WORKER_HEALTHCHECK_SECONDS = 60
"""How long uvicorn's supervisor waits for an API process to answer its health ping before it kills it as
hung and starts another (uvicorn's default: 5 s). A process starting on a loaded machine (imports, the app,
its sandbox workers) missed 5 s: at a load average of 7-15 on 2 cores the supervisor killed two or four
fresh processes before one came up, and `make tour` found no server after its 20 s (branch audit9)."""


def supports_reuse_port() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def serve_processes(app: str, *, host: str, port: int, workers: int) -> None:
    """Serve the app factory at `app` ("module:function") from `workers` processes, one socket each."""
    config = uvicorn.Config(
        app, factory=True, host=host, port=port, workers=workers, timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS
    )
    _listening(host, port, 0, listen=False).close()  # a port taken fails here, once, not in every child
    placeholder = PerProcessSocket(host, port, config.backlog)
    try:
        Multiprocess(config, sockets=[placeholder]).run()
    finally:
        placeholder.close()
