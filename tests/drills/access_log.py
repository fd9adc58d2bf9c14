"""What the drills' clients got from the load balancer: nginx's access log, and the
node logs read with their times.

:func:`log_clients` renders the cluster's nginx config again with an access log (the
compose file has none) and reloads nginx; :func:`read_access_log` reads it back, one
:class:`Served` per answer a client got (a 502 nginx made up itself included).
:func:`timed_requests` reads the nodes' request lines with the time each one ended.
"""

from __future__ import annotations

import re
import signal
import time
from datetime import datetime
from pathlib import Path

import attrs
import trio
from cluster.processes import NGINX_TEMPLATE, ProcessCluster, render_nginx_conf

ACCESS_FORMAT = "$msec $status $upstream_addr $upstream_status $request_method $uri"


def access_log_path(cluster: ProcessCluster) -> Path:
    assert cluster.nginx is not None
    return cluster.nginx.prefix / "access.log"


async def log_clients(cluster: ProcessCluster) -> None:
    """Reload nginx with an access log of every answer (SIGHUP: new workers take the new
    config, old ones finish what they hold)."""
    nginx = cluster.nginx
    assert nginx is not None and nginx.proc is not None
    text = render_nginx_conf(
        NGINX_TEMPLATE.read_text(),
        upstreams=[f"127.0.0.1:{node.port}" for node in cluster.nodes],
        port=nginx.port,
        prefix=nginx.prefix,
    )
    assert text.count("access_log off;") == 1, "the template's access_log line moved"
    text = text.replace(
        "access_log off;",
        f"log_format drill '{ACCESS_FORMAT}';\n    access_log {access_log_path(cluster)} drill;",
    )
    nginx.conf.write_text(text)
    await nginx.check_config()
    nginx.proc.send_signal(signal.SIGHUP)
    with trio.fail_after(10):  # the new workers open the log within milliseconds
        while not access_log_path(cluster).exists():
            await trio.sleep(0.05)


@attrs.frozen
class Served:
    """One answer nginx gave a client."""

    at: float
    status: int
    upstreams: tuple[str, ...]  # the nodes nginx tried, in order
    method: str
    uri: str


def read_access_log(cluster: ProcessCluster) -> list[Served]:
    path = access_log_path(cluster)
    out = []
    for line in path.read_text().splitlines() if path.exists() else ():
        at, status, rest = line.split(" ", 2)
        *addresses, _upstream_status, method, uri = rest.replace(", ", ",").split(" ")
        upstreams = tuple(a for a in ",".join(addresses).split(",") if a and a != "-")
        out.append(Served(float(at), int(status), upstreams, method, uri))
    return out


_TIMED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*?route=(\S+) (?:status=(\d+) )?"
    r"duration_ms=([\d.]+)"
)


@attrs.frozen
class TimedRequest:
    """One request a node logged: when it ended (wall clock, ms precision) and took."""

    node: str
    route: str
    status: int | None
    ended: float
    duration_s: float

    @property
    def began(self) -> float:
        return self.ended - self.duration_s


def timed_requests(cluster: ProcessCluster) -> list[TimedRequest]:
    """Every request line of every node's log (all its starts)."""
    found = []
    for node in cluster.nodes:
        for line in node.log.read_text(errors="replace").splitlines():
            m = _TIMED.match(line)
            if m is None:
                continue
            local = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timetuple()
            ended = time.mktime(local) + int(m.group(2)) / 1000
            status = int(m.group(4)) if m.group(4) else None
            found.append(
                TimedRequest(node.server_id, m.group(3), status, ended, float(m.group(5)) / 1000)
            )
    return found
