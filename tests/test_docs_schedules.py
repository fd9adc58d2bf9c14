"""docs/schedules.md runs as written.

Every ``sh`` block of the page runs in order (each after the first, the block
that sets ``DW``, ``AUTH``, ``CP`` and ``JSON``) against one real server, and
every ``python`` block runs the same way with the official SDK in its own
interpreter (the SDK is asyncio-based; the test server runs under
Trio). What each block prints must match the ``text`` block right after
it, line by line; ``...`` in a documented line stands for any text (times,
lags). The page's settings table is checked against ``dwtrio.settings``.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import attrs
from docs_examples import DOCUMENTED_URL, Page

from dwtrio.settings import Settings

from conftest import REPO_ROOT, StartServer

PAGE = Page.load("docs/schedules.md")
DOC = PAGE.text
examples = PAGE.examples
assert_prints = PAGE.assert_prints
run = PAGE.run


def test_every_example_documents_what_it_prints() -> None:
    shell, python = examples("sh"), examples("python")
    assert len(shell) >= 10 and len(python) == 2
    setup, *rest = shell
    assert "DW=" in setup.code and setup.prints is None
    missing = [e.line for e in rest + python if e.prints is None]
    assert not missing, f"examples without a text block after them, at lines {missing}"
    # every example talks to the documented server, so the test can point it at its own
    assert DOCUMENTED_URL in setup.code
    assert all("$DW" in e.code for e in rest) and all(DOCUMENTED_URL in e.code for e in python)


async def test_the_curl_examples(start_server: StartServer) -> None:
    assert shutil.which("curl") and shutil.which("jq"), "the examples need curl and jq"
    server = await start_server(admin_token=None, auth_token="dev-token")
    setup, *rest = examples("sh")
    for example in rest:
        script = (setup.code + example.code).replace(DOCUMENTED_URL, server.url)
        out = await run(["bash", "-euo", "pipefail", "-c", script], example)
        assert_prints(example, out)


async def test_the_python_sdk_examples(start_server: StartServer, tmp_path: Path) -> None:
    server = await start_server(admin_token=None, auth_token="dev-token")
    for i, example in enumerate(examples("python")):
        script = tmp_path / f"example_{i}.py"
        script.write_text(example.code.replace(DOCUMENTED_URL, server.url))
        out = await run([sys.executable, str(script)], example)
        assert_prints(example, out)


def test_the_settings_table_matches_the_server() -> None:
    section = DOC.split("### Settings", 1)[1]
    rows = re.findall(r"^\| `(DW_\w+)` \| `([^`]*)` \|", section, flags=re.M)
    assert len(rows) == 4
    by_env = {f.metadata["env"]: f for f in attrs.fields(Settings) if "env" in f.metadata}
    for env, documented in rows:
        field = by_env[env]
        default = str(field.default).lower() if isinstance(field.default, bool) else field.default
        assert documented == str(default), (env, documented, default)
        assert env in (REPO_ROOT / "docs" / "configuration.md").read_text()
