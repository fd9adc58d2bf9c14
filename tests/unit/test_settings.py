import logging
import re
from pathlib import Path

import pytest

from dwtrio.cli import build_parser, flag_name, settings_from_args
from dwtrio.errors import SettingsError
from dwtrio.settings import REFERENCE_ONLY, Settings, env_names, iter_settings

REPO = Path(__file__).resolve().parents[2]
SEEDS = Path("/work/shared/seeds")
PROTOCOL = Path("/work/shared/protocol")


def test_defaults_match_reference_names() -> None:
    s = Settings.from_env({})
    assert s.default_namespace == "default"
    assert s.auth_driver == "token"
    assert s.worker_poll_timeout_s == 30
    assert s.max_payload_bytes == 2097152
    assert s.auth_backward_compatible is True
    assert s.database_url is None
    assert s.effective_worker_stale_after_s == 60
    assert s.worker_heartbeat_interval_s == 15


@pytest.mark.parametrize(
    ("env", "stale_s", "cadence_s"),
    [
        ({"DW_WORKER_STALE_AFTER_SECONDS": "2"}, 2, 1),
        ({"DW_WORKER_STALE_AFTER_SECONDS": "9"}, 9, 2),
        ({"DW_WORKER_POLL_TIMEOUT": "50"}, 100, 25),
        ({"DW_WORKER_STALE_AFTER_SECONDS": "3600"}, 3600, 60),
    ],
)
def test_the_heartbeat_cadence_is_a_quarter_of_the_stale_window(
    env: dict[str, str], stale_s: int, cadence_s: int
) -> None:
    """A live worker can miss three heartbeats before it counts as stale (lost leases)."""
    s = Settings.from_env(env)
    assert (s.effective_worker_stale_after_s, s.worker_heartbeat_interval_s) == (stale_s, cadence_s)


def test_env_values_are_parsed_and_empty_means_unset() -> None:
    s = Settings.from_env(
        {
            "DW_WORKER_POLL_TIMEOUT": "12",
            "DW_AUTH_BACKWARD_COMPATIBLE": "false",
            "DW_COMPRESSION_ENABLED": "0",
            "DW_AUTH_TOKEN": "",
            "DW_BIND": "0.0.0.0:9000",
        }
    )
    assert s.worker_poll_timeout_s == 12
    assert s.auth_backward_compatible is False
    assert s.compression_enabled is False
    assert s.auth_token is None
    assert s.bind_host_port == ("0.0.0.0", 9000)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DW_WORKER_POLL_TIMEOUT": "soon"}, "DW_WORKER_POLL_TIMEOUT"),
        ({"DW_WORKER_POLL_TIMEOUT": "61"}, "between 0 and 60"),
        ({"DW_COMPRESSION_ENABLED": "maybe"}, "DW_COMPRESSION_ENABLED"),
        ({"DW_WORKERS": "0"}, "DW_WORKERS"),
        ({"DW_BIND": "nohost"}, "DW_BIND"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_unknown_dw_variables_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dwtrio.settings"):
        Settings.from_env({"DW_TYPO_TOKEN": "x", "OTHER": "1"})
    assert "unknown DW_* environment variables: DW_TYPO_TOKEN" in caplog.text
    assert "OTHER" not in caplog.text


def test_strict_audit_fails_boot_on_unknown_variables() -> None:
    with pytest.raises(SettingsError, match="DW_TYPO_TOKEN"):
        Settings.from_env({"DW_TYPO_TOKEN": "x", "DW_ENV_AUDIT_STRICT": "1"})


def test_reference_variables_warn_that_they_have_no_effect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"DW_MODE": "service", "DW_V2_MULTI_NODE": "true", "DW_SERVER_KEY": ""}
    with caplog.at_level(logging.WARNING, logger="dwtrio.settings"):
        Settings.from_env(env)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # one line per variable set; an empty one counts as unset
    assert lines[0].startswith("DW_MODE is a reference server variable (server mode")
    assert lines[1].startswith("DW_V2_MULTI_NODE is a reference server variable")
    assert all("has no effect in dwtrio" in line for line in lines)
    assert "unknown" not in caplog.text


def test_reference_variables_pass_a_strict_boot_with_their_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {name: "1" for name in REFERENCE_ONLY} | {"DW_ENV_AUDIT_STRICT": "1"}
    with caplog.at_level(logging.WARNING, logger="dwtrio.settings"):
        assert Settings.from_env(env).env_audit_strict is True
    warned = {r.getMessage().split(" ", 1)[0] for r in caplog.records}
    assert warned == set(REFERENCE_ONLY)


def test_the_reference_table_holds_only_variables_dwtrio_does_not_implement() -> None:
    assert not env_names() & REFERENCE_ONLY.keys()
    assert all(name.startswith("DW_") and doc for name, doc in REFERENCE_ONLY.items())


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the reference documents are not on this machine")
def test_every_reference_variable_the_documents_name_is_implemented_or_tabled() -> None:
    """grep the seeds and protocol documents: each DW_* name is a setting or in the table."""
    named: set[str] = set()
    for path in [*SEEDS.iterdir(), *PROTOCOL.glob("*.md")]:
        # "DW_V2_*" and "DW_V2_TASK_REPAIR_*" are prefixes, not variables.
        named |= {m for m in re.findall(r"DW_[A-Z0-9_]+", path.read_text()) if m[-1] != "_"}
    missing = named - env_names() - REFERENCE_ONLY.keys()
    assert not missing, f"documented DW_* variables dwtrio neither implements nor tables: {missing}"


def test_every_setting_has_a_flag_and_flags_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    serve = parser.parse_args(["serve", "--worker-poll-timeout", "7", "--bind", "127.0.0.1:1"])
    monkeypatch.setenv("DW_WORKER_POLL_TIMEOUT", "20")
    monkeypatch.setenv("DW_DEFAULT_NAMESPACE", "fromenv")
    s = settings_from_args(serve)
    assert s.worker_poll_timeout_s == 7
    assert s.default_namespace == "fromenv"
    help_text = parser._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    for field in iter_settings():
        assert flag_name(field.name) in help_text
        assert field.metadata["env"] in help_text


def test_configuration_reference_lists_every_setting() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    for field in iter_settings():
        assert f"`{field.metadata['env']}`" in doc, f"{field.metadata['env']} missing from docs"
        assert f"`{flag_name(field.name)}`" in doc, f"{flag_name(field.name)} missing from docs"
    documented = set(re.findall(r"`(DW_[A-Z0-9_]+)", doc))
    stray = documented - env_names() - REFERENCE_ONLY.keys()
    assert not stray, f"docs mention variables Settings does not know: {sorted(stray)}"
    section = doc.split("## Reference variables accepted but not used", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(DW_[A-Z0-9_]+)`", section))
    assert listed == REFERENCE_ONLY.keys(), listed ^ REFERENCE_ONLY.keys()


@pytest.mark.parametrize(
    "env",
    [
        {"DW_TASK_REPAIR_INTERVAL_SECONDS": "nan"},
        {"DW_TIMEOUT_CHECK_INTERVAL_SECONDS": "inf"},
        {"DW_QUERY_TASK_MAX_PENDING_PER_QUEUE": "0"},
        {"DW_KEEP_ALIVE_TIMEOUT_SECONDS": "0"},
        {"DW_BODY_TIMEOUT_SECONDS": "0"},
        {"DW_V2_UPDATE_WAIT_COMPLETION_TIMEOUT_SECONDS": "0"},
        {"DW_WORKER_POLL_TIMEOUT": "0"},
        {"DW_WORKER_STALE_AFTER_SECONDS": "1"},
        {"DW_DB_STATEMENT_TIMEOUT_SECONDS": "0"},
        {"DW_DB_POOL_WAIT_SECONDS": "nan"},
    ],
)
def test_values_that_would_stall_a_loop_or_every_call_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)
