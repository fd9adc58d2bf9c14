"""A database that stops answering (a partition, a frozen host) must not hold the server.

The server reaches Postgres through a loopback proxy that, once stalled, keeps every
connection open and forwards nothing (and accepts new connections it never answers).
The background loops are then stuck in store calls. Stopping the server cancels them:
their cleanup (a rollback, asyncpg's reset of the connection) cannot get an answer
either, and must give up after ``pool.CLEANUP_TIMEOUT_S`` (2 s) and close the connection instead
of waiting forever. Before, the server never exited (found by the container test,
stopping a node after its database).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import attrs
import pytest
import trio

from conftest import StartServer


@attrs.define
class StallingProxy:
    """A loopback TCP proxy to Postgres that can stop forwarding without closing anything."""

    target: tuple[str, int]
    port: int = 0
    stalled: trio.Event = attrs.field(factory=trio.Event)

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self.handle, listeners)

    async def handle(self, client: trio.SocketStream) -> None:
        async with client:
            if self.stalled.is_set():
                await trio.sleep_forever()  # accepted, never answered
            async with await trio.open_tcp_stream(*self.target) as upstream:

                async def pump(a: trio.SocketStream, b: trio.SocketStream) -> None:
                    async for chunk in a:
                        if self.stalled.is_set():
                            await trio.sleep_forever()
                        await b.send_all(chunk)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pump, client, upstream)
                    nursery.start_soon(pump, upstream, client)


async def test_a_server_stops_promptly_when_its_database_stops_answering(
    start_server: StartServer, db_dsn: str, nursery: trio.Nursery
) -> None:
    url = urlsplit(db_dsn)
    if url.hostname is None or url.port is None:
        pytest.skip("the test Postgres is not on TCP")
    proxy = StallingProxy((url.hostname, url.port))
    await nursery.start(proxy.serve)
    via_proxy = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))
    server = await start_server(
        dsn=via_proxy,
        graceful_timeout_s=0.5,
        # every loop keeps a store call going, so the stall catches some mid-statement
        timer_poll_interval_ms=20,
        scheduler_poll_interval_ms=20,
        task_repair_interval_s=0.02,
        timeout_check_interval_s=0.02,
    )
    async with server.client() as c:
        assert (await c.get("/api/ready")).status_code == 200
    proxy.stalled.set()
    await trio.sleep(0.5)  # the loops' next statements go out and get no answer
    started = trio.current_time()
    # graceful timeout + one cleanup per stuck operation (they run in parallel) + the
    # pool's close, with room for a slow machine
    await server.shutdown(timeout_s=0.5 + 2 * 2.0 + 5.0 + 3.0)
    print(f"stopped {trio.current_time() - started:.2f} s after the stop was asked")
