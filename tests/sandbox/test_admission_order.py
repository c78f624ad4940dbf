"""The order in which waiting queries get a worker: by organisation, in turn (issue 9, fairness).

Waiters are threads (and, for the crash, processes) that go through `Admission.worker` exactly as the
API's queries do, with one worker, so that each release of the worker serves exactly one waiter. A
waiter is let in only once the previous one is queued, so the arrival order is the one written.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import ServiceUnavailable
from sandbox.admission import Admission
from tests.support.waiting import until

WAIT = 10.0
"""Seconds any step may take before the test gives up (far above what one takes)."""


def _admission(directory: Path, *, queue_size: int = 32, queue_timeout: float = 30.0) -> Admission:
    return Admission(directory, workers=1, per_org=32, queue_size=queue_size, queue_timeout=queue_timeout)


_until = functools.partial(until, seconds=WAIT, every=0.002)


class Line:
    """Queries of named organisations, each holding the one worker until told to leave."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.served: list[tuple[int, str]] = []
        """(query number, organisation), in the order the queries got the worker."""
        self.errors: list[BaseException] = []
        self.leave: list[threading.Event] = []
        self.threads: list[threading.Thread] = []
        self.changed = threading.Condition()

    def queued(self) -> int:
        return self.admission.held(self.admission.queue_slots())

    def arrive(self, org: str) -> None:
        """One query of `org`; returns once it runs or waits in the queue."""
        number, leave = len(self.leave), threading.Event()
        before_served, before_queued = len(self.served), self.queued()

        def query() -> None:
            try:
                with self.admission.worker(org):
                    with self.changed:
                        self.served.append((number, org))
                        self.changed.notify_all()
                    leave.wait(WAIT)
            except BaseException as error:
                self.errors.append(error)

        thread = threading.Thread(target=query, daemon=True)
        self.leave.append(leave)
        self.threads.append(thread)
        thread.start()
        _until(lambda: len(self.served) > before_served or self.queued() > before_queued, f"{org} arrived")

    def release(self) -> str:
        """End the running query (the last served); answers the organisation of the one served next."""
        served = len(self.served)
        self.leave[self.served[-1][0]].set()
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.served) > served, WAIT), "nobody was served"
        return self.served[-1][1]

    def finish(self) -> None:
        for leave in self.leave:
            leave.set()
        for thread in self.threads:
            thread.join(WAIT)
        assert not self.errors, self.errors


@contextmanager
def line() -> Iterator[Line]:
    with tempfile.TemporaryDirectory() as tmp:
        queue = Line(_admission(Path(tmp)))
        try:
            yield queue
        finally:
            queue.finish()


def test_another_organisations_waiter_is_served_within_two_releases_however_many_a_flooder_queued() -> None:
    for _ in range(5):  # on wake-all-and-grab the victim comes in the first two of nine about one time in four
        with line() as queue:
            queue.arrive("holder")
            for _ in range(8):
                queue.arrive("flooder")
            queue.arrive("victim")
            first_two = [queue.release(), queue.release()]
        assert "victim" in first_two, queue.served


ORGS = ("a", "b", "c", "d")


@settings(max_examples=30, deadline=None)
@given(arrivals=st.lists(st.sampled_from(ORGS), min_size=1, max_size=14))
def test_waiters_queued_together_are_served_by_organisation_in_turn(arrivals: list[str]) -> None:
    """Each organisation's k-th waiting query is served before any organisation's (k+2)-th, and all are."""
    with line() as queue:
        queue.arrive("holder")
        for org in arrivals:
            queue.arrive(org)
        order = [queue.release() for _ in arrivals]
    total = {org: arrivals.count(org) for org in ORGS}
    count = dict.fromkeys(ORGS, 0)
    for org in order:
        count[org] += 1
        k = count[org] - 2  # this is `org`'s (k+2)-th: everyone's (k+1)-th (if it has one) came before
        for other in ORGS:
            assert count[other] >= min(total[other], k + 1), (arrivals, order)
    assert count == total, (arrivals, order)


steps = st.lists(st.one_of(st.sampled_from(ORGS), st.just("release")), min_size=1, max_size=24)


@settings(max_examples=30, deadline=None)
@given(steps=steps)
def test_while_an_organisation_waits_no_other_is_served_twice(steps: list[str]) -> None:
    """Arrivals and releases interleaved: between two services of one organisation, every organisation
    that waited all along was served (round robin by organisation), and in the end every waiter is."""
    with line() as queue:
        queue.arrive("holder")
        waiting = dict.fromkeys(ORGS, 0)
        since: dict[str, int] = {}  # the clock at which an organisation's present wait began
        last_served: dict[str, int] = {}
        clock = 0

        def serve() -> None:
            nonlocal clock
            org = queue.release()
            clock += 1
            if org in last_served:
                skipped = [y for y in ORGS if y != org and waiting[y] and since[y] < last_served[org]]
                assert not skipped, (steps, queue.served, skipped)
            last_served[org] = clock
            waiting[org] -= 1
            since[org] = clock

        for step in steps:
            if step == "release":
                if any(waiting.values()):
                    serve()
                continue
            queue.arrive(step)
            clock += 1
            if not waiting[step]:
                since[step] = clock
            waiting[step] += 1
        while any(waiting.values()):
            serve()
        assert len(queue.served) == 1 + sum(step != "release" for step in steps)


def _queue_and_stay(directory: str, org: str) -> None:
    """A query in another process that takes a worker (waiting for it) and then never ends."""
    with _admission(Path(directory)).worker(org):
        time.sleep(3600)


def _process(directory: Path, org: str, served: Path | None = None) -> multiprocessing.process.BaseProcess:
    target, args = (
        (_queue_and_stay, (str(directory), org))
        if served is None
        else (_queue_and_note, (str(directory), org, str(served)))
    )
    process = multiprocessing.get_context("spawn").Process(target=target, args=args)
    process.start()
    return process


def _queue_and_note(directory: str, org: str, served: str) -> None:
    """As `_queue_and_stay`, writing `served` once it holds the worker."""
    with _admission(Path(directory)).worker(org):
        Path(served).write_text(org)
        time.sleep(3600)


def _kill(process: multiprocessing.process.BaseProcess) -> None:
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join(WAIT)


def test_a_waiter_killed_while_queued_blocks_nobody_and_frees_its_queue_slot(tmp_path: Path) -> None:
    admission = Admission(tmp_path, workers=1, per_org=32, queue_size=2, queue_timeout=30.0)
    queue = Line(admission)
    try:
        queue.arrive("holder")
        dead = _process(tmp_path, "dead")  # first in the queue, so first in turn
        _until(lambda: queue.queued() == 1, "the doomed process queued")
        queue.arrive("victim")
        _kill(dead)
        queue.arrive("late")  # the dead process's queue slot is free again (the queue has two)
        started = time.monotonic()
        assert queue.release() == "victim"
        assert time.monotonic() - started < 1.0
        assert queue.release() == "late"
    finally:
        queue.finish()


def test_a_holder_killed_while_running_frees_its_worker_for_the_next_in_turn(tmp_path: Path) -> None:
    admission = _admission(tmp_path)
    holder = _process(tmp_path, "holder")
    _until(lambda: admission.held(admission.worker_slots()) == 1, "the doomed process runs")
    queue = Line(admission)
    try:
        queue.arrive("victim")
        started = time.monotonic()
        _kill(holder)  # no release rings anyone: the next in turn finds the worker at its next wake-up
        with queue.changed:
            assert queue.changed.wait_for(lambda: queue.served, WAIT)
        assert time.monotonic() - started < 1.0
    finally:
        queue.finish()


def test_a_full_queue_and_a_timeout_still_answer_503_and_leave_nothing_held(tmp_path: Path) -> None:
    admission = Admission(tmp_path, workers=1, per_org=32, queue_size=1, queue_timeout=0.2)
    with admission.occupy(admission.worker_slots()):
        queue = Line(admission)
        queue.arrive("waiter")
        try:
            with admission.worker("other"):
                raise AssertionError("a full queue admitted a query")
        except ServiceUnavailable as busy:
            assert busy.code == "sandbox_busy" and busy.retry_after
        for thread in queue.threads:
            thread.join(WAIT)
        assert len(queue.errors) == 1 and isinstance(queue.errors[0], ServiceUnavailable)
        assert admission.held(admission.queue_slots()) == 0


def test_a_waiter_cancelled_while_first_in_turn_leaves_and_the_next_is_served() -> None:
    from sandbox.errors import QueryFailed

    with line() as queue:
        queue.arrive("holder")
        cancel = threading.Event()
        outcome: list[BaseException] = []

        def cancelled_waiter() -> None:
            try:
                with queue.admission.worker("cancelled", cancel.is_set):
                    raise AssertionError("a cancelled waiter got a worker")
            except QueryFailed as error:
                outcome.append(error)

        thread = threading.Thread(target=cancelled_waiter, daemon=True)
        thread.start()
        _until(lambda: queue.queued() == 1, "the waiter to cancel queued")
        queue.arrive("next")
        cancel.set()
        thread.join(WAIT)
        assert [error.code for error in outcome] == ["query_cancelled"]  # type: ignore[attr-defined]
        assert queue.release() == "next"


def test_a_book_garbled_on_disk_is_rebuilt_from_the_locked_queue_slots_and_nobody_is_stuck() -> None:
    import sandbox.admission as admission_module

    with line() as queue:
        queue.arrive("holder")
        for org in ("a", "b", "a", "c"):
            queue.arrive(org)
        (queue.admission.directory / admission_module.QUEUE_LOCK).write_bytes(b"\x00garbage{")
        served = sorted(queue.release() for _ in range(4))
    assert served == ["a", "a", "b", "c"]


def test_the_turn_holds_across_processes(tmp_path: Path) -> None:
    """Each query in its own process (as under `market serve --workers N`); a worker is freed by killing
    its holder (no ring: the first in turn finds it at its next nap)."""
    slots, notes = tmp_path / "slots", tmp_path / "notes"
    slots.mkdir()
    notes.mkdir()
    admission = _admission(slots)
    processes = []

    def start(name: str, org: str) -> None:
        before = admission.held(admission.queue_slots())
        processes.append((name, _process(slots, org, notes / name)))
        _until(lambda: (notes / name).exists() or admission.held(admission.queue_slots()) > before, f"{name} queued")

    try:
        start("holder", "holder")
        for i in range(4):
            start(f"flooder-{i}", "flooder")
        start("victim", "victim")
        order = []
        running = "holder"
        for _ in range(2):
            _kill(dict(processes)[running])
            _until(lambda: len({p.name for p in notes.iterdir()}) > len(order) + 1, "the next served")
            running = next(p.name for p in notes.iterdir() if p.name not in order and p.name != "holder")
            order.append(running)
        assert order == ["flooder-0", "victim"], order
    finally:
        for _, process in processes:
            if process.is_alive():
                _kill(process)
