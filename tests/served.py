"""A real `market serve` process on a test's database, for what an in-process client cannot show:
answers sent before commits, `kill -9` in the middle of a payment, webhooks from localstripe."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from market import clock
from tests.conftest import Market


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def served(market: Market, tmp_path: Path, workers: int = 1, **env: str) -> Iterator[Served]:
    """`market serve --workers N` in a subprocess on the market's database, clock and settings (plus `env`)."""
    port = free_port()
    environment = {
        **os.environ,
        "MARKET_DATA_DIR": str(market.settings.data_dir),
        "MARKET_DATABASE_URL": market.settings.effective_database_url,
        "MARKET_SCHEDULER_ENABLED": "false",
        "MARKET_CLOCK_START": clock.utcnow().isoformat(),
        **env,
    }
    log = (tmp_path / f"server-{port}.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from market.cli import app; app()",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # a loaded CI machine may take a minute to import the app
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.2)
        yield Served(url, process)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)
        log.close()


@contextmanager
def killing_proxy(upstream: str, victim: list[subprocess.Popen[bytes]]) -> Iterator[str]:
    """An HTTP proxy to `upstream` (localstripe) that, once Stripe has created a PaymentIntent,
    kills the calling server with SIGKILL before passing the answer on: a crash between Stripe's
    charge and our commit."""

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            request = urllib.request.Request(upstream + self.path, data=body, headers=headers, method=self.command)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, payload, kinds = response.status, response.read(), response.headers
            except urllib.error.HTTPError as error:
                status, payload, kinds = error.code, error.read(), error.headers
            if self.command == "POST" and self.path.startswith("/v1/payment_intents") and victim:
                process = victim.pop()
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=20)
            try:
                self.send_response(status)
                self.send_header("Content-Type", kinds.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the caller was killed

        do_GET = do_POST = do_DELETE = _forward

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
