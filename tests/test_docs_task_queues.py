"""docs/task-queues.md runs as written.

Every ``sh`` block of the page runs in order against one fresh server (each after the
first, the block that sets ``DW``, ``AUTH``, ``CP``, ``WP`` and ``JSON``), and prints
exactly the ``text`` block that follows it.
"""

from __future__ import annotations

import os
import re
import shutil

import trio

from conftest import REPO_ROOT, StartServer

DOC = (REPO_ROOT / "docs" / "task-queues.md").read_text()
DOCUMENTED_URL = "http://127.0.0.1:8080"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)


def shell_examples() -> list[tuple[str, str | None, int]]:
    """Each ``sh`` block: its code, the ``text`` block right after it (if any), its line."""
    fences = list(FENCE.finditer(DOC))
    found = []
    for i, m in enumerate(fences):
        if m.group(1) != "sh":
            continue
        after = fences[i + 1] if i + 1 < len(fences) else None
        prints = None
        if after and after.group(1) == "text" and not DOC[m.end() : after.start()].strip():
            prints = after.group(2)
        found.append((m.group(2), prints, DOC.count("\n", 0, m.start()) + 1))
    return found


def test_every_example_documents_what_it_prints() -> None:
    (setup, setup_prints, _), *rest = shell_examples()
    assert DOCUMENTED_URL in setup and setup_prints is None
    assert len(rest) >= 6
    assert all(prints is not None and "$DW" in code for code, prints, _ in rest)


async def test_the_curl_examples(start_server: StartServer) -> None:
    assert shutil.which("curl") and shutil.which("jq"), "the examples need curl and jq"
    server = await start_server(admin_token=None, auth_token="dev-token")
    (setup, _, _), *rest = shell_examples()
    for code, prints, line in rest:
        script = (setup + code).replace(DOCUMENTED_URL, server.url)
        with trio.fail_after(60):
            proc = await trio.run_process(
                ["bash", "-euo", "pipefail", "-c", script],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=dict(os.environ),
            )
        out = proc.stdout.decode()
        assert proc.returncode == 0, (line, proc.stderr.decode(), out)
        assert out.strip("\n") == (prints or "").strip("\n"), (
            f"the sh block at docs/task-queues.md:{line} printed\n{out}\ninstead of\n{prints}"
        )
