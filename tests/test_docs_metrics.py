"""docs/operations.md lists exactly the metrics a server exposes, and every
expression of docs/grafana-dashboard.json reads metrics that exist."""

from __future__ import annotations

import json
import re

from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO_ROOT, RunningServer

DOC = REPO_ROOT / "docs" / "operations.md"
DASHBOARD = REPO_ROOT / "docs" / "grafana-dashboard.json"
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


async def exposed(server: RunningServer) -> dict[str, str]:
    """Metric name (as written in the text, counters with ``_total``) -> type."""
    async with server.client() as c:
        r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    names = {}
    for family in text_string_to_metric_families(r.text):
        name = family.name + "_total" if family.type == "counter" else family.name
        names[name] = family.type
    return names


def documented() -> dict[str, str]:
    section = DOC.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    table = section.split("### Every metric", 1)[1]
    rows = re.findall(r"^\| `([a-z_:][a-z0-9_:]*)` \| (\w+) \|", table, re.M)
    assert len(rows) == len(dict(rows)), "a metric is listed twice"
    return dict(rows)


async def test_operations_doc_lists_exactly_the_exposed_metrics(server: RunningServer) -> None:
    assert documented() == await exposed(server)


async def test_dashboard_reads_only_exposed_metrics(server: RunningServer) -> None:
    names = await exposed(server)
    series = set(names) | {
        name + suffix
        for name, kind in names.items()
        if kind == "histogram"
        for suffix in HISTOGRAM_SERIES
    }
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    used = {
        token
        for expr in exprs
        for token in re.findall(r"[a-z_:][a-z0-9_:]*", re.sub(r'"[^"]*"', "", expr))
        if token.startswith(("dwtrio_", "process_", "python_"))
    }
    assert used and used <= series, sorted(used - series)
    # Every dwtrio family is on the dashboard somewhere.
    dwtrio = {n for n in names if n.startswith("dwtrio_")}
    shown = {n for n in dwtrio if any(u == n or u.startswith(n + "_") for u in used)}
    assert shown == dwtrio, sorted(dwtrio - shown)
