"""``python -m bench profile FILE...``: where a server's CPU went, from py-spy samples.

Benchmarks started with ``DWTRIO_BENCH_PROFILE=<dir>`` leave one collapsed-stack file
per server process (``bench/harness.py``). Each sample is charged to the first
frame, from the innermost outwards, that belongs to a known part of the stack (the
Postgres driver and its event loop, the bridge between the threads, the HTTP
stack, Quart, Trio's scheduler, dwtrio's own code, ...), so the table answers
"which layer is this CPU spent in". Idle samples (a thread waiting in epoll or on
the GIL's condition) are left out when py-spy marks them as such; the thread
split shows how much ran on the store's asyncio thread.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

#: (layer, pattern on a frame's "function (file:line)" text), first match wins,
#: tried from the innermost frame outwards.
LAYERS: list[tuple[str, re.Pattern[str]]] = [
    (layer, re.compile(pattern))
    for layer, pattern in [
        ("postgres driver (asyncpg)", r"asyncpg/"),
        ("redis client", r"redis/"),
        # The loop's own C code (uvloop: I/O, timers, callbacks) shows as its Python caller.
        ("asyncio loop (uvloop, in C)", r"AsyncioThread\._serve|uvloop|asyncio/"),
        ("thread hand-offs (store bridge)", r"_wakeup_socketpair\.py|dwtrio/store/bridge\.py"),
        ("store bridge (trio-asyncio)", r"trio_asyncio/"),
        ("store pool", r"dwtrio/store/pool\.py"),
        ("store SQL and rows", r"dwtrio/store/"),
        ("metrics (prometheus_client)", r"prometheus_client/"),
        ("logging", r"logging/"),
        ("JSON (orjson, cattrs, attrs)", r"orjson|cattrs/|attr/|attrs/"),
        ("HTTP stack (hypercorn, h11)", r"hypercorn/|h11/|h2/|wsproto/"),
        ("Quart and werkzeug", r"quart/|quart_trio/|werkzeug/"),
        ("dwtrio http", r"dwtrio/http/"),
        ("dwtrio matching", r"dwtrio/matching/"),
        ("dwtrio engine", r"dwtrio/engine/"),
        ("dwtrio other", r"dwtrio/"),
        # Socket sends and receives: on loopback the kernel's TCP work runs in them.
        ("HTTP socket syscalls (Trio)", r"trio/_socket\.py|trio/_highlevel_socket\.py"),
        ("epoll (Trio)", r"trio/_core/_io_epoll\.py"),
        ("Trio scheduler", r"trio/"),
    ]
]


#: Frames only the store's asyncio thread runs (py-spy shows a coroutine's frames without
#: the loop that drives it, so the thread is told by what the stack holds).
_ASYNCIO_SIDE = re.compile(r"AsyncioThread\._serve|Store\._attempt|asyncpg/|uvloop|redis/")


def parse(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """Samples per layer and per thread of one py-spy ``--format raw`` file."""
    layers: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        threads["asyncio thread (store)" if _ASYNCIO_SIDE.search(stack) else "Trio thread"] += count
        total += count
        for frame in reversed(frames):
            layer = next((name for name, pattern in LAYERS if pattern.search(frame)), None)
            if layer is not None:
                layers[layer] += count
                break
        else:
            layers["other (interpreter, stdlib)"] += count
    return layers, threads, total


def summarise(paths: list[Path]) -> dict[str, Any]:
    layers: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for path in paths:
        got_layers, got_threads, got_total = parse(path)
        layers.update(got_layers)
        threads.update(got_threads)
        total += got_total
    return {"samples": total, "layers": dict(layers.most_common()), "threads": dict(threads)}


def report(summary: dict[str, Any]) -> str:
    total = summary["samples"] or 1
    lines = [f"{summary['samples']} samples"]
    lines += [f"  {share / total:6.1%}  {name}" for name, share in summary["layers"].items()]
    lines.append("by thread:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in summary["threads"].items()]
    return "\n".join(lines)
