"""open-polls: hold many idle long-polls on one node; memory per poll, latency meanwhile.

Load-generator processes open N workflow-task polls (timeout 60 s) on an empty
queue. Reported: the server's RSS growth per open poll, and p99 of other
requests (``GET /api/health``, ``POST /api/workflows``) before and while they
are parked: the median over ``--runs`` probe windows of each window's p99 (the
polls themselves are opened once; holding them again would only repeat the
setup). ``--floor`` repeats it against ``bench.floor``, the same HTTP stack
with no server behind it: the memory any application on it pays per poll.

One process holds at most as many sockets as its open-file limit allows, and
on the benchmark machine the hard limit is 20,000 (``ulimit -Hn``; raising it
needs CAP_SYS_RESOURCE). So 100,000 polls on one node take several server
processes (``--server-workers N --redis-url ...``: they share one listening
socket, each accepting at most DW_MAX_CONNECTIONS, by default its limit less a
tenth) and several load generators, each lifting its own soft limit to the
hard one (``resource.setrlimit``, nothing global). ``--clients raw`` holds
each poll on a bare keep-alive socket (:class:`bench.harness.RawClient`'s
framing, a few KiB a connection, where httpx's pool would not fit in one
process), and one source address gives only about 28,000 ephemeral ports
(``ip_local_port_range``), so the raw generators connect from ``--sources``
loopback addresses (127.0.0.2, 127.0.0.3, ...). ``--drain`` then stops the
node with SIGTERM while every poll is parked: the time until each held poll
has its answer and until the server processes have exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import resource
import signal
import time
import uuid
from typing import Any

import httpx

from bench.harness import (
    CP,
    WP,
    _parse_head,
    _request_bytes,
    bench_database,
    dwtrio_server,
    floor_server,
    median_of_runs,
    percentiles,
    plot_cdf,
    progress,
    server_processes,
    table,
    write_result,
)

POLL_S = 60  # the longest poll the server holds (it caps a requested timeout at 60 s)
#: Connections one raw load generator holds (under the hard open-file limit of 20,000).
RAW_PER_PROCESS = 16_000
#: Connections one loopback source address can open (ip_local_port_range 32768-60999).
PORTS_PER_SOURCE = 28_000
#: Tries to open each raw connection.
CONNECT_ATTEMPTS = 5
#: Opening polls is over when the server's count has not grown for this long.
STALL_S = 30


async def _hold(url: str, queue: str, count: int, hold_s: float, ready: Any) -> None:
    """``count`` workers each keep one poll open (re-polling as each ends) for ``hold_s``."""
    limits = httpx.Limits(max_connections=count + 8, max_keepalive_connections=count + 8)
    end = time.monotonic() + hold_s
    async with httpx.AsyncClient(
        base_url=url, headers=WP, timeout=POLL_S + 30, limits=limits
    ) as client:

        async def one(i: int) -> None:
            while time.monotonic() < end:
                try:
                    await client.post(
                        "/api/worker/workflow-tasks/poll",
                        json={
                            "worker_id": f"idle-{i}",
                            "task_queue": queue,
                            "timeout_seconds": POLL_S,
                        },
                    )
                except httpx.HTTPError:
                    return

        tasks = [asyncio.create_task(one(i)) for i in range(count)]
        await asyncio.sleep(1)
        ready.put(count)
        await asyncio.gather(*tasks)


def _hold_process(url: str, queue: str, count: int, hold_s: float, ready: Any) -> None:
    asyncio.run(_hold(url, queue, count, hold_s, ready))


def raise_fd_limit() -> int:
    """Lift this process's soft open-file limit to its hard one; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


async def _hold_raw(
    url: str,
    queue: str,
    first: int,
    count: int,
    source: str,
    per_worker: int,
    hold_s: float,
    ready: Any,
    drain: Any,
) -> None:
    """``count`` raw keep-alive connections from ``source``, each keeping one poll
    open until ``hold_s`` passes or ``drain`` is set; then, once each held poll has
    been answered (or its connection failed), reports on ``ready``: answered, failed,
    refused (non-200 answers while held; each is followed by a second's pause, as the
    SDK pauses after a 503) and the time of the last answer. Workers' ids are shared
    by ``per_worker`` consecutive polls."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stop = asyncio.Event()
    end = time.monotonic() + hold_s
    answered = failed = refused = 0
    last = 0.0
    sem = asyncio.Semaphore(256)  # connections being opened at once

    async def one(i: int) -> None:
        nonlocal answered, failed, refused, last
        body = {
            "worker_id": f"idle-{i // per_worker}",
            "task_queue": queue,
            "timeout_seconds": POLL_S,
        }
        request = _request_bytes("POST", "/api/worker/workflow-tasks/poll", _wp_head(), body)
        for attempt in range(CONNECT_ATTEMPTS):  # a SYN dropped from a full backlog
            try:
                async with sem:
                    reader, writer = await asyncio.open_connection(
                        host, int(port), local_addr=(source, 0)
                    )
                break
            except OSError:
                if attempt == CONNECT_ATTEMPTS - 1:
                    failed += 1
                    return
                await asyncio.sleep(1 + attempt)
        try:
            while True:
                writer.write(request)
                status, length, close = _parse_head(await reader.readuntil(b"\r\n\r\n"))
                await reader.readexactly(length)
                if stop.is_set():
                    answered += 1
                    last = time.time()
                    return
                if close or time.monotonic() >= end:
                    return
                if status != 200:
                    refused += 1
                    await asyncio.sleep(1)  # as the SDK does after a 503's retry_after_seconds
        except (OSError, asyncio.IncompleteReadError, ValueError):
            failed += 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(one(first + i)) for i in range(count)]
    loop = asyncio.get_running_loop()
    await asyncio.sleep(1)
    ready.put(count)
    waited = loop.run_in_executor(None, drain.wait, hold_s)
    await waited
    stop.set()
    await asyncio.gather(*tasks)
    report = {"answered": answered, "failed": failed, "refused": refused, "last_answer_at": last}
    ready.put(json.dumps(report))


def _wp_head() -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in WP.items())


def _hold_raw_process(*args: Any) -> None:
    raise_fd_limit()
    asyncio.run(_hold_raw(*args))


def _rss(url: str) -> int:
    return sum(p.memory_info().rss for p in server_processes(url))


def _wait_idle(url: str, *, timeout_s: float, idle_percent: float = 10.0) -> None:
    procs = server_processes(url)
    for p in procs:
        p.cpu_percent(None)
    end = time.monotonic() + timeout_s
    calm = 0
    while time.monotonic() < end and calm < 3:
        time.sleep(1)
        busy = sum(p.cpu_percent(None) for p in procs)
        calm = calm + 1 if busy < idle_percent else 0


def _fds(url: str) -> int:
    return sum(p.num_fds() for p in server_processes(url))


def _wait_connections(url: str, count: int, *, timeout_s: float, fds_before: int) -> None:
    """Until the server processes hold ``count`` more descriptors than before (one
    socket per poll: cheaper to count than their connections, at 100,000), or the
    count has not grown for :data:`STALL_S` (polls whose connection failed)."""
    end = time.monotonic() + timeout_s
    bar, seen = progress(count, "opening polls", "poll"), 0
    grew_at = time.monotonic()
    while time.monotonic() < end and time.monotonic() - grew_at < STALL_S:
        now = min(count, max(0, _fds(url) - fds_before))
        bar.update(max(0, now - seen))
        if now > seen:
            seen, grew_at = now, time.monotonic()
        if now >= count:
            break
        time.sleep(1)
    bar.close()


def _probe(url: str, seconds: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"health": [], "start": []}
    queue = f"probe-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=url, timeout=10) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            # A request that fails (a 10 s timeout) counts with the time it took.
            t = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                c.get("/api/health")
            out["health"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                body = {"workflow_type": "p", "task_queue": queue}
                c.post("/api/workflows", headers=CP, json=body)
            out["start"].append((time.perf_counter() - t) * 1000)
    return out


def _p99s(probes: list[dict[str, list[float]]], when: str) -> dict[str, float]:
    """Median over probe windows of each window's p99, per probed request."""
    per_window = [{k: percentiles(v)["p99"] for k, v in probe.items()} for probe in probes]
    medians = median_of_runs(per_window, ["health", "start"])
    return {f"{k}_p99_{when}_ms": v for k, v in medians.items()}


def _load_plan(polls: int, args: Any) -> list[tuple[int, int, str]]:
    """(first worker index, polls, source address) per raw load-generator process."""
    procs = args.load_processes or math.ceil(polls / RAW_PER_PROCESS)
    # By default each generator has an address of its own (under PORTS_PER_SOURCE each).
    sources = args.sources or procs
    share = polls // procs
    return [(i * share, share, f"127.0.0.{2 + i % sources}") for i in range(procs)]


def _hold_and_measure(url: str, args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hold ``args.polls`` idle polls on ``url``: memory per poll, latency before and
    meanwhile; with ``args.drain``, the node is then stopped with SIGTERM."""
    baseline = [_probe(url, 3) for _ in range(args.runs)]
    time.sleep(1)
    rss_before = _rss(url)
    fds_before = _fds(url)
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    drain = ctx.Event()
    queue = f"idle-{uuid.uuid4().hex[:6]}"
    hold_s = max(240, args.polls / 200)
    raw = args.clients == "raw"
    if raw:
        plan = _load_plan(args.polls, args)
        workers = [
            ctx.Process(
                target=_hold_raw_process,
                args=(url, queue, first, n, source, args.polls_per_worker, hold_s, ready, drain),
            )
            for first, n, source in plan
        ]
        held_count = sum(n for _, n, _ in plan)
    else:
        procs = args.load_processes or max(1, args.polls // 2500)
        share = args.polls // procs
        workers = [
            ctx.Process(target=_hold_process, args=(url, queue, share, hold_s, ready))
            for _ in range(procs)
        ]
        held_count = share * procs
    started = time.monotonic()
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=120)
    # Wait until the server holds every poll and has run their first claims.
    _wait_connections(url, held_count, timeout_s=max(120, args.polls / 100), fds_before=fds_before)
    parked_s = time.monotonic() - started
    _wait_idle(url, timeout_s=60)
    rss_after = _rss(url)
    held = [_probe(url, 5) for _ in range(args.runs)]
    conns = _fds(url) - fds_before
    load_rss = sum(p.memory_info().rss for p in map(_process, workers) if p is not None)
    drained: dict[str, Any] = {}
    if raw and args.drain:
        drained = _drain(url, workers, ready, drain)
    for w in workers:
        w.terminate()
        w.join(10)
    # Per poll the server holds (a poll whose connection failed costs it nothing).
    per_poll_kib = (rss_after - rss_before) / max(1, min(held_count, conns)) / 1024
    row = {
        "polls": held_count,
        "server_connections": conns,
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_after_mib": round(rss_after / 2**20, 1),
        "kib_per_poll": round(per_poll_kib, 1),
        **_p99s(baseline, "idle"),
        **_p99s(held, "held"),
        "setup_s": round(time.monotonic() - started, 1),
        "parked_s": round(parked_s, 1),
        "server_processes": len(server_processes(url)) if not drained else drained["processes"],
        "load_processes": len(workers),
        "load_rss_mib": round(load_rss / 2**20, 1),
        "clients": args.clients,
        **{k: v for k, v in drained.items() if k != "processes"},
    }
    return row, {"idle": baseline, "held": held}


def _process(w: Any) -> Any:
    import psutil

    try:
        return psutil.Process(w.pid)
    except psutil.NoSuchProcess:
        return None


def _drain(url: str, workers: list[Any], ready: Any, drain: Any) -> dict[str, Any]:
    """SIGTERM to the node's serve process with every poll parked: how long until each
    held poll was answered, and until every server process exited."""
    procs = server_processes(url)
    parent = min(procs, key=lambda p: p.create_time())
    drain.set()  # the generators stop re-polling: the next answer of each is counted
    time.sleep(0.5)
    sent_at = time.time()
    parent.send_signal(signal.SIGTERM)
    reports = [json.loads(ready.get(timeout=300)) for _ in workers]
    gone_at = None
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if not any(p.is_running() and p.status() != "zombie" for p in procs):
            gone_at = time.time()
            break
        time.sleep(0.05)
    last = max((r["last_answer_at"] for r in reports), default=0.0)
    return {
        "processes": len(procs),
        "drain_answered": sum(r["answered"] for r in reports),
        "drain_failed": sum(r["failed"] for r in reports),
        "refused_answers": sum(r["refused"] for r in reports),
        "drain_answers_s": round(last - sent_at, 2) if last else None,
        "drain_exit_s": round(gone_at - sent_at, 2) if gone_at else None,
    }


def run(args: Any) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    probes: dict[str, Any] = {}
    workers = getattr(args, "server_workers", 1)
    # Several processes must stay within Postgres's max_connections (shared with others).
    extra = {"DW_DB_POOL_MAX_SIZE": "4", "DW_DB_POOL_MIN_SIZE": "1"} if workers > 1 else None
    with (
        bench_database(args.dsn) as dsn,
        dwtrio_server(
            dsn=dsn, workers=workers, redis_url=getattr(args, "redis_url", None), extra_env=extra
        ) as url,
    ):
        row, probes["dwtrio"] = _hold_and_measure(url, args)
        rows.append({"server": "dwtrio", **row})
    if args.floor:
        with floor_server() as url:
            row, probes["floor"] = _hold_and_measure(url, args)
            rows.append({"server": "floor", **row})
    print(table(rows, list(rows[0])))
    series = {
        f"{server}: {kind} {label}": [v for probe in windows[when] for v in probe[kind]]
        for server, windows in probes.items()
        for when, label in (("idle", "idle"), ("held", "with polls held"))
        for kind in ("health", "start")
    }
    plot = plot_cdf("open-polls", series, "request latency (ms) beside the open polls")
    path = write_result(
        "open-polls",
        {
            "unit": "ms",
            "runs_per_point": args.runs,
            "summary": rows,
            "probes": probes,
            "plot": str(plot),
        },
    )
    print(f"results: {path}" + (f"\nplot: {plot}" if plot else ""))
    return {"summary": rows}
