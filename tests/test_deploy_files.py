"""compose/ and k8s/ are checked here, since no Docker engine or cluster runs in CI.

The checks are the ones that break deployments in practice: unknown DW_*
variables (typos silently ignored), probes pointing at routes that do not
exist, selectors that match nothing, ports that disagree with DW_BIND, and
Dockerfile COPY sources that are missing.
"""

from __future__ import annotations

from typing import Any

import yaml

from dwtrio.settings import RECOGNISED_UNUSED, env_names

from conftest import REPO_ROOT

KNOWN_ENV = env_names() | RECOGNISED_UNUSED
COMPOSE = REPO_ROOT / "compose" / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "compose" / "Dockerfile"
K8S = sorted((REPO_ROOT / "k8s").glob("*.yaml"))


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in K8S:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["_file"] = path.name
                docs.append(doc)
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] == kind]


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


def test_k8s_manifests_are_well_formed() -> None:
    docs = k8s_docs()
    kinds = {d["kind"] for d in docs}
    assert {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Job",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    } <= kinds
    for d in docs:
        assert d.get("apiVersion") and d.get("metadata", {}).get("name"), d["_file"]
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "dwtrio", d["_file"]


def test_k8s_env_names_are_settings() -> None:
    for cm in by_kind("ConfigMap"):
        for key in cm["data"]:
            assert key in KNOWN_ENV, f"ConfigMap sets unknown {key}"
    for secret in by_kind("Secret"):
        for key in secret["stringData"]:
            assert key in KNOWN_ENV, f"Secret sets unknown {key}"
    for workload in by_kind("Deployment") + by_kind("Job"):
        for c in workload["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                assert e["name"] in KNOWN_ENV, f"{workload['_file']}: unknown {e['name']}"
            refs = {r.get("configMapRef", r.get("secretRef", {})).get("name") for r in c["envFrom"]}
            assert refs == {"dwtrio-config", "dwtrio-secrets"}


def test_k8s_probes_ports_and_selectors_line_up() -> None:
    (config,) = by_kind("ConfigMap")
    bind_port = int(config["data"]["DW_BIND"].rsplit(":", 1)[1])
    assert config["data"]["DW_AUTO_BOOTSTRAP"] == "false"  # the Job owns migrations
    (deploy,) = by_kind("Deployment")
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == bind_port
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/health"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    (service,) = by_kind("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in ports
    (pdb,) = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (job,) = by_kind("Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["bootstrap"]


def test_probe_routes_exist() -> None:
    from dwtrio.http.app import create_quart_app
    from dwtrio.runtime import Runtime
    from dwtrio.settings import Settings

    app = create_quart_app(Runtime.build(Settings.from_env({}), store=None))  # type: ignore[arg-type]
    rules = {r.rule for r in app.url_map.iter_rules()}
    assert {"/api/health", "/api/ready"} <= rules
