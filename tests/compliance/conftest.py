"""A real SMTP server (aiosmtpd) on a free local port, and a marketplace configured to use it."""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import Market, running_market


@dataclass
class Mailbox:
    """What the SMTP server received; `refuse` makes it answer 451 (try again later) to every message."""

    messages: list[Message] = field(default_factory=list)
    refuse: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return "451 Try again later"
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted"

    def subjects(self) -> list[str]:
        with self.lock:
            return [str(m["Subject"]) for m in self.messages]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox
    controller: Controller


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(port, mailbox, controller)
    finally:
        controller.stop()


@pytest.fixture
def mailing_market(database_factory: Any, tmp_path: Path, smtp_server: SmtpServer) -> Iterator[Market]:
    """A marketplace whose e-mail goes to the test's SMTP server."""
    with running_market(
        database_factory, tmp_path / "data", smtp_host="127.0.0.1", smtp_port=smtp_server.port
    ) as running:
        yield running
