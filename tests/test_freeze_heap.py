"""A server process of its own freezes its startup heap (``serve(freeze_heap=True)``), so a
full garbage collection walks only what requests allocate; the tests' shared process
never does (``start_server`` leaves it off)."""

from __future__ import annotations

import gc

import trio

from dwtrio.main import serve

from conftest import StartServer, make_settings


async def test_serve_freezes_the_heap_once_listening(db_dsn: str) -> None:
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                lambda task_status: serve(
                    make_settings(), db_dsn, stop=stop, freeze_heap=True, task_status=task_status
                )
            )
            assert binds and gc.get_freeze_count() > 10_000
            stop.set()
    finally:
        gc.unfreeze()


async def test_test_servers_leave_the_heap_alone(start_server: StartServer) -> None:
    await start_server()
    assert gc.get_freeze_count() == 0
