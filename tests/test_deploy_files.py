"""compose/ is checked here, since no Docker engine runs in CI (k8s/ is checked by
tests/deploy/test_k8s_manifests.py).

The checks are the ones that break deployments in practice: unknown DW_*
variables (typos silently ignored), probes pointing at routes that do not
exist, selectors that match nothing, ports that disagree with DW_BIND, and
Dockerfile COPY sources that are missing.
"""

from __future__ import annotations

import yaml

from dwtrio.settings import RECOGNISED_UNUSED, env_names

from conftest import REPO_ROOT

KNOWN_ENV = env_names() | RECOGNISED_UNUSED
COMPOSE = REPO_ROOT / "compose" / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "compose" / "Dockerfile"


def test_compose_uses_only_known_settings_and_sane_services() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"postgres", "redis", "bootstrap", "dwtrio-1", "dwtrio-2"} <= set(services)
    for name, svc in services.items():
        env = svc.get("environment") or {}
        for key in env:
            if key.startswith("DW_"):
                assert key in KNOWN_ENV, f"{name}: unknown setting {key}"
        if name.startswith("dwtrio-"):
            assert env["DW_AUTO_BOOTSTRAP"] == "false"  # the bootstrap service owns migrations
            assert env["DW_BIND"].endswith(":8080")
            assert any(p.endswith(":8080") for p in svc["ports"])
            assert "/api/ready" in " ".join(svc["healthcheck"]["test"])
            assert svc["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
    assert services["bootstrap"]["command"] == ["bootstrap"]
    assert services["bootstrap"]["build"]["dockerfile"] == "compose/Dockerfile"
    # every dwtrio node shares one database and one Redis
    urls = {services[n]["environment"]["DW_DATABASE_URL"] for n in ("dwtrio-1", "dwtrio-2")}
    assert len(urls) == 1 and "@postgres:5432/" in urls.pop()


def test_dockerfile_copies_what_exists() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for src in sources:
                assert (REPO_ROOT / src).exists(), f"Dockerfile copies missing {src}"
    assert 'ENTRYPOINT ["dwtrio"]' in DOCKERFILE.read_text()
