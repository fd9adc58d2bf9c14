"""Identifier generation: lowercase 26-character ULIDs (URL-safe, time-ordered)."""

from __future__ import annotations

from ulid import ULID


def new_id() -> str:
    return str(ULID()).lower()
