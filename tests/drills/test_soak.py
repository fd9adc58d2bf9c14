"""The soak's CI version: ``python -m bench soak --duration 60``, as a user runs it.

Two dwtrio nodes, two SDK workers and an SDK load at 3 workflows a second (greeters,
timer-and-signal waiters, parents with a child) for 60 s on the real Postgres and
Redis, runs shifted past retention 20 s after they close (bench/soak.py says how). The
test checks what the bench wrote: a sample every ~10 s through the load and the drain,
the books clean (every acknowledged start completed once with its result, no gap, no
run left open), retention pruned during the run, pools within their size, the SDK
workers alive, the CSV and (with matplotlib) the plot. The 30-minute figures are in
docs/reliability.md; a minute is too short for their growth verdicts, which are only
required here to be computed.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

DURATION_S = 60
RATE = 3
#: The run's own bound: 60 s of load, the drain (at most 90 s) and the setup around it.
TIMEOUT_S = DURATION_S + 200

pytestmark = [pytest.mark.drill, pytest.mark.slow, pytest.mark.sdk]


def test_soak_for_a_minute(pg_admin_dsn: str, redis_url: str, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--dsn",
        pg_admin_dsn,
        "--redis-url",
        redis_url,
        "soak",
        "--duration",
        str(DURATION_S),
        "--rate",
        str(RATE),
        "--retention-after",
        "20",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    output = f"stdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-6000:]}"
    print(output)
    assert done.returncode == 0, output

    [result_file] = tmp_path.glob("soak-*.json")
    result = json.loads(result_file.read_text())
    rows = result["rows"]
    [csv_file] = tmp_path.glob("soak-*.csv")
    with csv_file.open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    if importlib.util.find_spec("matplotlib") is not None:
        assert Path(result["files"]["png"]).stat().st_size > 10_000
    else:
        assert result["files"]["png"] is None

    # A sample every ~10 s from the start of the load to the end of the drain.
    times = [r["t_s"] for r in rows]
    assert times[0] < 2, times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(8 <= gap <= 13 for gap in gaps[:-1]), times
    assert 0 < gaps[-1] <= 13, times  # the last: when the drain ended
    assert sum(r["phase"] == "load" for r in rows) >= DURATION_S // 10, times

    books = result["books"]
    started = DURATION_S * RATE
    assert books["started"] == books["acknowledged"] == started, books
    assert books["lost"] == 0 and books["lost_ids"] == [], books
    assert books["duplicated"] == 0, books
    assert books["wrong_results"] == 0 and books["not_completed"] == 0, books
    assert books["history_gaps"] == 0 and books["open_at_end"] == 0, books
    assert books["start_errors"] == 0 and books["signal_failures"] == 0, books
    # Every start closed, and each parent's child with it.
    assert books["runs_checked"] == started + started // 4, books
    assert result["drained_after_s"] is not None, result

    assert result["pruned_by_retention"] > 0, "retention deleted nothing during the soak"
    vacuums = [r["vacuum_s"] for r in rows if r["vacuum_s"] is not None]
    if result["autovacuum"] == "off":  # the soak vacuums in its place, once a minute
        assert result["vacuum_every_s"] == 60 and len(vacuums) == 1, rows
    else:
        assert result["vacuum_every_s"] == 0 and vacuums == [], rows
    for w in result["workers"].values():
        assert w["survived"] and w["run_error"] is None, w
    for r in rows:
        for node in ("node-a", "node-b"):
            assert 0 <= r[f"{node}.pool_in_use"] <= r[f"{node}.pool_open"]
            assert r[f"{node}.pool_open"] <= r[f"{node}.pool_max"]
            assert r[f"{node}.rss_mb"] > 0 and r[f"{node}.fds"] > 0
        assert r["tables_mb"] > 0 and r["db_mb"] >= r["tables_mb"]
    verdicts = result["verdicts"]
    assert {"node-a.rss_mb", "node-b.fds", "tables_mb", "dead_rows"} <= set(verdicts)
    assert all(v["why"] in ("levelled", "flat", "capped", "growing") for v in verdicts.values())
