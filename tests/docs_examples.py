"""What the tests that run a page of the docs share.

A page's fenced blocks are its examples; the ``text`` block right after one is
what it must print (line by line; ``...`` in a documented line stands for any
text). The pages address the server as README's "Run it" starts it
(:data:`DOCUMENTED_URL`); a test swaps in its own server's address.
"""

from __future__ import annotations

import os
import re
import shutil

import attrs
import trio

from conftest import REPO_ROOT

DOCUMENTED_URL = "http://127.0.0.1:8080"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)


@attrs.frozen
class Example:
    language: str
    code: str
    #: The ``text`` block right after it, if any.
    prints: str | None
    #: The line of its opening fence in the page.
    line: int


@attrs.frozen
class Page:
    #: As it is named in messages, e.g. ``docs/schedules.md``.
    path: str
    text: str
    #: The page line ``text`` starts at (a section of a page).
    first_line: int = 1

    @classmethod
    def load(cls, path: str) -> Page:
        return cls(path, (REPO_ROOT / path).read_text())

    def examples(self, *languages: str) -> list[Example]:
        fences = list(FENCE.finditer(self.text))
        found = []
        for i, m in enumerate(fences):
            if m.group(1) not in languages:
                continue
            after = fences[i + 1] if i + 1 < len(fences) else None
            prints = None
            if (
                after
                and after.group(1) == "text"
                and not self.text[m.end() : after.start()].strip()
            ):
                prints = after.group(2)
            line = self.first_line + self.text.count("\n", 0, m.start())
            found.append(Example(m.group(1), m.group(2), prints, line))
        return found

    def assert_prints(self, example: Example, stdout: str) -> None:
        want = (example.prints or "").strip("\n").splitlines()
        got = stdout.strip("\n").splitlines()
        ok = len(want) == len(got) and all(
            re.fullmatch(".*".join(re.escape(part) for part in w.split("...")), g)
            for w, g in zip(want, got, strict=True)
        )
        assert ok, (
            f"the {example.language} block at {self.path}:{example.line} printed\n"
            f"{stdout}\ninstead of\n{example.prints}"
        )

    async def run(self, argv: list[str], example: Example, timeout_s: float = 90) -> str:
        """Run one example's command line; its stdout (it must exit 0)."""
        with trio.fail_after(timeout_s):
            proc = await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False, env=dict(os.environ)
            )
        out, err = proc.stdout.decode(), proc.stderr.decode()
        assert proc.returncode == 0, (
            f"the {example.language} block at {self.path}:{example.line} failed "
            f"({proc.returncode}):\n{err}\n{out}"
        )
        return out

    def check_curl_examples(self, min_count: int) -> None:
        """The first ``sh`` block sets the variables; every other one uses ``$DW`` and
        documents what it prints."""
        setup, *rest = self.examples("sh")
        assert DOCUMENTED_URL in setup.code and setup.prints is None
        assert len(rest) >= min_count
        assert all(e.prints is not None and "$DW" in e.code for e in rest)

    async def run_curl_examples(self, url: str) -> None:
        """Every ``sh`` block after the first, in order, each after the first, against ``url``."""
        assert shutil.which("curl") and shutil.which("jq"), "the examples need curl and jq"
        setup, *rest = self.examples("sh")
        for example in rest:
            script = (setup.code + example.code).replace(DOCUMENTED_URL, url)
            out = await self.run(["bash", "-euo", "pipefail", "-c", script], example, 60)
            self.assert_prints(example, out)
