"""A stand-in OIDC identity provider for tests: RSA signing keys (made with ``cryptography``), a JWKS file that
can be rotated, and tokens signed by it."""

import json
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://idp.test.example"
AUDIENCE = "v2mom"


class IdentityProvider:
    """Publishes its public keys at ``jwks_file``; ``rotate()`` adds a new key and signs with it from then on."""

    def __init__(self, folder: Path):
        self.jwks_file = folder / f"jwks-{uuid.uuid4().hex[:8]}.json"
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.kid = ""
        self.rotate()

    def rotate(self, drop_old: bool = False) -> str:
        """A new signing key, published beside the old ones (or instead of them); returns its kid."""
        if drop_old:
            self.keys.clear()
        self.kid = f"key-{uuid.uuid4().hex[:8]}"
        self.keys[self.kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.publish()
        return self.kid

    def publish(self) -> None:
        entries = [{**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig", "alg": "RS256"}
                   for kid, key in self.keys.items()]
        self.jwks_file.write_text(json.dumps({"keys": entries}))

    def token(self, subject: str, ttl_seconds: int = 600, kid: str | None = None, **claims) -> str:
        now = int(time.time())
        body = {"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + ttl_seconds, **claims}
        kid = kid or self.kid
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def auth_settings(self, auth, refetch_seconds: float = 0.0):
        """``auth`` (AuthSettings) trusting this provider instead of development tokens."""
        from dataclasses import replace

        return replace(auth, jwks_file=str(self.jwks_file), issuer=ISSUER, audience=AUDIENCE,
                       jwks_refetch_seconds=refetch_seconds)
