"""DW_WAKE_BUS: which wake bus a process runs, the combinations refused at boot, and the
Postgres bus's payloads (``matching/wakebus.py``)."""

from __future__ import annotations

import logging

import orjson
import pytest

from dwtrio.errors import SettingsError
from dwtrio.matching.waiters import QueueKey
from dwtrio.matching.wakebus import decode_payload, encode_payloads
from dwtrio.settings import Settings
from dwtrio.store.notify import MAX_PAYLOAD_BYTES

DSN = "postgresql://dw@db.internal/dw"
REDIS = "redis://cache.internal:6379/0"


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({}, "local"),  # the embedded single-process default
        ({"DW_DATABASE_URL": DSN}, "postgres"),
        ({"DW_WORKERS": "4"}, "postgres"),  # processes on the embedded database
        ({"DW_REDIS_URL": REDIS}, "redis"),
        ({"DW_REDIS_URL": REDIS, "DW_DATABASE_URL": DSN}, "redis"),
        ({"DW_WAKE_BUS": "auto", "DW_DATABASE_URL": DSN}, "postgres"),
        ({"DW_WAKE_BUS": "local", "DW_DATABASE_URL": DSN}, "local"),
        ({"DW_WAKE_BUS": "postgres"}, "postgres"),
        ({"DW_WAKE_BUS": "postgres", "DW_REDIS_URL": REDIS}, "postgres"),
        ({"DW_WAKE_BUS": "redis", "DW_REDIS_URL": REDIS}, "redis"),
    ],
)
def test_auto_picks_redis_then_postgres_then_local(env: dict[str, str], kind: str) -> None:
    assert Settings.from_env(env).wake_bus_kind == kind


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DW_WAKE_BUS": "redis"}, "DW_WAKE_BUS=redis needs DW_REDIS_URL"),
        ({"DW_WAKE_BUS": "nats"}, "DW_WAKE_BUS must be auto, redis, postgres or local"),
        ({"DW_WAKE_BUS": "Postgres"}, "DW_WAKE_BUS must be auto, redis, postgres or local"),
    ],
)
def test_impossible_choices_stop_the_boot(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_a_redis_url_the_chosen_bus_ignores_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dwtrio.settings")
    Settings.from_env({"DW_WAKE_BUS": "postgres", "DW_REDIS_URL": REDIS})
    assert "DW_REDIS_URL is set but not used: DW_WAKE_BUS=postgres" in caplog.text


def test_the_listen_connection_counts_against_the_process_budget() -> None:
    local = Settings.from_env({"DW_DB_POOL_MAX_SIZE": "10"})
    postgres = Settings.from_env({"DW_DB_POOL_MAX_SIZE": "10", "DW_WAKE_BUS": "postgres"})
    redis = Settings.from_env({"DW_DB_POOL_MAX_SIZE": "10", "DW_REDIS_URL": REDIS})
    assert (local.db_connections_per_process, redis.db_connections_per_process) == (10, 10)
    assert postgres.db_connections_per_process == 11


def test_payloads_carry_keys_of_any_characters() -> None:
    keys: list[QueueKey] = [
        ("default", "orders", "workflow"),
        ("ns\x1fodd", 'q"\\\n\u00e9\U0001f600', "activity"),
        ("", "run-1", "history"),
    ]
    payloads, too_long = encode_payloads(keys)
    assert too_long == [] and len(payloads) == 1
    assert decode_payload(payloads[0]) == keys


def test_payloads_stay_under_the_notify_limit() -> None:
    # 300 keys of ~1 KB (4-byte characters, the longest queue name there is) need
    # several notifications; none reaches PostgreSQL's 8000-byte limit.
    keys: list[QueueKey] = [
        ("default", f"{i:04d}" + "\U0001f600" * 251, "workflow") for i in range(300)
    ]
    payloads, too_long = encode_payloads(keys)
    assert too_long == []
    assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES for p in payloads)
    assert len(payloads) > 30
    assert [k for p in payloads for k in decode_payload(p)] == keys


def test_a_key_too_long_for_any_notification_is_set_aside() -> None:
    huge: QueueKey = ("default", "q" * MAX_PAYLOAD_BYTES, "workflow")
    payloads, too_long = encode_payloads([("default", "a", "workflow"), huge])
    assert too_long == [huge]
    assert [k for p in payloads for k in decode_payload(p)] == [("default", "a", "workflow")]


@pytest.mark.parametrize(
    "payload",
    ["", "not json", "{}", "[1, 2]", '[["a", "b"]]', '[["a", "b", 3]]', orjson.dumps("x").decode()],
)
def test_a_payload_that_is_not_ours_wakes_nothing(payload: str) -> None:
    assert decode_payload(payload) == []
