"""notify in production mode: the key that signs one-click unsubscribe links is a secret like any other.

With the development default (in this repository) anyone could sign a link that turns off anyone's mail, and
production used it silently whenever NOTIFY_UNSUBSCRIBE_SECRET was unset."""

import os
import subprocess
import sys

import pytest

from services.notify import unsubscribe
from services.platform.core.config import ConfigError

STRONG = "4f1c2e9a7b3d5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6"
# Everything else production asks of a service, sound, so that the unsubscribe secret is what stops it.
SOUND = {
    "V2MOM_ENV": "production",
    "OIDC_JWKS_URL": "https://idp.example/.well-known/jwks.json",
    "OIDC_ISSUER": "https://idp.example",
    "SERVICE_SECRET": STRONG,
    "AMQP_URI": "amqp://notify:s3cret-of-notify@127.0.0.1:5672/",
}
CLEARED = ("JWT_SECRET", "JWT_ALGORITHM", "JWT_PUBLIC_KEY", "OIDC_JWKS_FILE", "SERVICE_KEYS", "GRPC_TLS_CERT",
           "GRPC_TLS_KEY", "GRPC_TLS_CA", "NOTIFY_UNSUBSCRIBE_SECRET", *SOUND)


@pytest.mark.parametrize(("value", "says"), [
    (None, "NOTIFY_UNSUBSCRIBE_SECRET is missing"),
    (unsubscribe.DEFAULT_SECRET, "NOTIFY_UNSUBSCRIBE_SECRET is a development secret"),
    ("short-and-guessable", "NOTIFY_UNSUBSCRIBE_SECRET is shorter than 32 bytes"),
])
def test_production_refuses_a_missing_public_or_short_unsubscribe_secret(monkeypatch, value, says):
    monkeypatch.setenv("V2MOM_ENV", "production")
    if value is None:
        monkeypatch.delenv("NOTIFY_UNSUBSCRIBE_SECRET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_UNSUBSCRIBE_SECRET", value)
    with pytest.raises(ConfigError, match="V2MOM_ENV=production refuses to start") as refused:
        unsubscribe.secret_from_env()
    assert says in str(refused.value)


def test_production_takes_a_strong_secret_and_development_keeps_its_default(monkeypatch):
    monkeypatch.setenv("V2MOM_ENV", "production")
    monkeypatch.setenv("NOTIFY_UNSUBSCRIBE_SECRET", STRONG)
    assert unsubscribe.secret_from_env() == STRONG
    monkeypatch.delenv("V2MOM_ENV")
    monkeypatch.delenv("NOTIFY_UNSUBSCRIBE_SECRET")
    assert unsubscribe.secret_from_env() == unsubscribe.DEFAULT_SECRET


@pytest.mark.parametrize(("module", "secret"), [("services.notify.api", None),
                                                ("services.notify.worker", unsubscribe.DEFAULT_SECRET)])
def test_both_notify_processes_refuse_to_start_and_say_what_to_set(module, secret):
    env = {name: value for name, value in os.environ.items() if name not in CLEARED}
    env.update(SOUND)
    if secret is not None:
        env["NOTIFY_UNSUBSCRIBE_SECRET"] = secret
    # timeout: a process that started anyway is killed by subprocess.run, and the test fails
    done = subprocess.run([sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "V2MOM_ENV=production refuses to start: NOTIFY_UNSUBSCRIBE_SECRET" in done.stderr
    assert "openssl rand -hex 32" in done.stderr and "Traceback" not in done.stderr
