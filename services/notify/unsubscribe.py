"""One-click unsubscribe links (RFC 8058): a signed token naming one person and one kind.

The token is ``base64url(person_id "|" kind "|" issued-at) "." base64url(HMAC-SHA256)``,
signed with NOTIFY_UNSUBSCRIBE_SECRET, so a link turns off exactly that kind
of mail for exactly that person and cannot be forged or widened.
"""

import base64
import hashlib
import hmac
import time

from services.platform.core.config import secret_setting

from .kinds import KINDS

# For development only; every deployment sets NOTIFY_UNSUBSCRIBE_SECRET (notify-api and notify-worker the same).
DEFAULT_SECRET = "dev-only-unsubscribe-secret-change-me"


def secret_from_env() -> str:
    """NOTIFY_UNSUBSCRIBE_SECRET, the one secret both notify processes sign with; the development default only
    outside production (ConfigError there: with a public key anyone could unsubscribe anyone)."""
    return secret_setting("NOTIFY_UNSUBSCRIBE_SECRET", DEFAULT_SECRET)


class BadToken(ValueError):
    pass


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: str, person_id: str, kind: str, now: float | None = None) -> str:
    payload = f"{person_id}|{kind}|{int(now if now is not None else time.time())}".encode()
    signature = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}"


def read_token(secret: str, token: str) -> tuple[str, str]:
    """(person_id, kind) from a token this service signed; BadToken otherwise."""
    try:
        payload_text, signature_text = token.split(".")
        payload, signature = _unb64(payload_text), _unb64(signature_text)
        person_id, kind, _issued = payload.decode().split("|")
    except (ValueError, UnicodeError):
        raise BadToken("malformed") from None
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected) or kind not in KINDS or not person_id:
        raise BadToken("not signed by this service")
    return person_id, kind


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe?token={token}"
