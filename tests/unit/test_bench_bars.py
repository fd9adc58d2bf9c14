"""The issue-19 bars are derived right from the benchmarks' result dicts.

The dicts are shaped like what each benchmark writes to bench/results (the
sdk-greeter figures are those of a real run, raw samples left out). No
benchmark runs here.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import bars
from bench.__main__ import build_parser
from bench.bars import MISS, NA, PASS, Bar
from bench.sdk_greeter import dwtrio_over_temporal


def _by_name(found: list[Bar]) -> dict[str, Bar]:
    return {b.name: b for b in found}


def _latency(server: str, pollers: int, p50: float, p99: float) -> dict[str, Any]:
    return {
        "server": server,
        "pollers": pollers,
        "count": 200,
        "p50": p50,
        "p90": p50 * 1.5,
        "p99": p99,
        "max": p99 * 2,
        "mean": p50 * 1.1,
    }


POLL_LATENCY = {
    "benchmark": "poll-latency",
    "unit": "ms",
    "runs_per_point": 3,
    "summary": [
        _latency("dwtrio", 100, 2.41, 4.9),
        _latency("dwtrio", 1000, 3.3, 12.5),
        _latency("floor", 100, 1.62, 2.2),
        _latency("floor", 1000, 2.1, 6.0),
    ],
}


def test_wake_bars_judge_the_p50_over_the_floor_and_the_p99() -> None:
    found = _by_name(bars.wake_bars(POLL_LATENCY))
    at_100 = found["wake p50 over floor, 100 pollers"]
    assert (at_100.value, at_100.verdict, at_100.runs) == (0.79, PASS, 3)
    assert at_100.reference == "dwtrio p50 2.41 ms, floor p50 1.62 ms"
    at_1k = found["wake p50 over floor, 1k pollers"]
    assert (at_1k.value, at_1k.verdict) == (1.2, MISS)
    p99 = found["wake p99, 1k pollers"]
    assert (p99.value, p99.verdict, p99.reference) == (12.5, MISS, "floor p99 6.0 ms")


def test_wake_bars_without_the_floor_are_not_judged() -> None:
    dwtrio_only = {**POLL_LATENCY, "summary": POLL_LATENCY["summary"][:2]}
    found = _by_name(bars.wake_bars(dwtrio_only))
    over = found["wake p50 over floor, 100 pollers"]
    assert (over.value, over.verdict) == (None, NA)
    assert "run with --floor" in over.reference
    # The p99 bar needs no floor: it is judged, its reference says what is missing.
    assert found["wake p99, 1k pollers"].verdict == MISS


def _greeter(
    system: str, starters: int, wf_per_s: float, code_p50: float, cpu: list[float]
) -> dict[str, Any]:
    return {
        "system": system,
        "starters": starters,
        "wf_per_s": wf_per_s,
        "start_to_code_p50": code_p50,
        "start_to_code_p99": code_p50 * 2,
        "p50": code_p50 * 3,
        "p99": code_p50 * 6,
        "cpu_ms_per_workflow": dict(zip(["server", "sdk worker", "client"], cpu, strict=True)),
        "runs": [],
    }


# sdk-greeter --count 100 --concurrency 1 16 --runs 1, 2026-12-06 15:28 UTC.
SDK_GREETER = {
    "benchmark": "sdk-greeter",
    "unit": "ms",
    "count_per_run": 100,
    "runs_per_point": 1,
    "summary": [
        _greeter("dwtrio", 1, 20.35, 6.86, [21.6, 8.0, 6.0]),
        _greeter("dwtrio", 16, 38.12, 145.89, [17.6, 7.7, 5.6]),
        _greeter("temporal", 1, 10.58, 47.97, [27.7, 10.6, 1.9]),
        _greeter("temporal", 16, 64.11, 103.77, [17.5, 8.1, 1.5]),
    ],
    "temporal_skipped": None,
}


def test_greeter_bars_from_a_real_run() -> None:
    found = _by_name(bars.greeter_bars(SDK_GREETER))
    cpu = found["server CPU per greeter, 16 starters"]
    assert (cpu.value, cpu.verdict, cpu.reference) == (17.6, MISS, "Temporal dev server 17.5 ms")
    share = found["server CPU / Temporal's, 16 starters"]
    assert (share.value, share.verdict) == (1.006, MISS)
    assert share.reference == "dwtrio 17.6 ms, Temporal 17.5 ms"
    speed = found["workflows/s / Temporal's, 16 starters"]
    assert (speed.value, speed.verdict) == (0.59, MISS)
    code = found["start -> workflow code p50, 1 starter(s)"]
    assert (code.value, code.verdict, code.reference) == (6.86, PASS, "Temporal 47.97 ms")
    worker = found["sdk worker CPU per greeter, 16 starters"]
    assert (worker.value, worker.verdict, worker.reference) == (
        7.7,
        "info",
        "Temporal's sdk worker 8.1 ms",
    )
    assert {b.runs for b in found.values()} == {1}


def test_greeter_bars_pass_at_a_third_of_temporals_cpu_and_more_throughput() -> None:
    result = {
        **SDK_GREETER,
        "summary": [
            _greeter("dwtrio", 16, 77.0, 5.0, [6.0, 7.0, 5.0]),
            _greeter("temporal", 16, 64.0, 100.0, [18.0, 8.0, 1.5]),
        ],
    }
    found = _by_name(bars.greeter_bars(result))
    assert found["server CPU per greeter, 16 starters"].verdict == PASS
    share = found["server CPU / Temporal's, 16 starters"]
    assert (share.value, share.verdict) == (0.333, PASS)  # exactly 1/3 passes
    assert found["workflows/s / Temporal's, 16 starters"].value == 1.2
    assert found["workflows/s / Temporal's, 16 starters"].verdict == PASS
    # No one-starter row in this run: that bar is not judged.
    assert found["start -> workflow code p50, 1 starter(s)"].verdict == NA


def test_greeter_bars_without_temporal_say_why() -> None:
    result = {
        **SDK_GREETER,
        "summary": SDK_GREETER["summary"][:2],
        "temporal_skipped": "disabled with --no-temporal",
    }
    found = _by_name(bars.greeter_bars(result))
    assert found["server CPU per greeter, 16 starters"].verdict == MISS  # judged alone
    for name in ["server CPU / Temporal's, 16 starters", "workflows/s / Temporal's, 16 starters"]:
        assert found[name].verdict == NA
        assert found[name].reference == "no Temporal row (disabled with --no-temporal)"


def test_dwtrio_over_temporal_has_the_server_cpu_ratio() -> None:
    ratios = dwtrio_over_temporal(SDK_GREETER["summary"])
    assert [(r["starters"], r["server_cpu"]) for r in ratios] == [(1, 0.78), (16, 1.01)]


def _window(
    server: str, concurrency: int, cycles: float, cpu: float, **beside: float
) -> dict[str, Any]:
    return {
        "server": server,
        "mode": "backlog",
        "server_processes": 1,
        "concurrency": concurrency,
        "cycles_per_s": cycles,
        "server_cpu_ms_per_cycle": cpu,
        **beside,
        "runs": [],
    }


BESIDE = {
    "loadgen_cpu_ms_per_cycle": 0.8,
    "postgres_cpu_ms_per_cycle": 0.6,
    "server_cores": 0.78,
    "loadgen_cores": 0.52,
    "postgres_cores": 0.39,
}

DISPATCH = {
    "benchmark": "dispatch-throughput",
    "modes": ["backlog"],
    "runs_per_point": 3,
    "seconds_per_run": 5.0,
    "summary": [
        _window("dwtrio", 16, 480.0, 1.4, **BESIDE),
        _window("dwtrio", 64, 650.0, 1.2, **BESIDE),
        _window("floor", 16, 2900.0, 0.3),
        _window("floor", 64, 3100.0, 0.28),
    ],
}


def test_dispatch_bars_take_the_best_row_beside_the_floor_at_its_concurrency() -> None:
    found = _by_name(bars.dispatch_bars(DISPATCH))
    cpu = found["server CPU per activity cycle, backlog"]
    assert (cpu.value, cpu.verdict) == (1.2, PASS)
    assert cpu.reference == (
        "1 server process(es), 64 loops; floor 0.28 ms for the same two requests"
    )
    cycles = found["activity cycles/s per host, backlog"]
    assert (cycles.value, cycles.verdict) == (650.0, MISS)
    assert cycles.reference.endswith("floor 3100.0/s; stretch 900 not met")
    # (1.2 + 0.8 + 0.6) ms per cycle at 700 cycles/s: 1.82 cores of the 2.
    fit = found["cores for 700 cycles/s: server + load gen + Postgres"]
    assert (fit.value, fit.verdict) == (1.82, PASS)
    assert "load generators 0.52, Postgres 0.39 cores" in fit.reference


def test_dispatch_bars_ignore_live_rows_and_do_not_fit_a_costly_row() -> None:
    costly = {**BESIDE, "postgres_cpu_ms_per_cycle": 1.2}
    live = {**_window("dwtrio", 64, 5000.0, 0.1, **BESIDE), "mode": "live"}
    result = {**DISPATCH, "summary": [_window("dwtrio", 64, 950.0, 1.6, **costly), live]}
    found = _by_name(bars.dispatch_bars(result))
    cycles = found["activity cycles/s per host, backlog"]
    assert (cycles.value, cycles.verdict) == (950.0, PASS)
    assert cycles.reference.endswith("no floor row (run with --floor); stretch 900 met")
    assert found["server CPU per activity cycle, backlog"].verdict == MISS
    fit = found["cores for 700 cycles/s: server + load gen + Postgres"]
    assert (fit.value, fit.verdict) == (2.52, MISS)


def test_dispatch_bars_without_a_backlog_row_are_not_judged() -> None:
    found = bars.dispatch_bars({"summary": [], "runs_per_point": 3})
    assert [b.verdict for b in found] == [NA, NA, NA]


def _hold(server: str, kib: float) -> dict[str, Any]:
    return {
        "server": server,
        "polls": 10_000,
        "server_connections": 10_004,
        "rss_before_mib": 80.0,
        "rss_after_mib": 80.0 + kib * 10_000 / 1024,
        "kib_per_poll": kib,
        "health_p99_idle_ms": 1.1,
        "start_p99_idle_ms": 3.0,
        "health_p99_held_ms": 1.4,
        "start_p99_held_ms": 3.6,
        "setup_s": 41.0,
    }


@pytest.mark.parametrize(("ours", "value", "verdict"), [(4.9, 1.9, PASS), (5.1, 2.1, MISS)])
def test_idle_poll_bar_is_the_floor_plus_2_kib(ours: float, value: float, verdict: str) -> None:
    result = {"runs_per_point": 3, "summary": [_hold("dwtrio", ours), _hold("floor", 3.0)]}
    [bar] = bars.idle_poll_bars(result)
    assert (bar.name, bar.value, bar.verdict) == (
        "memory per idle poll over floor, 10k polls",
        value,
        verdict,
    )
    assert bar.reference == f"dwtrio {ours} KiB, floor 3.0 KiB"
    assert bar.runs == 1  # one hold per run: the probe windows are what runs_per_point counts


def test_backlog_bar_compares_the_largest_backlog_with_the_smallest() -> None:
    result = {
        "runs_per_point": 3,
        "summary": [
            {"backlog": 1_000_000, "count": 290, "p50": 2.4, "p90": 3.0, "p99": 5.0, "max": 9.0},
            {"backlog": 1_000, "count": 290, "p50": 1.0, "p90": 1.3, "p99": 2.0, "max": 4.0},
        ],
    }
    [bar] = bars.backlog_bars(result)
    assert (bar.name, bar.value, bar.verdict) == ("claim p50 at 1M / at 1k backlog", 2.4, MISS)
    [one] = bars.backlog_bars({"runs_per_point": 3, "summary": result["summary"][:1]})
    assert one.verdict == NA


def test_bars_table_shows_each_verdict() -> None:
    text = bars.bars_table(bars.wake_bars(POLL_LATENCY))
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["bar", "value", "target", "verdict", "runs"]
    assert "0.79 ms" in lines[1] and "PASS" in lines[1]
    assert "MISS" in lines[2]


def test_reporting_prints_the_bars_after_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    def fake_run(args: Any) -> dict[str, Any]:
        print("the benchmark's own table")
        return {"summary": POLL_LATENCY["summary"]}

    args = build_parser().parse_args(["poll-latency", "--runs", "3"])
    result = bars.reporting("poll-latency", fake_run)(args)
    out = capsys.readouterr().out
    assert out.index("the benchmark's own table") < out.index("bars (issue 19), poll-latency:")
    assert [b.verdict for b in result["bars"]] == [PASS, MISS, MISS]
    assert result["bars"][0].runs == 3


def test_bars_command_options_and_the_argv_of_each_group() -> None:
    parser = build_parser()
    args = parser.parse_args(["--dsn", "postgresql://x/y", "bars"])
    assert args.only == ["wake", "greeter", "dispatch", "idle-polls", "backlog"]
    assert (args.runs, args.pollers, args.backlog_sizes) == (3, [100, 1000], [1000, 1_000_000])
    parsed = {
        group: parser.parse_args([*bars.global_argv(args), *bars.bench_argv(group, args)])
        for group in args.only
    }
    assert all(p.dsn == "postgresql://x/y" and p.runs == 3 for p in parsed.values())
    assert (parsed["wake"].pollers, parsed["wake"].floor) == ([100, 1000], True)
    assert parsed["greeter"].concurrency == [1, 16]
    dispatch = parsed["dispatch"]
    assert (dispatch.modes, dispatch.server_processes, dispatch.floor) == (["backlog"], [1], True)
    assert (parsed["idle-polls"].polls, parsed["idle-polls"].floor) == (10_000, True)
    assert parsed["backlog"].sizes == [1000, 1_000_000]
    small = parser.parse_args(["bars", "--only", "wake", "--pollers", "10", "--runs", "1"])
    assert bars.bench_argv("wake", small)[:4] == ["poll-latency", "--pollers", "10", "--samples"]
    with pytest.raises(SystemExit):
        parser.parse_args(["bars", "--only", "nothing"])
