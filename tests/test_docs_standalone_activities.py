"""docs/standalone-activities.md runs as written.

Every ``sh`` block of the page runs in order against one fresh server (each after the
first, the block that sets the variables), and prints exactly the ``text`` block that
follows it (tests/docs_examples.py).
"""

from __future__ import annotations

from docs_examples import Page

from conftest import StartServer

PAGE = Page.load("docs/standalone-activities.md")


def test_every_example_documents_what_it_prints() -> None:
    PAGE.check_curl_examples(min_count=7)
    # Every route the page documents is one it runs.
    codes = [e.code for e in PAGE.examples("sh")]
    for route in ('/api/activities"', "/api/activities/invoice-42", "/api/activities?", "/cancel"):
        assert any(route in code for code in codes), route


async def test_the_curl_examples(start_server: StartServer) -> None:
    server = await start_server(admin_token=None, auth_token="dev-token")
    await PAGE.run_curl_examples(server.url)
