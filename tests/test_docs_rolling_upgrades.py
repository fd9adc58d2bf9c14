"""docs/rolling-upgrades.md runs as written.

Every ``sh`` block of the page runs in order (each after the first, the block that
sets ``DW``, ``AUTH``, ``CP``, ``WP``, ``JSON`` and ``Q``) against one real server,
then the ``python`` block with the official SDK in its own interpreter. What each
block prints must match the ``text`` block right after it, line by line; ``...`` in
a documented line stands for any text.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from docs_examples import DOCUMENTED_URL, Page

from conftest import StartServer

PAGE = Page.load("docs/rolling-upgrades.md")
examples = PAGE.examples
assert_prints = PAGE.assert_prints
run = PAGE.run


def test_every_example_documents_what_it_prints() -> None:
    shell, python = examples("sh"), examples("python")
    assert len(shell) >= 10 and len(python) == 1
    setup, *rest = shell
    assert "DW=" in setup.code and "Q=" in setup.code and setup.prints is None
    missing = [e.line for e in rest + python if e.prints is None]
    assert not missing, f"examples without a text block after them, at lines {missing}"
    assert DOCUMENTED_URL in setup.code
    assert all("$DW" in e.code for e in rest) and all(DOCUMENTED_URL in e.code for e in python)
    # Every route the page documents is one it runs.
    for route in ('/build-ids"', "/build-ids/drain", "/build-ids/resume", "/build-ids/promote"):
        assert any(route in e.code for e in rest), route


async def test_the_examples_in_order(start_server: StartServer, tmp_path: Path) -> None:
    """The page is one story: the curl blocks, then the SDK block, against one server."""
    assert shutil.which("curl") and shutil.which("jq"), "the examples need curl and jq"
    server = await start_server(admin_token=None, auth_token="dev-token")
    setup, *rest = examples("sh")
    for example in rest:
        script = (setup.code + example.code).replace(DOCUMENTED_URL, server.url)
        out = await run(["bash", "-euo", "pipefail", "-c", script], example)
        assert_prints(example, out)
    for i, example in enumerate(examples("python")):
        script_path = tmp_path / f"example_{i}.py"
        script_path.write_text(example.code.replace(DOCUMENTED_URL, server.url))
        out = await run([sys.executable, str(script_path)], example)
        assert_prints(example, out)
