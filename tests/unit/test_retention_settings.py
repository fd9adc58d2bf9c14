"""The retention settings: defaults, and values that would stall the loop or make a
batch pointless are refused at boot (docs/retention.md)."""

from __future__ import annotations

import pytest

from dwtrio.settings import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.retention_enabled, s.retention_interval_s, s.retention_batch_size) == (
        True,
        60.0,
        100,
    )
    off = Settings.from_env({"DW_RETENTION_ENABLED": "0", "DW_RETENTION_BATCH_SIZE": "1000"})
    assert (off.retention_enabled, off.retention_batch_size) == (False, 1000)


@pytest.mark.parametrize(
    "env",
    [
        {"DW_RETENTION_INTERVAL_SECONDS": "0"},
        {"DW_RETENTION_INTERVAL_SECONDS": "-1"},
        {"DW_RETENTION_INTERVAL_SECONDS": "nan"},
        {"DW_RETENTION_BATCH_SIZE": "0"},
        {"DW_RETENTION_BATCH_SIZE": "1001"},
        {"DW_RETENTION_BATCH_SIZE": "²"},
    ],
)
def test_bad_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)
