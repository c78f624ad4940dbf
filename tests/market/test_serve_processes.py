"""`market serve --workers N` spreads connections over its API processes: a burst of keep-alive
connections (a dashboard's) does not all land in the one process that woke first."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import Market
from tests.served import served

CONNECTIONS = 32


def _api_processes(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
            found.append(int(stat.parent.name))  # an API process (not multiprocessing's resource tracker)
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _established_on(port: int, state: str = "01") -> set[int]:
    """Inodes of the server's side of established TCP connections to `port` on loopback (state "0A":
    of the sockets listening on it)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == state:
            inodes.add(int(fields[9]))
    return inodes


def _open(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")  # accepted and answered, kept alive
    assert connection.recv(4096).startswith(b"HTTP/1.1 200")
    return connection


def test_a_burst_of_connections_is_spread_over_the_api_processes(market: Market, tmp_path: Path) -> None:
    # Before: one shared listening socket; the first process to wake accepted the whole burst
    # (the dashboard bench measured 648 : 33 requests between two processes).
    with served(market, tmp_path, workers=2) as server:
        port = int(server.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 120
        while len(_api_processes(server.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        processes = _api_processes(server.process.pid)
        assert len(processes) == 2
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            connections = list(pool.map(_open, [port] * CONNECTIONS))
        try:
            established = _established_on(port)
            shares = Counter({pid: len(_socket_inodes(pid) & established) for pid in processes})
            # /proc/net/tcp is not read as one snapshot: a line may be missed while connections change.
            assert sum(shares.values()) >= CONNECTIONS - 2, shares
            # By a hash of each connection's ports: Binomial(32, 1/2); fewer than 6 in one process
            # happens about once in 9,000 runs. The shared socket gave one process (nearly) all 32.
            assert min(shares.values()) >= 6, shares
        finally:
            for connection in connections:
                connection.close()


def test_a_replaced_process_listens_on_a_socket_of_its_own(market: Market, tmp_path: Path) -> None:
    # The supervisor replaces a dead API process; the new one builds its own SO_REUSEPORT socket
    # (market.serving.PerProcessSocket), takes its share of new connections, and nothing else breaks.
    with served(market, tmp_path, workers=2) as server:
        port = int(server.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 120
        log = tmp_path / f"server-{port}.log"
        # Both processes up and their apps started before one is killed: a process killed before its startup
        # line left the log one line short of what the wait below counts, and the test waited out its deadline
        # (127 s in a CI run on a loaded machine).
        while time.monotonic() < deadline and (
            len(_api_processes(server.process.pid)) < 2 or log.read_text().count("Application startup complete.") < 2
        ):
            time.sleep(0.2)
        victim = _api_processes(server.process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        while time.monotonic() < deadline:
            processes = [pid for pid in _api_processes(server.process.pid) if pid != victim]
            # The replacement listens on a socket of its own and has started its app (else the
            # connections it gets wait, and the other process's idle ones hit uvicorn's 5 s keep-alive).
            if (
                len(processes) == 2
                and all(_socket_inodes(pid) & _established_on(port, "0A") for pid in processes)
                and log.read_text().count("Application startup complete.") >= 3
            ):
                break
            time.sleep(0.2)
        assert len(processes) == 2 and victim not in processes
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            connections = list(pool.map(_open, [port] * CONNECTIONS))
        try:
            established = _established_on(port)
            shares = Counter({pid: len(_socket_inodes(pid) & established) for pid in processes})
            assert min(shares.values()) >= 6, shares
        finally:
            for connection in connections:
                connection.close()
