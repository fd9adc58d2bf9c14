"""The previous release (``tests/previous_release.toml``) and its source tree.

The upgrade test runs that release's code beside this tree's; the expand/contract lint
reads its queries. Both need its commit in this clone's history: a shallow clone fails
the test with a message saying so (nothing is skipped).
"""

from __future__ import annotations

import subprocess
import tarfile
import tomllib
from pathlib import Path

import attrs
import pytest

from conftest import REPO_ROOT

RECORD = REPO_ROOT / "tests" / "previous_release.toml"


@attrs.frozen
class Release:
    version: str
    commit: str
    #: The highest migration the release ships.
    migration: int


def previous_release() -> Release:
    data = tomllib.loads(RECORD.read_text())
    return Release(str(data["version"]), str(data["commit"]), int(data["migration"]))


def git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, check=False, timeout=60
    )


def require_commit(release: Release) -> None:
    """Fail (never skip) when the clone does not hold the release's commit."""
    if git("cat-file", "-e", f"{release.commit}^{{commit}}").returncode != 0:
        shallow = git("rev-parse", "--is-shallow-repository").stdout.decode().strip()
        pytest.fail(
            f"this clone lacks commit {release.commit} (the previous release "
            f"{release.version}, {RECORD.relative_to(REPO_ROOT)}); shallow clone: {shallow}. "
            "The upgrade tests need the history: `git fetch --unshallow` (CI: clone with "
            "fetch-depth 0)."
        )


def extract(release: Release, target: Path) -> Path:
    """The release's tree (``git archive``) unpacked under ``target``."""
    require_commit(release)
    archive = target / "release.tar"
    with archive.open("wb") as out:
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", release.commit],
            stdout=out,
            stderr=subprocess.PIPE,
            check=False,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr.decode()
    tree = target / f"dwtrio-{release.commit[:10]}"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    archive.unlink()
    return tree


def show(release: Release, path: str) -> str:
    """A file of the release, as text."""
    require_commit(release)
    done = git("show", f"{release.commit}:{path}")
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def list_files(release: Release, directory: str) -> list[str]:
    """The paths of the release's files under ``directory``."""
    require_commit(release)
    done = git("ls-tree", "-r", "--name-only", release.commit, "--", directory)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().split()
