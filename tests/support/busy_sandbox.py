"""A market whose sandbox is made busy on purpose: the fixture that builds it with few worker slots, and
the slots other API processes' queries take (sandbox.admission), for HTTP tests of what a query meets when
every worker is taken (a cached answer, `503 sandbox_busy`, a wait in the queue).

Slots are taken with `Admission.occupy`, exactly as other API processes' queries take them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from metering.service import sandbox_admission
from sandbox.admission import Admission
from tests.conftest import Market
from tests.support.markets import market_fixture as market_fixture  # where the modules here import it from

T = TypeVar("T")

ONE_WORKER_QUEUED: dict[str, Any] = {
    "sandbox_workers": 1,
    "sandbox_queue_size": 4,
    "sandbox_queue_timeout_seconds": 60.0,
}
"""One worker and a queue that waits a minute: a query sent while the worker is taken waits in the queue."""
ONE_WORKER_NO_QUEUE: dict[str, Any] = {
    "sandbox_workers": 1,
    "sandbox_queue_size": 0,
    "sandbox_queue_timeout_seconds": 0.3,
}
"""One worker and no queue: a query that needs a worker while it is taken is `503 sandbox_busy` at once."""


@contextlib.contextmanager
def every_worker_taken(market: Market) -> Iterator[Admission]:
    """Every sandbox worker slot taken, as other API processes' queries take them: inside, a query that
    needs a worker waits in the queue (or is refused), and only a cached answer is served at once."""
    admission = sandbox_admission(market.settings)
    with admission.occupy(admission.worker_slots()):
        yield admission


def wait_until_queued(admission: Admission, pending: Future[Any], *, count: int = 1, seconds: float = 60.0) -> None:
    """Return once `count` queries wait in the admission queue; fail if `pending` is answered first."""
    deadline = time.monotonic() + seconds
    while admission.held(admission.queue_slots()) < count:
        assert not pending.done(), f"answered without waiting in the queue: {pending.result()!r}"
        assert time.monotonic() < deadline, "the query never queued"
        time.sleep(0.02)


@contextlib.contextmanager
def queued(market: Market, send: Callable[[], T]) -> Iterator[Future[T]]:
    """`send` (a request) run in a thread while every worker is taken; entered once it waits in the
    admission queue. On leaving, the workers are freed and `send` has been answered: `.result()` is ready."""
    with ThreadPoolExecutor(1) as pool, every_worker_taken(market) as admission:
        sent = pool.submit(send)
        wait_until_queued(admission, sent)
        yield sent
