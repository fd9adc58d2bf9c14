"""The shutdown watchdog: a process whose shutdown hangs still ends, and one that ends in
time is not held up by it (dwtrio.main.arm_shutdown_watchdog)."""

from __future__ import annotations

import subprocess
import sys
import time

SCRIPT = """
import logging, sys, time
from dwtrio.main import arm_shutdown_watchdog
logging.basicConfig(level=logging.INFO)
arm_shutdown_watchdog(float(sys.argv[1]))
if sys.argv[2] == "hang":
    time.sleep(60)  # a shutdown that never finishes
"""


def run(limit_s: float, mode: str) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(limit_s), mode],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done, time.monotonic() - began


def test_a_hung_shutdown_ends_the_process_at_the_limit() -> None:
    done, took = run(0.5, "hang")
    assert done.returncode == 1
    assert "shutdown did not finish within 0.5 s of the signal; exiting now" in done.stderr
    assert took < 20  # not the 60 s the hang would have taken


def test_a_shutdown_in_time_exits_normally_at_once() -> None:
    done, took = run(20.0, "finish")
    assert done.returncode == 0, done.stderr
    assert "shutdown did not finish" not in done.stderr
    assert took < 15  # the armed timer does not keep the process alive
