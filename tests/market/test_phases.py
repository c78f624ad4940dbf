"""market.phases: the per-phase timings of the query path exist only behind MARKET_DEBUG_PHASES=1."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
from market import phases
record = phases.start_request()
with phases.phase("work"):
    sum(range(1000))
phases.add("work", 0.002)
phases.end_request(record, 0.003)
print("\\n".join(phases.report()) or "nothing")
"""


def _run(flag: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MARKET_DEBUG_PHASES"}
    if flag is not None:
        env["MARKET_DEBUG_PHASES"] = flag
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_phases_are_timed_and_reported_with_the_flag() -> None:
    out = _run("1")
    assert "work: n 2," in out
    assert "request (whole): n 1, p50 3.00 ms" in out
    assert "slowest 1 of 1 requests, mean 3.00 ms" in out


def test_nothing_is_timed_without_the_flag() -> None:
    assert _run(None).strip() == "nothing"
    assert _run("0").strip() == "nothing"


RESET = """
from market import phases
record = phases.start_request()
phases.add("warm-up", 0.5)
phases.end_request(record, 0.5)
phases.reset()
record = phases.start_request()
phases.add("work", 0.002)
phases.end_request(record, 0.003)
print("\\n".join(phases.report()))
"""


def test_a_reset_forgets_the_warm_up() -> None:
    env = {**os.environ, "MARKET_DEBUG_PHASES": "1"}
    done = subprocess.run([sys.executable, "-c", RESET], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "warm-up" not in done.stdout and "work: n 1," in done.stdout
    assert "request (whole): n 1, p50 3.00 ms" in done.stdout


HOPS = """
import contextvars, threading
from market import phases
record = phases.start_request()
phases.on_thread("on the loop")

def hand_to_a_thread(site):  # as FastAPI's threadpool: a copy of the request's context per call
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(lambda: [phases.on_thread(site), phases.on_thread(site)],))
    thread.start()
    thread.join()

hand_to_a_thread("first")
hand_to_a_thread("second")
phases.end_request(record, 0.003, "POST /x")
print(phases.hops())
print("\\n".join(phases.report()))
"""


def test_each_call_handed_to_a_thread_is_a_hop_of_its_own() -> None:
    env = {**os.environ, "MARKET_DEBUG_PHASES": "1"}
    done = subprocess.run([sys.executable, "-c", HOPS], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    sites = "(('on the loop', 0), ('first', 1), ('first', 1), ('second', 2), ('second', 2))"
    assert f"[('POST /x', {sites})]" in done.stdout
    assert "thread hops of POST /x (hops x requests): 2 x1" in done.stdout
