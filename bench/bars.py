"""The performance bars of issue 19, each judged against a reference from the same run.

A bar is derived from the dict a benchmark writes to bench/results (its
``summary`` rows and ``runs_per_point``; a run's return value carries the
same rows). The functions here are pure: they read figures, never measure.
A bar whose figure or reference is missing from the result is ``n/a`` and
says why; a few informational lines (``info``) have no target.

The bars, by benchmark:

* ``poll-latency --floor``: wake p50 over the floor's at 100 and 1,000 parked
  pollers <= 1.0 ms; dwtrio's p99 at 1,000 <= 10 ms;
* ``sdk-greeter``: server CPU per greeter at 16 starters <= 8 ms and <= 1/3 of
  the Temporal dev server's; workflows/s at 16 starters >= 1.2x Temporal's;
  start -> workflow code p50 at 1 starter <= 8 ms;
* ``dispatch-throughput --modes backlog --floor``: server CPU per activity
  poll+complete cycle <= 1.5 ms; cycles/s per host >= 700 (stretch 900); and
  whether the server, load generators and Postgres would fit 700 cycles/s on
  two cores;
* ``open-polls --floor``: memory per idle poll <= the floor's + 2 KiB;
* ``backlog-scaling``: claim p50 at the largest backlog <= 2x at the smallest.

``python -m bench bars`` (``run``) runs them in one invocation and prints the
summary table; each of those benchmarks also prints its own bars after its table.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.harness import table, write_result

PASS, MISS, NA, INFO = "PASS", "MISS", "n/a", "info"

#: Bar targets (issue 19).
WAKE_OVER_FLOOR_MS = 1.0
WAKE_P99_MS = 10.0
GREETER_SERVER_CPU_MS = 8.0
GREETER_CPU_SHARE_OF_TEMPORAL = 1 / 3
GREETER_THROUGHPUT_OVER_TEMPORAL = 1.2
START_TO_CODE_MS = 8.0
CYCLE_CPU_MS = 1.5
CYCLES_PER_S = 700.0
CYCLES_PER_S_STRETCH = 900.0
HOST_CORES = 2
IDLE_POLL_OVER_FLOOR_KIB = 2.0
BACKLOG_CLAIM_GROWTH = 2.0


@dataclasses.dataclass(frozen=True)
class Bar:
    """One bar: a figure from one run, its target and the reference it was judged beside."""

    name: str
    #: The figure judged (None when the run lacks it: the verdict is then n/a).
    value: float | None
    unit: str
    #: The same-run figures behind it, or why it is n/a.
    reference: str
    #: The target as text, e.g. "<= 1.0 ms".
    target: str
    #: PASS, MISS, n/a, or info (a figure reported beside the bars, with no target).
    verdict: str
    #: Runs behind the figure (each a median over that many runs), when known.
    runs: int | None = None


def _judge(value: float | None, ok: Callable[[float], bool]) -> str:
    if value is None:
        return NA
    return PASS if ok(value) else MISS


def _count(n: int) -> str:
    """1000 -> 1k, 1000000 -> 1M (for bar names)."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size and n % size == 0:
            return f"{n // size}{suffix}"
    return f"{n:,}"


def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return list(result.get("summary") or [])


def wake_bars(result: dict[str, Any], pollers: Sequence[int] = (100, 1000)) -> list[Bar]:
    """poll-latency: p50 over the floor's at each poller count; p99 at the largest."""
    runs = result.get("runs_per_point")
    by = {(r["server"], r["pollers"]): r for r in _rows(result)}
    bars = []
    for n in pollers:
        ours, floor = by.get(("dwtrio", n)), by.get(("floor", n))
        value, reference = None, f"no dwtrio row at {n} pollers"
        if ours and not floor:
            reference = f"dwtrio p50 {ours['p50']} ms; no floor row (run with --floor)"
        elif ours and floor:
            value = round(ours["p50"] - floor["p50"], 3)
            reference = f"dwtrio p50 {ours['p50']} ms, floor p50 {floor['p50']} ms"
        bars.append(
            Bar(
                f"wake p50 over floor, {_count(n)} pollers",
                value,
                "ms",
                reference,
                f"<= {WAKE_OVER_FLOOR_MS} ms",
                _judge(value, lambda v: v <= WAKE_OVER_FLOOR_MS),
                runs,
            )
        )
    n = max(pollers)
    ours, floor = by.get(("dwtrio", n)), by.get(("floor", n))
    value = ours["p99"] if ours else None
    if ours is None:
        reference = f"no dwtrio row at {n} pollers"
    else:
        reference = f"floor p99 {floor['p99']} ms" if floor else "no floor row (run with --floor)"
    bars.append(
        Bar(
            f"wake p99, {_count(n)} pollers",
            value,
            "ms",
            reference,
            f"<= {WAKE_P99_MS} ms",
            _judge(value, lambda v: v <= WAKE_P99_MS),
            runs,
        )
    )
    return bars


def _server_cpu(row: dict[str, Any] | None, kind: str = "server") -> float | None:
    if row is None:
        return None
    value = (row.get("cpu_ms_per_workflow") or {}).get(kind)
    return None if value is None else float(value)


def greeter_bars(
    result: dict[str, Any], starters: int = 16, latency_starters: int = 1
) -> list[Bar]:
    """sdk-greeter: server CPU per workflow (alone and over Temporal's), throughput over
    Temporal's at ``starters``; start -> workflow code p50 at ``latency_starters``."""
    runs = result.get("runs_per_point")
    by = {(r["system"], r["starters"]): r for r in _rows(result)}
    ours, theirs = by.get(("dwtrio", starters)), by.get(("temporal", starters))
    at = f"{starters} starters"
    no_temporal = "no Temporal row" + (
        f" ({result['temporal_skipped']})" if result.get("temporal_skipped") else ""
    )
    cpu, their_cpu = _server_cpu(ours), _server_cpu(theirs)
    bars = [
        Bar(
            f"server CPU per greeter, {at}",
            cpu,
            "ms",
            f"Temporal dev server {their_cpu} ms" if their_cpu is not None else no_temporal,
            f"<= {GREETER_SERVER_CPU_MS} ms",
            _judge(cpu, lambda v: v <= GREETER_SERVER_CPU_MS),
            runs,
        )
    ]
    share = cpu / their_cpu if cpu is not None and their_cpu else None
    bars.append(
        Bar(
            f"server CPU / Temporal's, {at}",
            None if share is None else round(share, 3),
            "x",
            f"dwtrio {cpu} ms, Temporal {their_cpu} ms" if share is not None else no_temporal,
            "<= 1/3",
            _judge(share, lambda v: v <= GREETER_CPU_SHARE_OF_TEMPORAL),
            runs,
        )
    )
    ratio = (
        round(ours["wf_per_s"] / theirs["wf_per_s"], 2)
        if ours and theirs and theirs["wf_per_s"]
        else None
    )
    bars.append(
        Bar(
            f"workflows/s / Temporal's, {at}",
            ratio,
            "x",
            f"dwtrio {ours['wf_per_s']} wf/s, Temporal {theirs['wf_per_s']} wf/s"
            if ratio is not None and ours and theirs
            else no_temporal,
            f">= {GREETER_THROUGHPUT_OVER_TEMPORAL}x",
            _judge(ratio, lambda v: v >= GREETER_THROUGHPUT_OVER_TEMPORAL),
            runs,
        )
    )
    for kind in ("sdk worker", "client"):
        mine, other = _server_cpu(ours, kind), _server_cpu(theirs, kind)
        bars.append(
            Bar(
                f"{kind} CPU per greeter, {at}",
                mine,
                "ms",
                f"Temporal's {kind} {other} ms" if other is not None else no_temporal,
                "-",
                INFO if mine is not None else NA,
                runs,
            )
        )
    lone, their_lone = by.get(("dwtrio", latency_starters)), by.get(("temporal", latency_starters))
    value = lone["start_to_code_p50"] if lone else None
    bars.append(
        Bar(
            f"start -> workflow code p50, {latency_starters} starter(s)",
            value,
            "ms",
            f"Temporal {their_lone['start_to_code_p50']} ms" if their_lone else no_temporal,
            f"<= {START_TO_CODE_MS} ms",
            _judge(value, lambda v: v <= START_TO_CODE_MS),
            runs,
        )
    )
    return bars


def dispatch_bars(result: dict[str, Any]) -> list[Bar]:
    """dispatch-throughput, backlog mode: the host's best dwtrio row (most cycles/s) for
    CPU per cycle and cycles/s, each beside the floor at the same concurrency; and the
    cores server + load generators + Postgres would need for 700 cycles/s at that row's
    CPU per cycle."""
    runs = result.get("runs_per_point")
    backlog = [r for r in _rows(result) if r.get("mode") == "backlog"]
    ours = max(
        (r for r in backlog if r.get("server", "dwtrio") == "dwtrio"),
        key=lambda r: r["cycles_per_s"],
        default=None,
    )
    floor = next(
        (
            r
            for r in backlog
            if ours and r.get("server") == "floor" and r["concurrency"] == ours["concurrency"]
        ),
        None,
    )
    if ours is None:
        where, cpu, cycles = "no dwtrio backlog row", None, None
    else:
        where = f"{ours['server_processes']} server process(es), {ours['concurrency']} loops"
        cpu, cycles = ours["server_cpu_ms_per_cycle"], ours["cycles_per_s"]
    no_floor = "; no floor row (run with --floor)"
    bars = [
        Bar(
            "server CPU per activity cycle, backlog",
            cpu,
            "ms",
            where
            + (
                f"; floor {floor['server_cpu_ms_per_cycle']} ms for the same two requests"
                if floor
                else no_floor
            ),
            f"<= {CYCLE_CPU_MS} ms",
            _judge(cpu, lambda v: v <= CYCLE_CPU_MS),
            runs,
        )
    ]
    stretch = ""
    if cycles is not None:
        met = "met" if cycles >= CYCLES_PER_S_STRETCH else "not met"
        stretch = f"; stretch {CYCLES_PER_S_STRETCH:g} {met}"
    bars.append(
        Bar(
            "activity cycles/s per host, backlog",
            cycles,
            "/s",
            where + (f"; floor {floor['cycles_per_s']}/s" if floor else no_floor) + stretch,
            f">= {CYCLES_PER_S:g} (stretch {CYCLES_PER_S_STRETCH:g})",
            _judge(cycles, lambda v: v >= CYCLES_PER_S),
            runs,
        )
    )
    cores, reference = None, where
    if ours is not None and "loadgen_cpu_ms_per_cycle" in ours:
        per_cycle = [
            ours["server_cpu_ms_per_cycle"],
            ours["loadgen_cpu_ms_per_cycle"],
            ours["postgres_cpu_ms_per_cycle"],
        ]
        cores = round(sum(per_cycle) * CYCLES_PER_S / 1000, 2)
        reference = (
            f"at {cycles}/s used: server {ours['server_cores']}, load generators "
            f"{ours['loadgen_cores']}, Postgres {ours['postgres_cores']} cores "
            f"({per_cycle[0]} + {per_cycle[1]} + {per_cycle[2]} ms per cycle)"
        )
    elif ours is not None:
        reference = "the row has no load-generator or Postgres CPU"
    bars.append(
        Bar(
            f"cores for {CYCLES_PER_S:g} cycles/s: server + load gen + Postgres",
            cores,
            "cores",
            reference,
            f"<= {HOST_CORES}",
            _judge(cores, lambda v: v <= HOST_CORES),
            runs,
        )
    )
    return bars


def idle_poll_bars(result: dict[str, Any]) -> list[Bar]:
    """open-polls: memory per idle poll over the floor's, one bar per dwtrio row (the
    floor row with the same poll count is its reference). The memory is one
    measurement per run (the probe windows are what ``runs_per_point`` counts)."""
    rows = _rows(result)
    floors = {r.get("polls"): r for r in rows if r.get("server") == "floor"}
    bars = []
    for ours in (r for r in rows if r.get("server") == "dwtrio"):
        floor = floors.get(ours.get("polls"))
        value = round(ours["kib_per_poll"] - floor["kib_per_poll"], 2) if floor else None
        reference = f"dwtrio {ours['kib_per_poll']} KiB" + (
            f", floor {floor['kib_per_poll']} KiB" if floor else "; no floor row (run with --floor)"
        )
        bars.append(
            Bar(
                f"memory per idle poll over floor, {_count(ours['polls'])} polls",
                value,
                "KiB",
                reference,
                f"<= {IDLE_POLL_OVER_FLOOR_KIB:g} KiB",
                _judge(value, lambda v: v <= IDLE_POLL_OVER_FLOOR_KIB),
                1,
            )
        )
    return bars or [
        Bar("memory per idle poll over floor", None, "KiB", "no dwtrio row", "<= 2 KiB", NA)
    ]


def backlog_bars(result: dict[str, Any]) -> list[Bar]:
    """backlog-scaling: claim p50 at the largest backlog over the p50 at the smallest."""
    rows = sorted(_rows(result), key=lambda r: r["backlog"])
    runs = result.get("runs_per_point")
    if len(rows) < 2:
        return [
            Bar(
                "claim p50, largest / smallest backlog",
                None,
                "x",
                "needs two backlog sizes (--sizes 1000 1000000)",
                f"<= {BACKLOG_CLAIM_GROWTH:g}x",
                NA,
                runs,
            )
        ]
    low, high = rows[0], rows[-1]
    value = round(high["p50"] / low["p50"], 2) if low["p50"] else None
    return [
        Bar(
            f"claim p50 at {_count(high['backlog'])} / at {_count(low['backlog'])} backlog",
            value,
            "x",
            f"p50 {high['p50']} ms at {_count(high['backlog'])}, "
            f"{low['p50']} ms at {_count(low['backlog'])}",
            f"<= {BACKLOG_CLAIM_GROWTH:g}x",
            _judge(value, lambda v: v <= BACKLOG_CLAIM_GROWTH),
            runs,
        )
    ]


#: The benchmark behind each bar group, and the function that derives its bars.
DERIVE: dict[str, Callable[[dict[str, Any]], list[Bar]]] = {
    "poll-latency": wake_bars,
    "sdk-greeter": greeter_bars,
    "dispatch-throughput": dispatch_bars,
    "open-polls": idle_poll_bars,
    "backlog-scaling": backlog_bars,
}


def bars_table(bars: Sequence[Bar]) -> str:
    """The bars as a text table: figure, target, verdict, runs and reference."""
    rows = [
        {
            "bar": b.name,
            "value": "-" if b.value is None else f"{b.value:g} {b.unit}",
            "target": b.target,
            "verdict": b.verdict,
            "runs": "-" if b.runs is None else b.runs,
            "reference (same run)": b.reference,
        }
        for b in bars
    ]
    return table(rows, ["bar", "value", "target", "verdict", "runs", "reference (same run)"])


def reporting(bench: str, run: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    """``run`` that also prints the benchmark's bars after its own output; the bars are
    added to its return value under ``bars``."""

    def run_and_report(args: Any) -> dict[str, Any]:
        result = run(args)
        bars = DERIVE[bench]({"runs_per_point": getattr(args, "runs", None), **result})
        print(f"bars (issue 19), {bench}:")
        print(bars_table(bars))
        return {**result, "bars": bars}

    return run_and_report


#: ``bench bars --only`` names, in run order, with the benchmark each runs.
GROUPS = {
    "wake": "poll-latency",
    "greeter": "sdk-greeter",
    "dispatch": "dispatch-throughput",
    "idle-polls": "open-polls",
    "backlog": "backlog-scaling",
}


def bench_argv(group: str, args: Any) -> list[str]:
    """The ``python -m bench`` arguments that measure one group's bars at ``args``' sizes."""

    def ints(values: Sequence[int]) -> str:
        return " ".join(map(str, values))

    argv = {
        "wake": f"poll-latency --pollers {ints(args.pollers)} --samples {args.samples} --floor",
        "greeter": f"sdk-greeter --count {args.count} --concurrency 1 16",
        "dispatch": "dispatch-throughput --modes backlog --server-processes 1 --floor "
        f"--concurrency {ints(args.loops)} --seconds {args.seconds} --warmup {args.warmup}",
        "idle-polls": f"open-polls --polls {args.polls} --floor",
        "backlog": f"backlog-scaling --sizes {ints(args.backlog_sizes)} --samples {args.samples}",
    }[group]
    return [*argv.split(), "--runs", str(args.runs)]


def global_argv(args: Any) -> list[str]:
    """The options before the subcommand, as given to ``bench bars``."""
    argv = ["--server-workers", str(args.server_workers)]
    if args.dsn:
        argv += ["--dsn", args.dsn]
    if args.redis_url:
        argv += ["--redis-url", args.redis_url]
    return argv


def run(args: Any) -> dict[str, Any]:
    """``python -m bench bars``: each chosen group's benchmark, one after another in this
    invocation, then one summary table; writes bench/results/bars-<date>-<time>.json.
    A benchmark that fails leaves its bars n/a and the others run."""
    from bench.__main__ import build_parser  # the CLI imports this module

    parser = build_parser()
    bars: list[Bar] = []
    benches: dict[str, Any] = {}
    started = time.monotonic()
    for group in args.only:
        bench = GROUPS[group]
        argv = [*global_argv(args), *bench_argv(group, args)]
        print(f"== {group}: python -m bench {' '.join(argv)}")
        sub = parser.parse_args(argv)
        begin = time.monotonic()
        try:
            result = sub.run(sub)
        except Exception as exc:  # report it and go on with the other bars
            print(f"  {bench} failed: {exc!r}")
            failed = DERIVE[bench]({"runs_per_point": args.runs})
            result = {"bars": [dataclasses.replace(b, reference=f"{bench} failed") for b in failed]}
            benches[bench] = {"argv": argv, "error": repr(exc)}
        else:
            benches[bench] = {"argv": argv, "summary": result.get("summary")}
        benches[bench]["seconds"] = round(time.monotonic() - begin, 1)
        bars += result["bars"]
    print(f"bars (issue 19), {time.monotonic() - started:.0f} s in all:")
    print(bars_table(bars))
    path = write_result(
        "bars", {"bars": [dataclasses.asdict(b) for b in bars], "benchmarks": benches}
    )
    print(f"results: {path}")
    return {"bars": bars}
