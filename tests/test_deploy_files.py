"""compose/ is checked here without a container engine (k8s/ is checked by
tests/deploy/test_k8s_manifests.py; tests/deploy/test_containers.py builds the image
and runs both compose shapes where podman can run).

The checks are the ones that break deployments in practice: unknown DW_*
variables (typos silently ignored), probes pointing at routes that do not
exist, ports that disagree with DW_BIND or with the load balancer, nodes that
do not share their settings, databases published to the outside, and
Dockerfile COPY sources that are missing or left out of the build context.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from dwtrio.settings import RECOGNISED_UNUSED, env_names

from conftest import REPO_ROOT

KNOWN_ENV = env_names() | RECOGNISED_UNUSED
SINGLE = REPO_ROOT / "compose" / "single" / "compose.yaml"
CLUSTER = REPO_ROOT / "compose" / "small-cluster" / "compose.yaml"
NGINX_CONF = REPO_ROOT / "compose" / "small-cluster" / "nginx.conf"
DOCKERFILE = REPO_ROOT / "compose" / "Dockerfile"
NODES = ("dwtrio-1", "dwtrio-2")
#: An image reference every compose file lets the environment replace.
OVERRIDABLE_IMAGE = re.compile(r"^\$\{DWTRIO_[A-Z_]*IMAGE:-[^}]+\}$")


def load(path: Path) -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(path.read_text())
    return compose


def dockerfile_env(name: str) -> str:
    (value,) = re.findall(rf"\b{name}=(\S+)", DOCKERFILE.read_text())
    return str(value)


def test_compose_files_set_only_known_settings_and_overridable_images() -> None:
    for path in (SINGLE, CLUSTER):
        for name, svc in load(path)["services"].items():
            for key in svc.get("environment") or {}:
                if key.startswith("DW_"):
                    assert key in KNOWN_ENV, f"{path.name} {name}: unknown setting {key}"
            assert OVERRIDABLE_IMAGE.match(svc["image"]), f"{name}: image {svc['image']}"
            if "build" in svc:
                assert (
                    path.parent / svc["build"]["context"] / svc["build"]["dockerfile"]
                ).resolve() == DOCKERFILE


def test_single_is_one_container_on_the_embedded_postgres_in_a_named_volume() -> None:
    compose = load(SINGLE)
    ((name, svc),) = compose["services"].items()
    assert "DW_REDIS_URL" not in svc["environment"]
    assert svc["environment"]["DW_DATABASE_URL"] == "${DW_DATABASE_URL:-}"  # empty: embedded
    (volume,) = svc["volumes"]
    source, target = volume.split(":")
    assert source in compose["volumes"], f"{name} mounts {source}, not a named volume"
    assert target == dockerfile_env("DW_DATA_DIR")
    assert f'VOLUME ["{target}"]' in DOCKERFILE.read_text()
    (port,) = svc["ports"]
    assert port.startswith("127.0.0.1:")
    assert port.rsplit(":", 1)[1] == dockerfile_env("DW_BIND").rsplit(":", 1)[1]


def test_small_cluster_nodes_share_one_anchor_and_sit_behind_the_load_balancer() -> None:
    compose = load(CLUSTER)
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "bootstrap", *NODES, "nginx"}
    shared = compose["x-dwtrio-env"]
    assert services["bootstrap"]["environment"] == shared
    assert services["bootstrap"]["command"] == ["bootstrap"]
    assert services["bootstrap"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert shared["DW_AUTO_BOOTSTRAP"] == "false"  # the bootstrap service owns migrations
    assert "@postgres:5432/" in shared["DW_DATABASE_URL"]
    assert shared["DW_REDIS_URL"].startswith("redis://redis:6379/")
    server_ids = set()
    for node in NODES:
        svc = services[node]
        env = dict(svc["environment"])
        server_ids.add(env.pop("DW_SERVER_ID"))
        assert env == shared, f"{node} does not take the shared settings whole"
        assert svc["command"] == ["serve"]
        assert svc["image"] == services["bootstrap"]["image"]
        assert "/api/ready" in " ".join(svc["healthcheck"]["test"])
        assert svc["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
        assert services["nginx"]["depends_on"][node]["condition"] == "service_healthy"
    assert len(server_ids) == len(NODES)
    # Only the load balancer publishes a port, and only on loopback.
    assert [name for name, svc in services.items() if "ports" in svc] == ["nginx"]
    (port,) = services["nginx"]["ports"]
    assert port.startswith("127.0.0.1:")
    assert services["nginx"]["volumes"] == ["./nginx.conf:/etc/nginx/nginx.conf:ro"]


def test_nginx_conf_sends_to_every_node_on_its_bind_port() -> None:
    conf = NGINX_CONF.read_text()
    upstream = conf.split("upstream dwtrio {", 1)[1].split("}", 1)[0]
    servers = re.findall(r"^\s*server (\S+):(\d+)\b", upstream, re.MULTILINE)
    node_port = load(CLUSTER)["x-dwtrio-env"]["DW_BIND"].rsplit(":", 1)[1]
    assert servers == [(node, node_port) for node in NODES]
    (listen,) = re.findall(r"^\s*listen (\d+);", conf, re.MULTILINE)
    (published,) = load(CLUSTER)["services"]["nginx"]["ports"]
    assert published.rsplit(":", 1)[1] == listen


def test_dockerfile_copies_what_exists_and_the_context_keeps() -> None:
    text = DOCKERFILE.read_text()
    kept = {
        line[1:]
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = 0
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _dest = line.split()[1:]
            for src in sources:
                assert (REPO_ROOT / src).exists(), f"Dockerfile copies missing {src}"
                assert src in kept, f".dockerignore leaves {src} out of the build context"
                copied += 1
    assert copied
    (entrypoint,) = re.findall(r"^ENTRYPOINT (\[.*\])$", text, re.MULTILINE)
    assert yaml.safe_load(entrypoint)[-1] == "dwtrio"
    assert "USER dwtrio" in text and "HEALTHCHECK" in text and "/api/ready" in text
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"ARG VERSION={version}\n" in text, "the image's version label trails pyproject.toml"
