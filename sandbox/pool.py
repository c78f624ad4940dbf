"""Sandbox worker processes: DuckDB runs buyer queries here, never in the API process.

Each worker is a separate process with OS limits (RLIMIT_AS for memory, RLIMIT_CPU per query), and
keeps a few warm, locked connections, one per product version. The API side sends a plan and
waits. If the worker overruns the deadline it is killed; if it dies (out of memory, a crash, the
CPU limit), the query fails with `timeout` or `resource_limit` and a fresh worker takes its place.
The API never shares a process with DuckDB running buyer SQL.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import pickle
import resource
import shutil
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import duckdb

from market import phases
from sandbox import dp, fanout
from sandbox.engine import (
    EngineLimits,
    Execution,
    Summaries,
    TableStatistics,
    execute_bits,
    execute_cube,
    execute_folded,
    execute_plan,
    execute_single,
    execute_summary,
    execute_two_level,
    open_locked,
    open_summary,
)
from sandbox.errors import QueryFailed
from sandbox.rewrite import Plan

_KEPT_ENVIRONMENT = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ"})
WARM_CONNECTIONS = 4
"""Locked connections a worker keeps open, most recently used product versions first."""
SUMMARY_CONNECTIONS = 4
"""Summary connections (engine.open_summary, the cube's) a worker keeps open, most recently used versions first."""
GRACE_SECONDS = 2.0
"""How long past the query timeout the API waits before it kills the worker."""
CANCEL_POLL_SECONDS = 0.1
"""How often the API side looks for a cancel request while a worker runs the query."""
ORPHAN_CHECK_SECONDS = 0.5
"""How often a worker looks whether the API process that started it is still there (see _watch_parent)."""


@dataclass(frozen=True)
class Job:
    tables: tuple[tuple[str, str], ...]
    """(table name, Parquet path) pairs: with the thread count, the key of the warm connection (warm_key)."""
    plan: Plan | dp.DPPlan
    max_rows: int
    seconds: float | None = None
    """This query's time and CPU budget (sandbox.service.budget_seconds); None: the pool's timeout."""
    single: bool = False
    """Run as one statement (engine.execute_single) rather than staged (sandbox.service decides)."""
    folded: bool = False
    """Run the staged method folded into one statement (engine.execute_folded); `single` wins."""
    two_level: bool = False
    """Run as the one exact statement with its counts in two levels (engine.execute_two_level); wins over both."""
    bits: tuple[tuple[int, int], ...] = ()
    """Per unit of the plan, the span of its bitmaps: run as the exact statement counting units by bitmaps
    (engine.execute_bits; sandbox.service decides); wins over the others when set."""
    cube: str = ""
    """Stage 1 read from the summary alone (sandbox.summary.cube; sandbox.service decides): run as
    engine.execute_cube; wins over the others when set."""
    cube_groups: int | None = None
    """With `cube`: an estimate of its groups from the distinct counts buyers see (sandbox.summary.cube_groups),
    which decides how its statement is written (engine.execute_cube); None: not known."""
    summary: str = ""
    """The summary rows that decide the threshold (sandbox.summary.lookup; sandbox.service decides): run as
    engine.execute_summary; wins over the others when set."""
    statistics_free: bool = False
    """Every table's file holds no value statistics (products.footer), as recorded when the version was
    built: the worker opens its connection with fewer optimizers off (engine.disabled_optimizers)."""
    seeds: tuple[tuple[tuple[str, ...], Any], ...] = ()
    """Statistics computed when the version was built (sandbox.service._seeds): keys of the worker's
    statistics cache after the version, and their values."""
    threads: int | None = None
    """DuckDB threads for this job (sandbox.service.threads_for, from the version's public row counts);
    None: the pool's configured threads."""

    def thread_count(self, limits: EngineLimits) -> int:
        return max(1, min(self.threads, limits.threads)) if self.threads else limits.threads

    def warm_key(self, limits: EngineLimits) -> tuple[Any, ...]:
        """The key of the worker's warm connection for this job: the version's files and the thread
        count (fixed when the connection opens: its configuration is locked)."""
        return (self.tables, self.thread_count(limits))

    def budget(self, limits: EngineLimits) -> float:
        return min(self.seconds, limits.timeout_seconds) if self.seconds else limits.timeout_seconds


@dataclass(frozen=True)
class Probe:
    """A job for operations and tests: the worker answers how many Python threads it has while it runs a
    job (threading.active_count, under its watcher), so a test can see they do not grow with jobs."""

    seconds: float = 1.0

    def budget(self, limits: EngineLimits) -> float:
        return self.seconds

    def warm_key(self, limits: EngineLimits) -> tuple[Any, ...]:
        return ()


SPILL_PREFIX = "sandbox-spill-"
"""A worker's DuckDB spill directories are `<tempdir>/sandbox-spill-<worker pid>-<random>` (engine.open_locked)."""


def remove_spill(pid: int) -> None:
    """Remove the spill directories of the worker `pid`, once it is dead (a killed worker cannot)."""
    for path in Path(tempfile.gettempdir()).glob(f"{SPILL_PREFIX}{pid}-*"):
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_spill() -> None:
    """Remove the spill directories of workers that are gone (killed with their API process, say)."""
    for path in Path(tempfile.gettempdir()).glob(f"{SPILL_PREFIX}*-*"):
        pid = path.name.removeprefix(SPILL_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _safe_detail(error: duckdb.Error) -> str:
    """The part of a DuckDB error that is safe to show.

    Binder and catalog errors describe the query, so they help the buyer fix it. Run-time errors
    could quote a value, which would be an error oracle for single records, so only their kind is
    shown. (Stage 1 cannot raise them on data: casts are TRY_CAST and arithmetic is in TRY().)
    """
    if isinstance(error, duckdb.BinderException | duckdb.CatalogException | duckdb.ParserException):
        return str(error).splitlines()[0][:300]
    return f"{type(error).__name__.removesuffix('Exception')} error while computing the result"


def _cpu_seconds() -> float:
    """This process's CPU (user + system, every thread) in seconds, to the microsecond. Not time.process_time:
    once a process has RLIMIT_CPU (_set_cpu_budget), Linux's process CPU clock advances only at the scheduler's
    ticks and switches (steps of ~4 ms here), while getrusage sums the threads' exact run times (branch rt15)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def _set_cpu_budget(seconds: float, threads: int) -> None:
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    budget = int(spent + seconds * max(1, threads) + 5)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (budget, hard))


def _watch_parent() -> None:  # pragma: no cover - a child
    """Exit once the API process that started this worker is gone (`kill -9`, the OOM killer).

    Its worker slot (sandbox/admission.py) died with it, so a restarted API may start a worker at once;
    without this, a worker in the middle of a query would run on until the query's own budget, on top
    of the workers the slots count. (Not PR_SET_PDEATHSIG: it follows the thread that started the
    worker, and the API's request threads come and go.)
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(ORPHAN_CHECK_SECONDS)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_main(  # pragma: no cover - a child
    connection: Connection, limits: EngineLimits, cancel: Any, accepted: Any, asked: Any
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent()
    watcher = _Watcher(cancel, asked)
    # The worker needs no configuration or secrets (database URL, Stripe keys): drop them.
    for name in list(os.environ):
        if name not in _KEPT_ENVIRONMENT:
            del os.environ[name]
    limit = limits.address_space_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warm: OrderedDict[tuple[Any, ...], duckdb.DuckDBPyConnection] = OrderedDict()
    summaries: OrderedDict[tuple[Any, ...], Summaries] = OrderedDict()
    stats: dict[tuple[str, ...], Any] = {}
    while True:
        try:
            received = connection.recv_bytes()
        except (EOFError, OSError):
            return
        started = _cpu_seconds()  # the job's CPU from here: unpickling it, every step, to its reply
        job = pickle.loads(received)
        if job is None:
            return
        accepted.value += 1  # the job is taken (_Worker.taken): no message, so no wake-up of the API side
        number = int(accepted.value)
        if isinstance(job, Probe):
            with watcher.watch(None, job.seconds, number=number):
                count = threading.active_count()
            connection.send(("ok", count))
            watcher.rest()
            continue
        reply = _run_job(job, limits, warm, stats, watcher, summaries, number)
        if reply[0] == "ok":
            # The whole job's CPU, rounded: it was the engine call's alone, by time.process_time, which ticks in
            # steps of the scheduler's tick (4 ms here) once RLIMIT_CPU is set (_set_cpu_budget), truncated.
            reply = ("ok", replace(reply[1], cpu_ms=round((_cpu_seconds() - started) * 1000)))
        connection.send(reply)
        watcher.rest()  # after the reply: the watcher's wake-up is off the query's path


class _Watch:
    """One job under the watcher: its connection, deadline, and whether the deadline or a cancel fired."""

    __slots__ = ("also", "cancelled", "db", "deadline_at", "done", "number", "timed_out")

    def __init__(
        self,
        db: duckdb.DuckDBPyConnection | None,
        seconds: float,
        also: Summaries | None = None,
        number: int | None = None,
    ) -> None:
        self.db = db
        self.number = number
        """The job's number (the worker's count of jobs taken, _Worker.sent on the API side); None: unnumbered."""
        self.also = also
        """The version's summary connection when the job may run there (the cube): interrupted with `db`."""
        self.deadline_at = time.monotonic() + seconds
        self.timed_out = False
        self.cancelled = False
        self.done = False


class _Watcher:
    """The worker's one long-lived thread that interrupts DuckDB for the current job: at its deadline,
    or when the API side sets `cancel` (sandbox.cancellation).

    It replaces two threads per query (a deadline timer and a cancel watcher, started and joined on
    every job). Idle, it blocks on a local event; while a job runs, it blocks on `cancel` until the
    job's deadline. Interrupts happen under the lock that the end of a watch takes, so none reaches a
    connection after its job ended.

    Numbered jobs (branch rt15; `asked`, a shared value): the API side asks to cancel job N by writing N to
    `asked` and then setting `cancel`; the watcher, woken, clears `cancel` and then reads `asked`, and
    interrupts only when it names the job it watches (a request written before a clear is read after it; one
    set after it wakes the watcher again). When a job ends the worker marks it done, sends its reply, and only
    then sets `cancel` (rest) so the watcher goes idle: a wake-up that may reach the next job, which it
    ignores (it is not that job's number), and which costs the query nothing (it was 0.06-0.09 ms before the
    reply, and the API side's clear before each job). A cancel requested as soon as a job is sent, before the
    worker takes it, still reaches that job (its number is the one sent). Unnumbered watches (`asked` None, as
    before rt15): any wake-up is a cancel, and the end of the watch sets `cancel`, which the caller clears
    before the next job.
    """

    def __init__(self, cancel: Any, asked: Any = None) -> None:
        self._cancel = cancel
        self._asked = asked
        self._lock = threading.Lock()
        self._current: _Watch | None = None
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sandbox-watch", daemon=True)
        self.thread.start()

    @contextlib.contextmanager
    def watch(
        self,
        db: duckdb.DuckDBPyConnection | None,
        seconds: float,
        also: Summaries | None = None,
        number: int | None = None,
    ) -> Iterator[_Watch]:
        current = _Watch(db, seconds, also, number if self._asked is not None else None)
        with self._lock:
            self._current = current
        self._wake.set()
        try:
            yield current
        finally:
            with self._lock:
                current.done = True
                self._current = None
            if current.number is None:
                self._cancel.set()

    def rest(self) -> None:
        """After a numbered job's reply: wake the watcher from that job's wait, so that it goes idle."""
        self._cancel.set()

    def _run(self) -> None:  # pragma: no cover - a child's thread
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                current = self._current
            while current is not None and not current.done:
                left = current.deadline_at - time.monotonic()
                woken = left > 0 and self._cancel.wait(left)
                requested = woken
                if woken and current.number is not None:
                    self._cancel.clear()  # then read: a request written before the clear is seen
                    requested = int(self._asked.value) == current.number
                with self._lock:
                    if current.done:
                        break
                    if requested:
                        current.cancelled = True
                    elif woken or time.monotonic() < current.deadline_at:
                        continue  # a cleared flag, or a wake-up for no job of this number: wait on
                    else:
                        current.timed_out = True
                    if current.db is not None:
                        current.db.interrupt()
                    if current.also is not None:  # interrupting an idle connection is harmless (tested)
                        current.also.interrupt()
                    break


def _run_job(
    job: Job,
    limits: EngineLimits,
    warm: OrderedDict[Any, duckdb.DuckDBPyConnection],
    stats: dict[tuple[str, ...], Any],
    watcher: _Watcher,
    summaries: OrderedDict[tuple[Any, ...], Summaries] | None = None,
    number: int | None = None,
) -> tuple[Any, ...]:
    try:
        threads = job.thread_count(limits)
        key = job.warm_key(limits)
        db = warm.get(key)
        if db is None:
            opened = limits if threads == limits.threads else replace(limits, threads=threads)
            db = open_locked({name: Path(path) for name, path in job.tables}, opened, job.statistics_free)
            warm[key] = db
            while len(warm) > WARM_CONNECTIONS:
                _, old = warm.popitem(last=False)
                old.close()
        warm.move_to_end(key)
        _set_cpu_budget(job.budget(limits), threads)
        # Keyed by the files, which are immutable for a product version.
        version = "|".join(path for _, path in job.tables)
        for key, value in job.seeds:  # computed at build time: never on a query's time
            stats.setdefault((version, *key), value)
        statistics = TableStatistics(db, stats, version=version)
        lean = _summary_connection(job, limits, summaries) if job.cube and summaries is not None else None
        with watcher.watch(db, job.budget(limits), lean, number) as watch:
            try:
                if isinstance(job.plan, dp.DPPlan):
                    return ("ok", dp.execute(db, job.plan, statistics))
                refused = fanout.refusal(job.plan.joins, statistics, limits.max_join_fanout)
                if refused is not None:  # before anything runs: from public statistics and the text only
                    return ("ok", Execution([], 0, 0, [], False, 0, [], refused=refused))
                # Timing not fixed: no seeds either (they only serve fixed timing; execute_plan reads `fixed`).
                plan = job.plan if limits.fixed_timing else replace(job.plan, seeded=None)
                if job.cube:
                    return ("ok", execute_cube(db, plan, job.max_rows, statistics, job.cube, lean, job.cube_groups))
                if job.summary:
                    return ("ok", execute_summary(db, plan, job.max_rows, statistics, job.summary))
                if job.bits:
                    return ("ok", execute_bits(db, plan, job.max_rows, statistics, job.bits))
                if job.two_level:
                    return ("ok", execute_two_level(db, plan, job.max_rows, statistics))
                if job.single:
                    return ("ok", execute_single(db, plan, job.max_rows, statistics))
                if job.folded:
                    return ("ok", execute_folded(db, plan, job.max_rows, statistics))
                return ("ok", execute_plan(db, job.plan, job.max_rows, statistics, fixed=limits.fixed_timing))
            except duckdb.Error as error:
                if watch.cancelled:
                    return ("error", "query_cancelled", "")
                if isinstance(error, duckdb.InterruptException):
                    return ("error", "timeout", "")
                if watch.timed_out or "maximum execution time" in str(error):
                    return ("error", "timeout", "")
                if isinstance(error, duckdb.OutOfMemoryException):
                    return ("error", "resource_limit", "")
                return ("error", "query_failed", _safe_detail(error))
            except (ArithmeticError, ValueError):
                # DuckDB computed the value but Python cannot hold it: an INTERVAL beyond timedelta's
                # +-999,999,999 days (OverflowError while rows convert). Raised out of the worker, it
                # killed the process (red team red12). Only values the answer would show, or constants,
                # reach a conversion, so the refusal says nothing about hidden rows.
                return ("error", "answer_out_of_range", "")
    except MemoryError:
        return ("error", "resource_limit", "")


def _summary_connection(
    job: Job, limits: EngineLimits, summaries: OrderedDict[tuple[Any, ...], Summaries]
) -> Summaries:
    """The version's summary connection (engine.open_summary, branch rt15), opened on its first cube job; at most
    SUMMARY_CONNECTIONS kept, the least recently used closed. Keyed by the version's files (one thread always)."""
    key = job.tables
    found = summaries.get(key)
    if found is None:
        found = summaries[key] = open_summary(
            {name: Path(path) for name, path in job.tables}, limits, job.statistics_free
        )
        while len(summaries) > SUMMARY_CONNECTIONS:
            _, old = summaries.popitem(last=False)
            old.close()
    summaries.move_to_end(key)
    return found


class _Worker:
    def __init__(self, context: Any, limits: EngineLimits) -> None:
        parent, child = context.Pipe(duplex=True)
        self.connection: Connection = parent
        self.cancel = context.Event()
        """Set by the API side to interrupt the running job (sandbox.cancellation), after writing its number
        to `asked`."""
        self.asked = context.Value("q", 0, lock=False)
        """The number of the job (`sent` when it was sent) whose cancel the API side asked for (_Watcher)."""
        self.accepted = context.Value("q", 0, lock=False)
        """Jobs the worker has taken (it counts them as it receives each one), in shared memory: the API side
        knows whether a job was taken without a message, and so without a wake-up, per job."""
        self.sent = 0
        """Jobs the API side has sent."""
        self.process: BaseProcess = context.Process(
            target=_worker_main, args=(child, limits, self.cancel, self.accepted, self.asked), daemon=True
        )
        self.process.start()
        child.close()
        self.warm: set[tuple[Any, ...]] = set()
        self.busy = False
        """True from sending a job until the job's end."""

    @property
    def taken(self) -> bool:
        """Whether the worker has taken every job sent to it (the last one included)."""
        return int(self.accepted.value) >= self.sent

    @property
    def running(self) -> bool:
        """True from the worker's taking a job until the job's end."""
        return self.busy and self.taken

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.connection.close()
        if self.process.pid is not None and not self.process.is_alive():
            remove_spill(self.process.pid)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.connection.send(None)
        self.process.join(timeout=2)
        self.kill()


class WorkerPool:
    """A fixed number of sandbox workers; each query borrows one, preferring one already warm for it."""

    def __init__(self, limits: EngineLimits) -> None:
        self.limits = limits
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max(1, limits.workers))
        self._closed = False
        sweep_spill()

    def _acquire(self, key: tuple[Any, ...]) -> _Worker:
        self._slots.acquire()
        with self._lock:
            dead = [w for w in self._idle if not w.process.is_alive()]
            self._idle = [w for w in self._idle if w.process.is_alive()]
            chosen = next((w for w in self._idle if key in w.warm), None)
            if chosen is None and self._idle:
                chosen = self._idle[-1]
            if chosen is not None:
                self._idle.remove(chosen)
                self._busy.add(chosen)
        for worker in dead:  # died while idle (e.g. killed by the OS): replaced without failing a query
            worker.kill()
        if chosen is not None:
            return chosen
        try:
            worker = _Worker(self._context, self.limits)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._busy.add(worker)
        return worker

    def _release(self, worker: _Worker, keep: bool) -> None:
        worker.busy = False
        with self._lock:
            self._busy.discard(worker)
            if keep and not self._closed:
                self._idle.append(worker)
        self._slots.release()

    def probe(self) -> int:
        """Python threads of a worker while it runs a job (Probe), for tests and operations."""
        count: int = self.run(Probe())  # type: ignore[assignment]
        return count

    def run(self, job: Job | Probe, cancelled: Callable[[], bool] | None = None) -> Execution:
        """Run `job` in a worker; raises QueryFailed for timeouts, resource limits and query errors.

        A worker counts each job it takes (_Worker.accepted, shared memory, so no extra message). One that
        dies before taking the job was already dead (killed while idle): the job goes to a fresh worker,
        once, and is not failed.
        While it runs, `cancelled()` is asked every CANCEL_POLL_SECONDS; once it answers True the
        worker interrupts DuckDB (and is killed if it does not stop within GRACE_SECONDS), and the
        query fails with `query_cancelled`.
        """
        for attempt in range(2):
            started = time.perf_counter()
            key = job.warm_key(self.limits)
            worker = self._acquire(key)
            keep = False
            fresh = worker.sent == 0  # a new process: it takes the job once it has started (imports)
            try:
                worker.busy = True
                worker.sent += 1  # the job's number: a cancel names it (_Watcher), no flag to clear per job
                worker.connection.send(job)
                phases.add("5c job sent (in 5)", time.perf_counter() - started)
            except (EOFError, OSError):
                self._release(worker, False)
                worker.kill()
                if attempt == 0:
                    continue
                raise QueryFailed("resource_limit", limit=self.limits.memory_limit) from None
            try:
                # A fresh worker first starts, for up to the old acknowledgement's wait (GRACE_SECONDS + 10).
                allowance = GRACE_SECONDS + (GRACE_SECONDS + 10 if fresh else 0)
                deadline_at = time.monotonic() + job.budget(self.limits) + allowance
                started = time.perf_counter()
                if not self._await_reply(worker, deadline_at, cancelled):
                    worker.kill()
                    if not worker.taken:
                        raise EOFError("the worker did not take the job")
                    raise QueryFailed("timeout", status_code=408, seconds=job.budget(self.limits))
                replied = time.perf_counter()
                reply = worker.connection.recv()
                phases.add("5d worker run, until its reply is ready (in 5)", replied - started)
                phases.add("5d' reply received (in 5)", time.perf_counter() - replied)
                worker.warm.add(key)
                keep = True
            except (EOFError, OSError) as error:
                worker.kill()
                if not worker.taken:  # dead before it took the job: it was dead already (killed while idle)
                    self._release(worker, False)
                    if attempt == 0:
                        continue
                    raise QueryFailed("resource_limit", limit=self.limits.memory_limit) from None
                code = worker.process.exitcode
                if code == -signal.SIGXCPU:
                    raise QueryFailed("timeout", status_code=408, seconds=job.budget(self.limits)) from error
                raise QueryFailed("resource_limit", limit=self.limits.memory_limit) from error
            finally:
                if worker.busy:
                    self._release(worker, keep)
            break
        if reply[0] == "ok":
            execution: Execution = reply[1]
            return execution
        _, code, detail = reply
        if code == "timeout":
            raise QueryFailed("timeout", status_code=408, seconds=job.budget(self.limits))
        if code == "resource_limit":
            raise QueryFailed("resource_limit", limit=self.limits.memory_limit)
        if code == "query_cancelled":
            raise QueryFailed("query_cancelled", status_code=409)
        if code == "answer_out_of_range":
            raise QueryFailed("answer_out_of_range")
        raise QueryFailed("query_failed", detail=detail)

    @staticmethod
    def _await_reply(worker: _Worker, deadline_at: float, cancelled: Callable[[], bool] | None) -> bool:
        """Wait for the worker's reply until `deadline_at`; False if none came. A cancel request makes the
        worker interrupt the query (its reply then says so); a worker that ignores it is killed."""
        while True:
            left = deadline_at - time.monotonic()
            if left <= 0:
                return False
            if worker.connection.poll(min(left, CANCEL_POLL_SECONDS) if cancelled else left):
                return True
            if cancelled is not None and cancelled():
                worker.asked.value = worker.sent  # first the number, then the flag (_Watcher)
                worker.cancel.set()
                if worker.connection.poll(GRACE_SECONDS):
                    return True
                worker.kill()
                raise QueryFailed("query_cancelled", status_code=409)

    def prestart(self) -> None:
        """Start the missing workers now, so that the first queries do not wait for a process to spawn."""
        with self._lock:
            missing = self.limits.workers - len(self._idle) - len(self._busy)
        for _ in range(max(0, missing)):
            worker = _Worker(self._context, self.limits)
            with self._lock:
                if self._closed or len(self._idle) + len(self._busy) >= self.limits.workers:
                    stop = True
                else:
                    stop = False
                    self._idle.append(worker)
            if stop:
                worker.stop()
                return

    def worker_pids(self, *, busy: bool = False) -> list[int]:
        """Process ids of the idle workers, or of those running a job, for operations and tests."""
        with self._lock:
            workers = [w for w in self._busy if w.running] if busy else self._idle
            return [w.process.pid for w in workers if w.process.pid is not None]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()


_pools: dict[EngineLimits, WorkerPool] = {}
_pools_lock = threading.Lock()


def shared_pool(limits: EngineLimits) -> WorkerPool:
    """The process-wide pool for `limits`, started on first use and stopped at exit."""
    with _pools_lock:
        pool = _pools.get(limits)
        if pool is None:
            pool = _pools[limits] = WorkerPool(limits)
        return pool


@atexit.register
def _close_pools() -> None:
    if os.getpid() == _OWNER:
        for pool in list(_pools.values()):
            pool.close()


_OWNER = os.getpid()
