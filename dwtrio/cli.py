"""``dwtrio`` command line: serve, bootstrap, config, history verify.

Every setting has a ``--flag`` and an environment twin (shown in ``--help``);
a flag wins over the environment, which wins over the default.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import trio

from dwtrio import __version__
from dwtrio.errors import DwtrioError
from dwtrio.observability import configure_logging
from dwtrio.settings import Settings, iter_settings, parse_value, read_env

log = logging.getLogger("dwtrio")


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-").removesuffix("-s")


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also read from its environment variable)")
    for field in iter_settings():
        env = field.metadata["env"]
        kind = str(field.type)
        metavar = (
            "BOOL" if "bool" in kind else ("N" if ("int" in kind or "float" in kind) else "VALUE")
        )
        group.add_argument(
            flag_name(field.name),
            dest=field.name,
            metavar=metavar,
            default=None,
            help=f"{field.metadata['doc']} [env {env}]",
        )


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps help text between words only: a long variable name stays whole (and
    can be copied from ``--help``)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dwtrio", description="Durable Workflow server on Trio.")
    parser.add_argument("--version", action="version", version=f"dwtrio {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the HTTP server (embedded Postgres unless DW_DATABASE_URL is set)",
        formatter_class=_HelpFormatter,
    )
    bootstrap = sub.add_parser(
        "bootstrap",
        help="apply migrations and seed the default namespace, then exit",
        formatter_class=_HelpFormatter,
    )
    config = sub.add_parser(
        "config",
        help="print the effective configuration (secrets redacted)",
        formatter_class=_HelpFormatter,
    )
    for p in (serve, bootstrap, config):
        _add_setting_flags(p)
    history = sub.add_parser("history", help="work with history export bundles offline")
    history_sub = history.add_subparsers(dest="history_command", required=True)
    verify = history_sub.add_parser(
        "verify",
        help="check a bundle's checksum (and signature, given the key); exit 0 when it verifies",
        formatter_class=_HelpFormatter,
    )
    verify.add_argument("file", help="the bundle (JSON from GET .../history/export); - for stdin")
    verify.add_argument(
        "--signing-key",
        default=None,
        help="HMAC key to check the signature with [env DW_V2_HISTORY_EXPORT_SIGNING_KEY]",
    )
    return parser


def verify_bundle_file(path: str, signing_key: str | None) -> int:
    """``dwtrio history verify``: 0 when the bundle verifies, 1 otherwise (message on stderr)."""
    import json
    from pathlib import Path

    from dwtrio.protocol import history_export

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        bundle = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"dwtrio: {path}: cannot read the bundle: {exc}", file=sys.stderr)
        return 1
    problems = history_export.verify(bundle, signing_key)
    if problems:
        for problem in problems:
            print(f"dwtrio: {path}: {problem}", file=sys.stderr)
        return 1
    integrity = bundle["integrity"]
    events = bundle.get("history_events")
    count = len(events) if isinstance(events, list) else 0
    if signing_key:
        signed = f"signature ok (key_id {integrity.get('key_id')})"
    elif integrity.get("signature") is not None:
        signed = "signed, signature not checked (no key given)"
    else:
        signed = "unsigned"
    print(f"{path}: ok: {count} events, sha256 {integrity['checksum']}, {signed}")
    return 0


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for field in iter_settings():
        raw = getattr(args, field.name, None)
        if raw is not None:
            overrides[field.name] = parse_value(field, raw)
    return Settings.from_env(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "history":  # offline: no settings, no database
        key = args.signing_key or read_env("DW_V2_HISTORY_EXPORT_SIGNING_KEY")
        return verify_bundle_file(args.file, key)
    try:
        settings = settings_from_args(args)
    except DwtrioError as exc:
        print(f"dwtrio: configuration error: {exc.message}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "serve":
            from dwtrio.main import run

            run(settings)
        elif args.command == "bootstrap":
            from dwtrio.main import database, run_bootstrap

            with database(settings) as dsn:
                report = trio.run(run_bootstrap, settings, dsn)
            applied = ", ".join(report.applied) or "none"
            print(
                f"migrations applied: {applied} (already applied: {report.already_applied}); "
                f"default namespace {'created' if report.namespace_created else 'present'}"
            )
        elif args.command == "config":
            for field in iter_settings():
                value = getattr(settings, field.name)
                if field.metadata["secret"] and value:
                    value = "<redacted>"
                print(f"{field.metadata['env']}={'' if value is None else value}")
    except DwtrioError as exc:
        log.error("%s", exc.message)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
