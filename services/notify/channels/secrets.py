"""Webhook signing secrets in the Standard Webhooks form: ``whsec_`` and the base64 of the key's bytes.

Each subscription has its own secret, so one leaked receiver cannot forge
deliveries to another. Only ``mask`` of a secret ever goes into a log or a
listing; the whole secret is shown once, when it is made or rotated.
"""

import base64
import binascii
import os

PREFIX = "whsec_"
KEY_BYTES = 32
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


def new_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(KEY_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a secret stands for; ValueError if it is not a valid secret."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ and base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"a webhook secret holds {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")
    return key


def is_valid_secret(secret: str) -> bool:
    try:
        secret_key(secret)
    except ValueError:
        return False
    return True


def mask(secret: str) -> str:
    """ "whsec_…" and the last four characters: enough to tell two secrets apart in a listing, never enough to sign."""
    return f"{PREFIX}…{secret[-4:]}" if secret else ""