"""Numbers read from requests are ASCII digits: str.isdigit() also accepts '²', which
int() refuses, and that used to end in a 500 instead of the documented refusal."""

from __future__ import annotations

import base64

import pytest

from dwtrio.errors import UnsupportedProtocolVersionError
from dwtrio.http.pipeline import check_worker_protocol_version
from dwtrio.http.workflows import decode_token
from dwtrio.manifest import WORKER_PROTOCOL_HEADER


def test_a_superscript_minor_version_is_an_unsupported_version() -> None:
    with pytest.raises(UnsupportedProtocolVersionError):
        check_worker_protocol_version({WORKER_PROTOCOL_HEADER: "1.²"}, "1.20")


def test_a_page_token_holding_a_superscript_is_unreadable() -> None:
    assert decode_token(base64.b64encode("²".encode()).decode()) is None
    assert decode_token(base64.b64encode(b"42").decode()) == 42
