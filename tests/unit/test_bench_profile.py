"""``python -m bench profile``: py-spy's collapsed stacks charged to the layer they ran in."""

from __future__ import annotations

from pathlib import Path

from bench import profile

PROC = 'process 1:"python -m dwtrio serve"'
TRIO = f"{PROC};run (trio/_core/_run.py:2532);unrolled_run (trio/_core/_run.py:2764)"
LOOP = f"{PROC};Thread.run (threading.py:982);AsyncioThread._serve (dwtrio/store/bridge.py:84)"


def test_samples_go_to_the_innermost_known_layer_and_their_thread(tmp_path: Path) -> None:
    raw = tmp_path / "dwtrio-1.txt"
    raw.write_text(
        "\n".join(
            [
                f"{TRIO};handle (h11/_connection.py:1);dumps (dwtrio/wire.py:137) 3",
                f"{TRIO};handle (hypercorn/protocol/http_stream.py:9) 5",
                f"{TRIO};get_events (trio/_core/_io_epoll.py:243) 2",
                f"{LOOP};Store._attempt (dwtrio/store/pool.py:491);"
                "Connection._do_execute (asyncpg/connection.py:2066) 7",
                f"{LOOP} 1",
                "not a sample line",
            ]
        )
        + "\n"
    )
    summary = profile.summarise([raw])
    assert summary["samples"] == 18
    assert summary["layers"] == {
        "postgres driver (asyncpg)": 7,
        "HTTP stack (hypercorn, h11)": 5,
        "dwtrio other": 3,
        "epoll (Trio)": 2,
        "asyncio loop (uvloop, in C)": 1,
    }
    assert summary["threads"] == {"Trio thread": 10, "asyncio thread (store)": 8}
    text = profile.report(summary)
    assert "38.9%  postgres driver (asyncpg)" in text and "18 samples" in text
