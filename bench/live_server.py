"""A real `market serve` on loopback, for the fairness bench and the HTTP load test alike.

    with live_server(data_dir, database_url, workers=2, env={"MARKET_SANDBOX_WORKERS": "2"}) as base:
        httpx.get(f"{base}/healthz")

The server runs in its own session (process group) on a free port, with the scheduler off; it is
ready when /healthz answers 200. On exit it gets SIGTERM, then SIGKILL for the whole group (sandbox
workers included) if it does not stop within 30 s. Its output goes to `<data_dir>/server.log`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def live_server(
    data_dir: Path, database_url: str, *, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Serve the marketplace in `data_dir`; yields its base URL once /healthz answers."""
    port = free_port()
    environment = {
        **os.environ,
        "MARKET_DATA_DIR": str(data_dir),
        "MARKET_DATABASE_URL": database_url,
        "MARKET_SCHEDULER_ENABLED": "false",
        **(env or {}),
    }
    log_path = data_dir / "server.log"
    command = [sys.executable, "-c", "from market.cli import main; main()", "serve", "--port", str(port)]
    # --workers 1 is left out, so that the bench also runs against a server from before the flag
    command += ["--workers", str(workers)] if workers > 1 else []
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, env=environment, start_new_session=True, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(1200):
                if server.poll() is not None:
                    raise RuntimeError(f"the server stopped: {log_path.read_text()}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                time.sleep(0.1)
            yield base
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)  # any sandbox worker left behind by the group
