"""Credentials of the S3 front (:mod:`aioims.emulator.s3front`).

A :class:`CredentialStore` issues temporary credentials (access key, secret,
session token, expiry), holds static key pairs, and decides whether a request
is authenticated: see :meth:`CredentialStore.authenticate` for the S3 errors.
"""

from __future__ import annotations

import math
import secrets
import string
from datetime import datetime, timedelta, timezone

import attrs
from multidict import MultiMapping

from aioims.emulator.s3policy import UploadScope
from aioims.emulator.s3sigv4 import (
    RequestAuth,
    S3Error,
    compute_signature,
    parse_amz_date,
    parse_auth,
    signature_matches,
)

_KEY_ALPHABET = string.ascii_uppercase + string.digits
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=timezone.utc)


def _mask(_: str) -> str:
    return "'***'"


def _now() -> datetime:
    return datetime.now(timezone.utc)


@attrs.frozen
class TemporaryCredentials:
    """Credentials issued by the front (``repr`` hides the secret and token)."""

    access_key: str
    secret_key: str = attrs.field(repr=_mask)
    token: str = attrs.field(repr=_mask)
    expires_at: datetime  # aware, UTC; year 9999 for lifetime=None
    #: the one object these credentials may upload (None: unrestricted, admin/test use)
    scope: UploadScope | None = None


#: the longest lifetime :meth:`CredentialStore.issue` accepts (one year)
MAX_LIFETIME = 365 * 24 * 3600.0


def check_lifetime(lifetime: object) -> float:
    """A credential lifetime: a finite number of seconds in ``(0, MAX_LIFETIME]``."""
    if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)):
        raise ValueError(f"credential lifetime must be a number of seconds, got {lifetime!r}")
    value = float(lifetime)
    if not math.isfinite(value) or not 0 < value <= MAX_LIFETIME:
        raise ValueError(
            f"credential lifetime must be finite, > 0 and <= {MAX_LIFETIME:g}, got {lifetime!r}"
        )
    return value


@attrs.define
class _Credential:
    secret_key: str = attrs.field(repr=_mask)
    token: str | None = attrs.field(repr=False)
    expires_at: datetime | None
    scope: UploadScope | None = None


class CredentialStore:
    """The access keys a front accepts."""

    def __init__(self) -> None:
        self._keys: dict[str, _Credential] = {}

    def __contains__(self, access_key: object) -> bool:
        return access_key in self._keys

    def issue(
        self, lifetime: float | None = 3600.0, *, scope: UploadScope | None = None
    ) -> TemporaryCredentials:
        """New temporary credentials valid for ``lifetime`` seconds (None: forever).

        With ``scope`` they may only upload that object (see
        :mod:`aioims.emulator.s3policy`); without, they are unrestricted
        (admin and test use: the emulator's ``upload-prepare`` always scopes)."""
        if lifetime is not None:
            lifetime = check_lifetime(lifetime)
        access_key = "ASIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
        expires_at = FAR_FUTURE if lifetime is None else _now() + timedelta(seconds=lifetime)
        creds = TemporaryCredentials(
            access_key=access_key,
            secret_key=secrets.token_urlsafe(30)[:40],
            token=secrets.token_urlsafe(144),
            expires_at=expires_at,
            scope=scope,
        )
        self._keys[access_key] = _Credential(
            creds.secret_key, creds.token, None if lifetime is None else expires_at, scope
        )
        return creds

    def temporary(self) -> list[TemporaryCredentials]:
        """Every temporary credential still known (issued and not revoked)."""
        return [
            TemporaryCredentials(
                key, cred.secret_key, cred.token, cred.expires_at or FAR_FUTURE, cred.scope
            )
            for key, cred in self._keys.items()
            if cred.token is not None
        ]

    def scope_of(self, access_key: str) -> UploadScope | None:
        """The scope of a key (None: unrestricted or unknown)."""
        credential = self._keys.get(access_key)
        return None if credential is None else credential.scope

    def revoke_temporary(self) -> int:
        """Forget every temporary credential (static keys stay); how many."""
        gone = [key for key, cred in self._keys.items() if cred.token is not None]
        for key in gone:
            del self._keys[key]
        return len(gone)

    def add_static(self, access_key: str, secret_key: str) -> None:
        """Accept a long-lived key pair (no session token, no expiry)."""
        self._keys[access_key] = _Credential(secret_key, None, None)

    def revoke(self, access_key: str) -> bool:
        """Forget a key; its requests then get ``InvalidAccessKeyId``."""
        return self._keys.pop(access_key, None) is not None

    def expire(self, access_key: str) -> None:
        """Make temporary credentials expired now (static ones never expire)."""
        credential = self._keys.get(access_key)
        if credential is not None and credential.token is not None:
            credential.expires_at = _now() - timedelta(microseconds=1)

    def authenticate(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: MultiMapping[str],
        *,
        verify_signature: bool = True,
    ) -> RequestAuth:
        """Check a request's credentials; raise :class:`S3Error` if they do not pass.

        No authentication -> 403 ``AccessDenied``; unknown key -> 403
        ``InvalidAccessKeyId``; missing/wrong token, or a token with a static
        key -> 400 ``InvalidToken``; expired -> 400 ``ExpiredToken``; bad
        signature -> 403 ``SignatureDoesNotMatch``; expired presigned URL ->
        403 ``AccessDenied``.
        """
        auth = parse_auth(raw_query, headers)
        if auth is None:
            raise S3Error(403, "AccessDenied")
        credential = self._keys.get(auth.access_key)
        if credential is None:
            raise S3Error(403, "InvalidAccessKeyId")
        if credential.token is None:
            if auth.token:
                raise S3Error(400, "InvalidToken")
        elif auth.token is None or not secrets.compare_digest(auth.token, credential.token):
            raise S3Error(400, "InvalidToken")
        now = _now()
        if credential.expires_at is not None and now > credential.expires_at:
            raise S3Error(400, "ExpiredToken")
        if verify_signature:
            expected = compute_signature(
                credential.secret_key, auth, method, raw_path, raw_query, headers
            )
            if not signature_matches(expected, auth.signature):
                raise S3Error(403, "SignatureDoesNotMatch")
        if auth.presigned:
            try:
                signed_at = parse_amz_date(auth.amz_date)
            except ValueError:
                raise S3Error(
                    400, "AuthorizationQueryParametersError", "Invalid X-Amz-Date"
                ) from None
            if now > signed_at + timedelta(seconds=auth.expires or 0):
                raise S3Error(403, "AccessDenied", "Request has expired")
        return auth
