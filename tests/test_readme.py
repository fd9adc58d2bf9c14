"""README examples run verbatim against a real server."""

from __future__ import annotations

import os
import re
import shutil

import trio

from conftest import REPO_ROOT, StartServer

README = (REPO_ROOT / "README.md").read_text()


def shell_blocks(heading: str) -> list[str]:
    section = README.split(heading, 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


async def run_bash(script: str, env: dict[str, str]) -> str:
    with trio.fail_after(60):
        proc = await trio.run_process(
            ["bash", "-euo", "pipefail", "-c", script],
            env={**os.environ, **env},
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    return proc.stdout.decode()


def pointed_at(script: str, url: str) -> str:
    """The README's commands use 127.0.0.1:8080; the test server has its own port."""
    return script.replace("http://127.0.0.1:8080", url)


async def test_curl_examples(start_server: StartServer) -> None:
    assert shutil.which("curl"), "the README examples need curl"
    server = await start_server(admin_token=None, auth_token="dev-token")
    (block,) = shell_blocks("## Try it with curl")
    out = await run_bash(pointed_at(block, server.url), {})
    assert '"status":"serving"' in out
    assert '"status":"ready"' in out
    assert '"control_plane":{"version":"2"' in out
    assert '"name":"billing"' in out


async def test_curl_walkthrough_runs_a_greeter(start_server: StartServer) -> None:
    assert shutil.which("curl") and shutil.which("jq"), "the walkthrough needs curl and jq"
    server = await start_server(admin_token=None, auth_token="dev-token")
    (block,) = shell_blocks("### A whole workflow by hand")
    out = await run_bash(block, {"DW": server.url})
    assert '"status": "completed"' in out
    assert '"output": "hello, world"' in out
    assert out.strip().splitlines()[-6:] == [
        "StartAccepted",
        "WorkflowStarted",
        "ActivityScheduled",
        "ActivityStarted",
        "ActivityCompleted",
        "WorkflowCompleted",
    ]
