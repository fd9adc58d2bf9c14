"""The auth drivers and role model as pure functions (auth-and-headers.md §4).

``authenticate(settings, headers, raw_body)`` resolves a principal or raises;
``role_allowed`` applies the route's roles; ``auth_config_problem`` feeds both
the 500 on authenticated routes and the readiness ``auth`` check.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from werkzeug.datastructures import Headers

from dwtrio.errors import AuthMisconfiguredError, UnauthorizedError
from dwtrio.http.auth import Principal, auth_config_problem, authenticate, role_allowed
from dwtrio.settings import Settings

ROLE_TOKENS = {"worker_token": "tok-w", "operator_token": "tok-o", "admin_token": "tok-a"}
ROLE_KEYS = {
    "worker_signature_key": "key-w",
    "operator_signature_key": "key-o",
    "admin_signature_key": "key-a",
}


def settings(**overrides: Any) -> Settings:
    return Settings.from_env({}, **overrides)


def bearer(token: str, scheme: str = "Bearer") -> Headers:
    return Headers({"Authorization": f"{scheme} {token}"})


def sign(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


# --- configuration ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"auth_driver": "none"}, None),
        ({"auth_driver": "token", "admin_token": "a"}, None),
        ({"auth_driver": "token", "worker_token": "w"}, None),
        ({"auth_driver": "token", "auth_token": "legacy"}, None),
        ({"auth_driver": "token"}, "missing"),
        (
            {"auth_driver": "token", "auth_token": "legacy", "auth_backward_compatible": False},
            "missing",
        ),
        ({"auth_driver": "token", "admin_signature_key": "k"}, "missing"),
        ({"auth_driver": "signature", "operator_signature_key": "k"}, None),
        ({"auth_driver": "signature", "signature_key": "k"}, None),
        ({"auth_driver": "signature"}, "missing"),
        ({"auth_driver": "signature", "admin_token": "a"}, "missing"),
        (
            {"auth_driver": "signature", "signature_key": "k", "auth_backward_compatible": False},
            "missing",
        ),
        ({"auth_driver": "ldap", "admin_token": "a"}, "invalid"),
        ({"auth_driver": "Token", "admin_token": "a"}, "invalid"),
    ],
)
def test_auth_config_problem(overrides: dict[str, Any], expected: str | None) -> None:
    problem = auth_config_problem(settings(**overrides))
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        status, remediation = problem
        assert status == expected
        assert remediation.strip()


def test_default_settings_are_token_driver_and_missing() -> None:
    s = settings()
    assert s.auth_driver == "token"
    assert s.auth_backward_compatible is True
    assert auth_config_problem(s) == (
        "missing",
        "Set DW_WORKER_TOKEN / DW_OPERATOR_TOKEN / DW_ADMIN_TOKEN, or DW_AUTH_TOKEN.",
    )


def test_empty_env_tokens_count_as_unset() -> None:
    s = Settings.from_env({"DW_ADMIN_TOKEN": "", "DW_AUTH_TOKEN": "  "})
    assert s.admin_token is None
    assert s.auth_token is None
    assert auth_config_problem(s) is not None


@pytest.mark.parametrize(
    "overrides",
    [{"auth_driver": "token"}, {"auth_driver": "signature"}, {"auth_driver": "kerberos"}],
)
def test_misconfigured_auth_fails_closed(overrides: dict[str, Any]) -> None:
    with pytest.raises(AuthMisconfiguredError) as info:
        authenticate(settings(**overrides), bearer("anything"), b"")
    assert info.value.http_status == 500
    assert info.value.reason == "server_error"


# --- driver none -----------------------------------------------------------------------
def test_driver_none_is_anonymous_admin_with_full_access() -> None:
    principal = authenticate(settings(auth_driver="none"), Headers(), b"")
    assert principal == Principal(
        role="admin", subject="anonymous", method="none", legacy_full_access=True
    )
    assert role_allowed(principal, ("worker",))


# --- driver token ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("token", "role"), [("tok-w", "worker"), ("tok-o", "operator"), ("tok-a", "admin")]
)
def test_role_tokens(token: str, role: str) -> None:
    principal = authenticate(settings(**ROLE_TOKENS), bearer(token), b"")
    assert principal == Principal(
        role=role, subject=f"role:{role}", method="token", legacy_full_access=False
    )


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(scheme: str) -> None:
    principal = authenticate(settings(**ROLE_TOKENS), bearer("tok-o", scheme), b"")
    assert principal.role == "operator"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dG9rLWE6"},
        {"Authorization": "tok-a"},
        {"Authorization": "Token tok-a"},
        {"Authorization": "Bearer tok-x"},
        {"Authorization": "Bearer TOK-A"},
        {"Authorization": "Bearer tok-a2"},
        {"X-Signature": sign("tok-a", b"")},
    ],
)
def test_token_unauthorized(headers: dict[str, str]) -> None:
    with pytest.raises(UnauthorizedError) as info:
        authenticate(settings(**ROLE_TOKENS), Headers(headers), b"")
    assert info.value.http_status == 401
    assert info.value.reason == "unauthorized"


def test_duplicate_tokens_first_match_wins_in_role_order() -> None:
    s = settings(worker_token="same", operator_token="same", admin_token="same")
    assert authenticate(s, bearer("same"), b"").role == "worker"
    s = settings(operator_token="same", admin_token="same")
    assert authenticate(s, bearer("same"), b"").role == "operator"


def test_legacy_token_alone_has_full_access() -> None:
    principal = authenticate(settings(auth_token="legacy"), bearer("legacy"), b"")
    assert principal == Principal(
        role="admin", subject="legacy-token", method="token", legacy_full_access=True
    )
    for roles in (("worker",), ("operator", "admin"), ("admin",)):
        assert role_allowed(principal, roles)


def test_legacy_token_with_role_tokens_is_plain_admin() -> None:
    s = settings(auth_token="legacy", worker_token="w")
    principal = authenticate(s, bearer("legacy"), b"")
    assert principal == Principal(
        role="admin", subject="legacy-token", method="token", legacy_full_access=False
    )
    assert role_allowed(principal, ("admin",))
    assert not role_allowed(principal, ("worker",))
    # the role token still works next to it
    assert authenticate(s, bearer("w"), b"").role == "worker"


def test_role_token_wins_over_identical_legacy_token() -> None:
    s = settings(auth_token="same", operator_token="same")
    principal = authenticate(s, bearer("same"), b"")
    assert principal.role == "operator"
    assert principal.subject == "role:operator"


def test_backward_compatible_false_disables_legacy_token() -> None:
    s = settings(auth_token="legacy", admin_token="a", auth_backward_compatible=False)
    with pytest.raises(UnauthorizedError):
        authenticate(s, bearer("legacy"), b"")
    assert authenticate(s, bearer("a"), b"").role == "admin"


def test_token_driver_ignores_the_body() -> None:
    s = settings(**ROLE_TOKENS)
    assert authenticate(s, bearer("tok-a"), b'{"x": 1}').role == "admin"


# --- driver signature ------------------------------------------------------------------
BODY = b'{"name": "billing"}'


@pytest.mark.parametrize(
    ("key", "role"), [("key-w", "worker"), ("key-o", "operator"), ("key-a", "admin")]
)
@pytest.mark.parametrize("body", [b"", BODY])
def test_signature_role_keys(key: str, role: str, body: bytes) -> None:
    s = settings(auth_driver="signature", **ROLE_KEYS)
    principal = authenticate(s, Headers({"X-Signature": sign(key, body)}), body)
    assert principal == Principal(
        role=role, subject=f"role:{role}", method="signature", legacy_full_access=False
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Signature": ""},
        {"X-Signature": sign("key-a", b"other body")},
        {"X-Signature": sign("wrong-key", BODY)},
        {"X-Signature": "not-hex"},
        {"Authorization": "Bearer key-a"},
    ],
)
def test_signature_unauthorized(headers: dict[str, str]) -> None:
    s = settings(auth_driver="signature", **ROLE_KEYS)
    with pytest.raises(UnauthorizedError) as info:
        authenticate(s, Headers(headers), BODY)
    assert info.value.reason == "unauthorized"


def test_signature_is_hmac_sha256_hex_of_raw_body() -> None:
    s = settings(auth_driver="signature", admin_signature_key="secret")
    expected = hmac.new(b"secret", BODY, hashlib.sha256).hexdigest()
    assert expected == expected.lower() and len(expected) == 64
    assert authenticate(s, Headers({"X-Signature": expected}), BODY).role == "admin"
    # a byte-different but JSON-equal body does not verify
    with pytest.raises(UnauthorizedError):
        authenticate(s, Headers({"X-Signature": expected}), b'{"name":"billing"}')


def test_legacy_signature_key() -> None:
    s = settings(auth_driver="signature", signature_key="legacy-key")
    principal = authenticate(s, Headers({"X-Signature": sign("legacy-key", BODY)}), BODY)
    assert principal == Principal(
        role="admin", subject="legacy-signature", method="signature", legacy_full_access=True
    )
    s = settings(auth_driver="signature", signature_key="legacy-key", worker_signature_key="kw")
    principal = authenticate(s, Headers({"X-Signature": sign("legacy-key", BODY)}), BODY)
    assert principal.role == "admin"
    assert principal.legacy_full_access is False


def test_legacy_signature_key_disabled() -> None:
    s = settings(
        auth_driver="signature",
        signature_key="legacy-key",
        admin_signature_key="ka",
        auth_backward_compatible=False,
    )
    with pytest.raises(UnauthorizedError):
        authenticate(s, Headers({"X-Signature": sign("legacy-key", BODY)}), BODY)


# --- role model ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "allowed", "expected"),
    [
        ("worker", ("worker",), True),
        ("operator", ("worker",), False),
        ("admin", ("worker",), False),  # admin is not a superset of worker
        ("worker", ("operator", "admin"), False),
        ("operator", ("operator", "admin"), True),
        ("admin", ("operator", "admin"), True),
        ("operator", ("admin",), False),
        ("admin", ("admin",), True),
        ("worker", ("worker", "operator", "admin"), True),
        (None, ("worker", "operator", "admin"), False),
    ],
)
def test_role_allowed(role: str | None, allowed: tuple[str, ...], expected: bool) -> None:
    principal = Principal(role=role, subject="s", method="token")
    assert role_allowed(principal, allowed) is expected


def test_legacy_full_access_skips_the_role_check() -> None:
    principal = Principal(
        role="admin", subject="legacy-token", method="token", legacy_full_access=True
    )
    assert role_allowed(principal, ("worker",))
    assert role_allowed(principal, ())


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every credential comparison goes through hmac.compare_digest."""
    import dwtrio.http.auth as auth_module

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    principal = authenticate(settings(auth_token="legacy", admin_token="a"), bearer("legacy"), b"")
    assert principal.subject == "legacy-token"
    assert (b"legacy", b"a") in calls
    assert (b"legacy", b"legacy") in calls
