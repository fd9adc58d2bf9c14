"""docs/rolling-upgrades.md runs as written.

Every ``sh`` block of the page runs in order (each after the first, the block that
sets ``DW``, ``AUTH``, ``CP``, ``WP``, ``JSON`` and ``Q``) against one real server,
then the ``python`` block with the official SDK in its own interpreter. What each
block prints must match the ``text`` block right after it, line by line; ``...`` in
a documented line stands for any text.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import attrs
import trio

from conftest import REPO_ROOT, StartServer

PAGE = "docs/rolling-upgrades.md"
DOC = (REPO_ROOT / PAGE).read_text()
#: Where the page addresses the server (README's "Run it"); the test server has its own port.
DOCUMENTED_URL = "http://127.0.0.1:8080"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)


@attrs.frozen
class Example:
    language: str
    code: str
    #: The ``text`` block right after it, if any.
    prints: str | None
    line: int


def examples(language: str) -> list[Example]:
    fences = list(FENCE.finditer(DOC))
    found = []
    for i, m in enumerate(fences):
        if m.group(1) != language:
            continue
        after = fences[i + 1] if i + 1 < len(fences) else None
        prints = None
        if after and after.group(1) == "text" and not DOC[m.end() : after.start()].strip():
            prints = after.group(2)
        found.append(Example(language, m.group(2), prints, DOC.count("\n", 0, m.start()) + 1))
    return found


def assert_prints(example: Example, stdout: str) -> None:
    assert example.prints is not None
    want = example.prints.strip("\n").splitlines()
    got = stdout.strip("\n").splitlines()
    ok = len(want) == len(got) and all(
        re.fullmatch(".*".join(re.escape(part) for part in w.split("...")), g)
        for w, g in zip(want, got, strict=True)
    )
    assert ok, (
        f"the {example.language} block at {PAGE}:{example.line} printed\n"
        f"{stdout}\ninstead of\n{example.prints}"
    )


async def run(argv: list[str], example: Example) -> str:
    with trio.fail_after(90):
        proc = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, check=False, env=dict(os.environ)
        )
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, (
        f"the {example.language} block at {PAGE}:{example.line} failed "
        f"({proc.returncode}):\n{err}\n{out}"
    )
    return out


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
