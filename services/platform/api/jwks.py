"""The identity provider's signing keys (a JWKS), by ``kid``, from a URL or a file.

Keys rotate: the provider publishes a new key, starts signing with it, and
later drops the old one. So a token whose ``kid`` is not among the keys we
hold makes us fetch the set again - at most once per ``refetch_seconds``, so
tokens with made-up kids cannot turn us into a flood against the provider -
and the set is read again anyway once it is ``max_age_seconds`` old, so a key
the provider retired stops being trusted here too.
Only used by api processes (plain threads, never eventlet), so a
``threading.Lock`` is fine here.
"""

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable

import jwt

from ..core.errors import Unauthenticated, Unavailable

log = logging.getLogger(__name__)

# Asymmetric only: a JWKS key must never be usable as an HMAC secret (algorithm confusion).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
FETCH_TIMEOUT_SECONDS = 5.0
MAX_AGE_SECONDS = 300.0


class JwksKeys:
    def __init__(self, url: str = "", file: str = "", refetch_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, max_age_seconds: float = MAX_AGE_SECONDS):
        self.source = url or file
        self._read = (lambda: _read_url(url)) if url else (lambda: _read_file(file))
        self.refetch_seconds = refetch_seconds
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        """The key that signed a token with this ``kid`` (None: the only key, when there is just one)."""
        if self._fetched_at is not None and self.clock() - self._fetched_at >= self.max_age_seconds:
            self._refresh_quietly()
        key = self._find(kid)
        if key is None and self._may_refetch():
            self._refetch()
            key = self._find(kid)
        if key is None:
            raise Unauthenticated(f"invalid token: no signing key {kid!r} at the identity provider")
        return key

    def _refresh_quietly(self) -> None:
        """A routine re-read: if the provider cannot be reached, the keys we hold serve until it can."""
        try:
            self._refetch()
        except Unavailable as error:
            log.warning("identity provider keys not refreshed", extra={"reason": error.message})

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        keys = self._keys
        if kid is None:
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    def _may_refetch(self) -> bool:
        return self._fetched_at is None or self.clock() - self._fetched_at >= self.refetch_seconds

    def _refetch(self) -> None:
        with self._lock:
            if not self._may_refetch():  # another thread fetched while we waited
                return
            self._fetched_at = self.clock()
            try:
                document = self._read()
            except (OSError, ValueError) as error:
                raise Unavailable(f"the identity provider's keys ({self.source}) cannot be read: {error}") from None
            self._keys = _usable_keys(document)


def _usable_keys(document: dict) -> dict[str, jwt.PyJWK]:
    """Signing keys of an asymmetric algorithm, by kid; anything else in the set is skipped."""
    keys = {}
    for index, entry in enumerate(document.get("keys", []) if isinstance(document, dict) else []):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        if key.algorithm_name in ALGORITHMS:
            keys[str(entry.get("kid", f"#{index}"))] = key
    return keys


def _read_url(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:
        return json.loads(response.read())


def _read_file(path: str) -> dict:
    with open(path, encoding="utf-8") as file:
        return json.load(file)
