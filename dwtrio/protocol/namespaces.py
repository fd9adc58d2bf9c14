"""Request models of the namespace routes."""

from __future__ import annotations

import attrs

from dwtrio.protocol.validators import between, matches, max_length, not_blank, one_of

NAME_PATTERN = r"[a-zA-Z0-9._-]+"
STORAGE_DRIVERS = ("local", "s3", "gcs", "azure")


@attrs.frozen(kw_only=True)
class CreateNamespace:
    name: str = attrs.field(
        validator=[
            not_blank,
            max_length(128),
            matches(NAME_PATTERN, "may only contain letters, digits, '.', '_' and '-'"),
        ]
    )
    description: str | None = attrs.field(default=None, validator=max_length(1000))
    retention_days: int | None = attrs.field(default=None, validator=between(1, 365))


@attrs.frozen(kw_only=True)
class UpdateNamespace:
    description: str | None = attrs.field(default=None, validator=max_length(1000))
    retention_days: int | None = attrs.field(default=None, validator=between(1, 365))


@attrs.frozen(kw_only=True)
class StorageConfig:
    uri: str | None = attrs.field(default=None, validator=max_length(2048))
    bucket: str | None = attrs.field(default=None, validator=max_length(255))
    disk: str | None = attrs.field(default=None, validator=max_length(255))
    prefix: str | None = attrs.field(default=None, validator=max_length(1024))
    region: str | None = attrs.field(default=None, validator=max_length(128))
    endpoint: str | None = attrs.field(default=None, validator=max_length(2048))
    auth_profile: str | None = attrs.field(default=None, validator=max_length(255))


@attrs.frozen(kw_only=True)
class SetExternalStorage:
    driver: str = attrs.field(validator=one_of(STORAGE_DRIVERS))
    enabled: bool = True
    threshold_bytes: int | None = attrs.field(default=None, validator=between(1))
    config: StorageConfig | None = None
