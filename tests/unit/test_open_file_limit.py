"""``dwtrio serve`` lifts its soft open-file limit to the hard one (``main.raise_open_file_limit``)."""

from __future__ import annotations

import resource
import subprocess
import sys

PROBE = """
import resource
from dwtrio.main import raise_open_file_limit
raise_open_file_limit()
print(*resource.getrlimit(resource.RLIMIT_NOFILE))
"""


def run_with_limits(soft: int, hard: int) -> tuple[int, int]:
    """Run the probe in a child whose limits start at (soft, hard)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run(
        [sys.executable, "-c", PROBE], preexec_fn=limit, capture_output=True, check=True, text=True
    )
    got_soft, got_hard = out.stdout.split()
    return int(got_soft), int(got_hard)


def test_the_soft_limit_rises_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = min(hard, 4096) if hard != resource.RLIM_INFINITY else 4096
    assert run_with_limits(256, ceiling) == (ceiling, ceiling)


def test_a_limit_already_at_its_ceiling_is_left_alone() -> None:
    assert run_with_limits(300, 300) == (300, 300)
