"""The wheel `pip install .` builds carries the SQL the server needs (README's first command)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO_ROOT


def test_wheel_ships_migrations_and_queries(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            str(REPO_ROOT),
            "-w",
            str(tmp_path),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("dwtrio-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for sql in (REPO_ROOT / "schema").rglob("*.sql"):
        packaged = "dwtrio/_schema/" + sql.relative_to(REPO_ROOT / "schema").as_posix()
        assert packaged in names, f"{packaged} missing from the wheel"
    assert any(n.endswith("entry_points.txt") for n in names)
