"""Authentication drivers (`none`, `token`, `signature`) and the role model.

Pure functions over settings, headers and the raw body, so the whole role
matrix is unit-testable without a server. Credentials are compared in
constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import attrs

from dwtrio.errors import AuthMisconfiguredError, UnauthorizedError
from dwtrio.settings import Settings

ROLES = ("worker", "operator", "admin")
DRIVERS = ("none", "token", "signature")


@attrs.frozen(kw_only=True)
class Principal:
    role: str | None
    subject: str
    method: str
    legacy_full_access: bool = False


def _configured(*values: str | None) -> dict[str, str]:
    return {role: v for role, v in zip(ROLES, values, strict=True) if v}


def auth_config_problem(settings: Settings) -> tuple[str, str] | None:
    """Why the auth configuration cannot authenticate anyone: (status, remediation), or None."""
    driver = settings.auth_driver
    if driver not in DRIVERS:
        return ("invalid", f"DW_AUTH_DRIVER={driver!r} is not one of none, token, signature.")
    if driver == "token":
        roles = _configured(settings.worker_token, settings.operator_token, settings.admin_token)
        legacy = settings.auth_token if settings.auth_backward_compatible else None
        if not roles and not legacy:
            return (
                "missing",
                "Set DW_WORKER_TOKEN / DW_OPERATOR_TOKEN / DW_ADMIN_TOKEN, or DW_AUTH_TOKEN.",
            )
    if driver == "signature":
        roles = _configured(
            settings.worker_signature_key,
            settings.operator_signature_key,
            settings.admin_signature_key,
        )
        legacy = settings.signature_key if settings.auth_backward_compatible else None
        if not roles and not legacy:
            return (
                "missing",
                "Set DW_WORKER_SIGNATURE_KEY / DW_OPERATOR_SIGNATURE_KEY / DW_ADMIN_SIGNATURE_KEY, or DW_SIGNATURE_KEY.",
            )
    return None


def _match(secret_by_role: Mapping[str, str], presented: str) -> str | None:
    for role in ROLES:
        secret = secret_by_role.get(role)
        if secret is not None and hmac.compare_digest(presented.encode(), secret.encode()):
            return role
    return None


def _sign(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def authenticate(settings: Settings, headers: Mapping[str, str], body: bytes) -> Principal:
    """Resolve the caller's principal.

    Raises:
        AuthMisconfiguredError: the driver is unknown or no credential is configured (500).
        UnauthorizedError: the credential is missing or matches nothing (401).
    """
    problem = auth_config_problem(settings)
    if problem is not None:
        raise AuthMisconfiguredError(
            "Authentication is not configured on this server: " + problem[1]
        )
    driver = settings.auth_driver
    if driver == "none":
        return Principal(role="admin", subject="anonymous", method="none", legacy_full_access=True)

    if driver == "token":
        header = headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise UnauthorizedError("A bearer token is required (Authorization: Bearer <token>).")
        roles = _configured(settings.worker_token, settings.operator_token, settings.admin_token)
        legacy = settings.auth_token if settings.auth_backward_compatible else None
        secrets = roles
        candidate = presented
    else:  # signature
        presented_sig = headers.get("x-signature", "").strip()
        if not presented_sig:
            raise UnauthorizedError(
                "An X-Signature header (hex HMAC-SHA256 of the body) is required."
            )
        keys = _configured(
            settings.worker_signature_key,
            settings.operator_signature_key,
            settings.admin_signature_key,
        )
        legacy_key = settings.signature_key if settings.auth_backward_compatible else None
        # Compare the presented signature with the expected one under each key.
        secrets = {role: _sign(key, body) for role, key in keys.items()}
        legacy = _sign(legacy_key, body) if legacy_key else None
        roles = keys
        candidate = presented_sig.lower()

    role = _match(secrets, candidate)
    if role is not None:
        return Principal(role=role, subject=f"role:{role}", method=driver)
    if legacy is not None and hmac.compare_digest(candidate.encode(), legacy.encode()):
        return Principal(
            role="admin",
            subject="legacy-token" if driver == "token" else "legacy-signature",
            method=driver,
            legacy_full_access=not roles,
        )
    raise UnauthorizedError("The credential is not valid.")


def role_allowed(principal: Principal, allowed: tuple[str, ...]) -> bool:
    return principal.legacy_full_access or (principal.role in allowed)


def metrics_token_matches(settings: Settings, headers: Mapping[str, str]) -> bool:
    """Whether the request carries ``Authorization: Bearer <DW_METRICS_TOKEN>``
    (False when no metrics token is configured)."""
    token = settings.metrics_token
    if not token:
        return False
    scheme, _, presented = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), token.encode())
