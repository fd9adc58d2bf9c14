"""The image of compose/Dockerfile and both compose shapes, built and run with podman.

**Images without a registry.** No registry is reachable from the test machines, so the
images the compose files name are made here: a Debian base by ``debootstrap`` (the
mirror comes from apt's own sources) imported into podman, and on it the stand-ins of
tests/deploy/images/ for ``python:3.11-slim``, ``postgres``, ``redis`` and ``nginx``
(Debian's packages, run the way the official images run them). Each is tagged with a
hash of what it is made from and rebuilt only when that tag is missing, so a repeated
run on one machine starts at the dwtrio image. That one is built every run, from the
working tree, through the Dockerfile's ``BASE_IMAGE`` argument; its pip steps reach
PyPI over the host's network, with the host's CA bundle as the ``pip_cert`` secret
when an HTTPS proxy needs it.

**Running the stacks.** ``podman-compose`` creates every container of a compose file
(``up --no-start``); the test then starts them in the order of their ``depends_on``
and waits for each condition itself, running the healthchecks with ``podman
healthcheck run``: podman 4.3 has neither ``podman wait --condition=healthy`` nor
periodic healthchecks without systemd, and its ``--requires`` (what podman-compose
uses for ``depends_on``) would start a finished bootstrap job again. Only loopback is
ever published; the SDK worker runs on this host and polls through that one port.

**Engine settings** come from a containers.conf written for the session
(``CONTAINERS_CONF``): runtime runc, default ulimits no higher than this process's
hard limits. Nothing global is changed.

The tests skip only when the engine cannot run here: podman missing, ``podman info``
failing, or the base image unable to run ``true``. Everything they create (containers,
volumes, networks, the dwtrio image) is removed when they end, passed or failed; the
cached base images stay. Phase timings are printed (``-rP`` shows them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import yaml

from conftest import CP, REPO_ROOT, exclusive, free_port

pytestmark = [pytest.mark.sdk, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
STAND_INS = HERE / "images"
DRIVER = HERE.parent / "cluster" / "signal_flow_driver.py"
DOCKERFILE = REPO_ROOT / "compose" / "Dockerfile"
SINGLE = REPO_ROOT / "compose" / "single" / "compose.yaml"
CLUSTER = REPO_ROOT / "compose" / "small-cluster" / "compose.yaml"
PODMAN_COMPOSE = Path(sys.executable).with_name("podman-compose")
SERVER_IMAGE = "localhost/dwtrio-test-server:current"
TOKEN = "compose-token"
SUITE = "bookworm"
#: Run on the debootstrapped tree before it is imported: services never start during
#: package installs (as in Debian's own container images), and no apt caches.
ROOTFS_SETUP = """
printf '#!/bin/sh\\nexit 101\\n' > "$1/usr/sbin/policy-rc.d"
chmod 755 "$1/usr/sbin/policy-rc.d"
rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb
"""
WAIT_S = 120.0  # longest wait for one container to become healthy or finish
SLOW_STOP_S = 5.0  # a stop slower than this prints the container's last log lines
#: The most the dwtrio image may add to its python base: the virtualenv and tini, no
#: pip, no wheels, no build files (measured: 101 MB).
IMAGE_GROWTH_LIMIT_BYTES = 150 * 1000**2


def digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def debian_mirror() -> str:
    """The Debian mirror apt uses on this host (deb822 or one-line sources)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if re.match(r"^\w[\w-]*:", line)
            )
            suites = fields.get("Suites", "").split()
            if SUITE in suites and "deb" in fields.get("Types", "").split():
                return fields["URIs"].split()[0]
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text().splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return "http://deb.debian.org/debian"


def ca_bundle() -> Path | None:
    """The CA bundle this host's pip trusts (an HTTPS proxy's CA lives there)."""
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    return default if default.is_file() else None


def engine_config(path: Path) -> Path:
    """containers.conf for the session: runc, and ulimits podman may actually set here."""

    def capped(limit: int, most: int) -> int:
        return most if limit == resource.RLIM_INFINITY else min(limit, most)

    nofile = capped(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20)
    nproc = capped(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
    path.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n\n'
        "[engine]\n"
        'runtime = "runc"\n'
    )
    return path


@attrs.define
class Podman:
    """podman with the session's settings; every call bounded in time."""

    env: dict[str, str]
    timings: dict[str, float] = attrs.field(factory=dict)

    def run(
        self, *args: str, timeout: float = 120, check: bool = True, stdin: Any = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["podman", *args],
            env=self.env,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        return proc

    def exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0

    def inspect(self, image: str) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(self.run("image", "inspect", image).stdout)[0]
        return info

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - start

    def report(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.timings.items())


@attrs.frozen
class Images:
    server: str
    python: str
    postgres: str
    redis: str
    nginx: str

    def compose_env(self) -> dict[str, str]:
        return {
            "DWTRIO_IMAGE": self.server,
            "DWTRIO_POSTGRES_IMAGE": self.postgres,
            "DWTRIO_REDIS_IMAGE": self.redis,
            "DWTRIO_NGINX_IMAGE": self.nginx,
        }


def build_base(podman: Podman) -> str:
    """The Debian base, from debootstrap, unless an image of this recipe exists."""
    tag = f"localhost/dwtrio-test-base:{digest(SUITE, 'minbase', ROOTFS_SETUP)}"
    if podman.exists(tag):
        return tag
    debootstrap = shutil.which("debootstrap")
    assert debootstrap, "debootstrap is missing: `apt-get install debootstrap` (it makes the base)"
    with tempfile.TemporaryDirectory(prefix="dwtrio-rootfs-", dir="/var/tmp") as root:
        subprocess.run(
            [debootstrap, "--variant=minbase", SUITE, root, debian_mirror()],
            check=True,
            capture_output=True,
            timeout=600,
        )
        subprocess.run(["sh", "-c", ROOTFS_SETUP, "sh", root], check=True, timeout=60)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        try:
            podman.run("import", "--quiet", "-", tag, stdin=tar.stdout, timeout=300)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait(60)
    return tag


def build_stand_in(podman: Podman, name: str, base: str) -> str:
    """``tests/deploy/images/<name>.Containerfile`` on ``base``, unless already built."""
    sources = sorted(STAND_INS.glob(f"{name}*"))
    repo = f"localhost/dwtrio-test-{name}"
    tag = f"{repo}:{digest(base, *(p.name + p.read_text() for p in sources))}"
    if podman.exists(tag):
        return tag
    podman.run(
        "build", "--quiet", "--layers=false", "--network=host", "--build-arg", f"BASE={base}",
        "--file", str(STAND_INS / f"{name}.Containerfile"), "--tag", tag, str(STAND_INS),
        timeout=900,
    )  # fmt: skip
    # older builds of this stand-in are of no further use
    listed = podman.run("images", "--format", "{{.Repository}}:{{.Tag}}", repo).stdout.split()
    for old in set(listed) - {tag}:
        podman.run("rmi", old, check=False)
    return tag


def build_server(podman: Podman, python: str) -> str:
    """The dwtrio image from the working tree, on the stand-in python base."""
    previous = podman.inspect(SERVER_IMAGE)["Id"] if podman.exists(SERVER_IMAGE) else None
    secret = []
    if (bundle := ca_bundle()) is not None:
        secret = ["--secret", f"id=pip_cert,src={bundle}"]
    # docker format: OCI images have no HEALTHCHECK. No layer cache: a run leaves only the
    # tagged image behind (a rebuild takes ~35 s).
    podman.run(
        "build", "--quiet", "--layers=false", "--format=docker", "--network=host", *secret,
        "--build-arg", f"BASE_IMAGE={python}", "--file", str(DOCKERFILE),
        "--tag", SERVER_IMAGE, str(REPO_ROOT),
        timeout=900,
    )  # fmt: skip
    if previous is not None and previous != podman.inspect(SERVER_IMAGE)["Id"]:
        podman.run("rmi", previous, check=False)
    return SERVER_IMAGE


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: the container test needs a container engine")
    conf = engine_config(tmp_path_factory.mktemp("podman") / "containers.conf")
    engine = Podman(env={**os.environ, "CONTAINERS_CONF": str(conf)})
    info = engine.run("info", check=False, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run on this machine: {info.stderr.strip()[-500:]}")
    # One podman user at a time on this machine (another pytest run would race for the
    # same tags), and never beside the database-outage tests, whose timings a container
    # build would disturb.
    with exclusive("containers"), exclusive("db-outage"):
        yield engine


@pytest.fixture(scope="module")
def images(podman: Podman) -> Iterator[Images]:
    with podman.phase("base images"):
        base = build_base(podman)
        probe = podman.run("run", "--rm", base, "true", check=False, timeout=120)
        if probe.returncode != 0:
            pytest.skip(f"podman cannot run a container here: {probe.stderr.strip()[-500:]}")
        python, postgres, redis, nginx = (
            build_stand_in(podman, name, base) for name in ("python", "postgres", "redis", "nginx")
        )
    with podman.phase("image build"):
        server = build_server(podman, python)
    try:
        yield Images(server, python, postgres, redis, nginx)
    finally:
        podman.run("rmi", server, check=False)


# --- compose stacks --------------------------------------------------------------------


def start_order(services: Mapping[str, Any]) -> list[str]:
    """Services in an order where each comes after everything it depends on."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"depends_on cycle: {' -> '.join((*path, name))}"
        if name not in order:
            for dep in services[name].get("depends_on") or {}:
                visit(dep, (*path, name))
            order.append(name)

    for name in services:
        visit(name, ())
    return order


@attrs.define
class Stack:
    """One compose project: created by podman-compose, started in dependency order."""

    podman: Podman
    file: Path
    project: str
    env: dict[str, str]

    @property
    def services(self) -> dict[str, Any]:
        services: dict[str, Any] = yaml.safe_load(self.file.read_text())["services"]
        return services

    def compose(self, *args: str, timeout: float = 300) -> None:
        proc = subprocess.run(
            [str(PODMAN_COMPOSE), "-f", str(self.file), "-p", self.project, *args],
            env={**self.podman.env, **self.env},
            cwd=self.file.parent,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, f"podman-compose {' '.join(args)}:\n{proc.stderr[-4000:]}"

    def containers(self) -> dict[str, str]:
        """Service name -> container name, for every container of the project."""
        listed = self.podman.run(
            "ps", "--all", "--format", "json",
            "--filter", f"label=io.podman.compose.project={self.project}",
        ).stdout  # fmt: skip
        return {
            c["Labels"]["com.docker.compose.service"]: c["Names"][0] for c in json.loads(listed)
        }

    def up(self) -> None:
        self.compose("up", "--detach", "--no-start", "--no-deps")
        containers = self.containers()
        services = self.services
        for name in start_order(services):
            for dep, spec in (services[name].get("depends_on") or {}).items():
                self.wait_for(containers[dep], spec.get("condition", "service_started"))
            self.podman.run("start", containers[name])
        for container in containers.values():  # as `up --wait`: every service is healthy
            if self.runs_a_healthcheck(container):
                self.wait_for(container, "service_healthy")

    def runs_a_healthcheck(self, container: str) -> bool:
        """Is ``container`` running with a healthcheck (its service's or its image's)?"""
        shown = self.podman.run(
            "container", "inspect", container,
            "--format", "{{.State.Running}} {{if .Config.Healthcheck}}checked{{end}}",
        )  # fmt: skip
        return shown.stdout.split() == ["true", "checked"]

    def wait_for(self, container: str, condition: str) -> None:
        if condition == "service_completed_successfully":
            done = self.podman.run("wait", container, timeout=WAIT_S)
            code = done.stdout.strip()
            assert code == "0", f"{container} exited {code}:\n{self.logs(container)}"
        elif condition == "service_healthy":
            deadline = time.monotonic() + WAIT_S
            while self.podman.run("healthcheck", "run", container, check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{container} not healthy:\n{self.logs(container)}")
                time.sleep(1)
        else:
            assert condition == "service_started", condition

    def logs(self, container: str) -> str:
        proc = self.podman.run("logs", "--tail", "40", container, check=False)
        lines = (proc.stdout + proc.stderr).splitlines()
        # podman 4.3 without systemd complains about its healthcheck timers on every call
        return "\n".join(line for line in lines if "systemd" not in line)

    def all_logs(self) -> str:
        return "\n\n".join(f"--- {c}\n{self.logs(c)}" for c in self.containers().values())

    def down(self, *, volumes: bool = True) -> None:
        """Stop the services, dependents first; ``podman-compose down``; then remove what
        it leaves behind: the anonymous volumes of the image's VOLUME, and (after a
        failure) any container, volume or network of the project."""
        containers = self.containers()
        mounts = set()
        for container in containers.values():
            shown = self.podman.run(
                "inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", container, check=False
            )
            mounts.update(shown.stdout.split())
        try:
            # Dependents first, as `docker compose down` stops them (podman-compose 1.6
            # stops the database before the nodes).
            for name in reversed(start_order(self.services)):
                if name in containers:
                    started = time.monotonic()
                    self.podman.run("stop", "--time", "20", containers[name], timeout=60)
                    if (took := time.monotonic() - started) > SLOW_STOP_S:
                        print(f"{name} took {took:.1f} s to stop:\n{self.logs(containers[name])}")
            self.compose("down", *(["--volumes"] if volumes else []), "--timeout", "20")
        finally:
            label = f"label=io.podman.compose.project={self.project}"
            for container in self.containers().values():
                self.podman.run("rm", "--force", "--volumes", container, check=False)
            if volumes:
                listed = self.podman.run("volume", "ls", "-q", "--filter", label, check=False)
                for volume in mounts | set(listed.stdout.split()):
                    self.podman.run("volume", "rm", "--force", volume, check=False)
                self.podman.run("network", "rm", "--force", f"{self.project}_default", check=False)


@contextmanager
def stack(podman: Podman, file: Path, env: Mapping[str, str], name: str) -> Iterator[Stack]:
    """A compose project of its own for the block; logs printed and everything removed
    if the block fails."""
    project = f"dwtrio-test-{uuid.uuid4().hex[:8]}"
    running = Stack(podman, file, project, dict(env))
    try:
        yield running
    except BaseException:
        print(f"{name} logs:\n{running.all_logs()}")
        try:
            running.down()
        except Exception as exc:  # the block's own failure is the one to report
            print(f"{name} cleanup: {exc}")
        raise
    else:
        with podman.phase(f"{name} down"):
            running.down()


def run_driver(url: str, count: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(DRIVER), url, url, TOKEN, str(count)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def check_sdk_run(url: str, count: int) -> list[str]:
    """``count`` SDK workflows to completion through ``url``; their ids."""
    out = run_driver(url, count)
    assert out["results"] == [
        {"loud": f"N{i}", "items": [f"s{i}"], "ok": True} for i in range(count)
    ], out
    ids: list[str] = out["workflow_ids"]
    return ids


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if httpx.get(f"{url}/api/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url}/api/ready never answered 200"
        time.sleep(0.5)


def status_of(client: httpx.Client, workflow_id: str) -> str:
    r = client.get(f"/api/workflows/{workflow_id}", headers=CP)
    assert r.status_code == 200, r.text
    status: str = r.json()["status"]
    return status


# --- the tests -------------------------------------------------------------------------


def test_image_is_a_slim_non_root_runtime(podman: Podman, images: Images) -> None:
    image = podman.inspect(images.server)
    config = image["Config"]
    growth = image["Size"] - podman.inspect(images.python)["Size"]
    print(f"image {images.server}: {image['Size'] / 1e6:.0f} MB, {growth / 1e6:.0f} MB on its base")
    assert growth < IMAGE_GROWTH_LIMIT_BYTES
    assert config["User"] == "dwtrio"
    assert config["Entrypoint"] == ["tini", "--", "dwtrio"]
    assert "/var/lib/dwtrio" in config["Volumes"]
    assert "/api/ready" in " ".join(image["Healthcheck"]["Test"])
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert config["Labels"]["org.opencontainers.image.version"] == version
    shell = ["--rm", "--entrypoint", "sh", images.server, "-c"]
    out = podman.run("run", *shell, "id -u; echo $HOME; ls /opt/dwtrio/bin").stdout.split()
    assert out[:2] == ["10001", "/home/dwtrio"]
    assert "dwtrio" in out and "pip" not in out


def test_small_cluster_serves_the_sdk_through_the_load_balancer(
    podman: Podman, images: Images
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**images.compose_env(), "DWTRIO_PORT": str(port), "DW_AUTH_TOKEN": TOKEN}
    with stack(podman, CLUSTER, env, "cluster") as cluster:
        with podman.phase("cluster up"):
            cluster.up()
            wait_ready(url)
        with podman.phase("cluster smoke"):
            containers = cluster.containers()
            # Only the load balancer is published, and only on loopback.
            published = {
                name: podman.run("port", c).stdout.split() for name, c in containers.items()
            }
            assert {n: p for n, p in published.items() if p} == {
                "nginx": ["8080/tcp", "->", f"127.0.0.1:{port}"]
            }
            for node in ("dwtrio-1", "dwtrio-2"):
                assert podman.run("exec", containers[node], "id", "-u").stdout.strip() == "10001"
            auth = {"Authorization": f"Bearer {TOKEN}"}
            with httpx.Client(base_url=url, headers=auth, timeout=15) as client:
                assert client.get("/api/health").json()["status"] == "serving"
                ready = client.get("/api/ready").json()
                assert ready["status"] == "ready", ready
                assert ready["checks"]["cache"]["status"] == "ok", ready
                # round robin: both nodes answer, each under its own DW_SERVER_ID
                ids = {client.get("/api/cluster/info").json()["server_id"] for _ in range(6)}
                assert ids == {"dwtrio-1", "dwtrio-2"}
                workflow_ids = check_sdk_run(url, count=4)
                assert {status_of(client, wf) for wf in workflow_ids} == {"completed"}
    print(f"timings: {podman.report()}")


def test_single_container_serves_on_its_embedded_postgres_and_keeps_its_data(
    podman: Podman, images: Images
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**images.compose_env(), "DWTRIO_PORT": str(port), "DW_AUTH_TOKEN": TOKEN}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with stack(podman, SINGLE, env, "single") as single:
        with podman.phase("single up"):
            single.up()  # healthy by the image's own HEALTHCHECK
        with podman.phase("single smoke"):
            (container,) = single.containers().values()
            assert httpx.get(f"{url}/api/health", timeout=10).json()["status"] == "serving"
            (workflow_id,) = check_sdk_run(url, count=1)
            # SIGTERM: drained, the embedded PostgreSQL stopped, exit 0, well within grace
            started = time.monotonic()
            podman.run("stop", "--time", "30", container)
            assert time.monotonic() - started < 15
            state = podman.run("inspect", "--format", "{{.State.ExitCode}}", container).stdout
            assert state.strip() == "0", single.logs(container)
        with podman.phase("single restart"):
            # A new container on the same named volume finds the same database.
            single.down(volumes=False)
            single.up()
            with httpx.Client(base_url=url, headers=auth, timeout=15) as client:
                assert status_of(client, workflow_id) == "completed"
            (container,) = single.containers().values()
            # Both starts found a cleanly shut down cluster: no crash recovery.
            pg_log = podman.run("exec", container, "cat", "/var/lib/dwtrio/postgres.log").stdout
            assert pg_log.count("database system was shut down at") == 2, pg_log
            assert "recovery" not in pg_log, pg_log
    print(f"timings: {podman.report()}")
