"""Production mode (V2MOM_ENV=production): every process refuses to start on a credential anyone could know or
guess, and says what to set. Development (the default) keeps its defaults."""

import os
import subprocess
import sys

import pytest

from services.platform.core.config import DEV_SECRET, ConfigError, dev_service_secret, load, load_auth

STRONG = "4f1c2e9a7b3d5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6"
GOOD = {
    "V2MOM_ENV": "production",
    "OIDC_JWKS_URL": "https://idp.example/.well-known/jwks.json",
    "OIDC_ISSUER": "https://idp.example",
    "SERVICE_SECRET": STRONG,
    "SERVICE_KEYS": f"checkins={STRONG}1,metrics={STRONG}2,notify={STRONG}3",
    "AMQP_URI": "amqp://goals:s3cret-of-goals@rabbitmq:5672/v2mom",
}
IDENTITY_VARIABLES = ("JWT_SECRET", "JWT_ALGORITHM", "JWT_PUBLIC_KEY", "OIDC_JWKS_URL", "OIDC_JWKS_FILE",
                      "OIDC_ISSUER", "SERVICE_SECRET", "SERVICE_KEYS", "AMQP_URI", "V2MOM_ENV")


@pytest.fixture
def production(monkeypatch):
    for name in IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_a_sound_production_configuration_loads(production):
    settings = load("goals")
    assert settings.auth.production and settings.auth.oidc
    assert settings.auth.caller_key("checkins") == STRONG + "1"
    assert settings.auth.caller_key("stranger") == ""  # no development fallback in production


@pytest.mark.parametrize(("name", "value", "says"), [
    ("JWT_SECRET", DEV_SECRET, "JWT_SECRET is the development secret"),
    ("JWT_SECRET", STRONG, "production accepts only the identity provider's tokens"),
    ("SERVICE_SECRET", dev_service_secret("goals"), "SERVICE_SECRET is a development secret"),
    ("SERVICE_SECRET", "short-but-not-empty", "SERVICE_SECRET is shorter than 32 bytes"),
    ("SERVICE_KEYS", "checkins=too-short", "SERVICE_KEYS[checkins] is shorter than 32 bytes"),
    ("SERVICE_SECRET", None, "SERVICE_SECRET is missing"),
    ("OIDC_JWKS_URL", None, "set OIDC_JWKS_URL or OIDC_JWKS_FILE"),
    ("OIDC_ISSUER", None, "set OIDC_ISSUER"),
    ("AMQP_URI", "amqp://guest:guest@rabbitmq:5672/", "AMQP_URI uses the broker's guest user"),
    ("AMQP_URI", "amqp://rabbitmq:5672/", "AMQP_URI uses the broker's guest user"),
    ("AMQP_URI", "amqp://goals:@rabbitmq:5672/", "AMQP_URI has no password"),
])
def test_production_refuses_each_weak_or_missing_credential(production, name, value, says):
    if value is None:
        production.delenv(name)
    else:
        production.setenv(name, value)
    with pytest.raises(ConfigError, match="V2MOM_ENV=production refuses to start") as refused:
        load("goals")
    assert says in str(refused.value)


def test_development_keeps_its_defaults(monkeypatch):
    for name in IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    auth = load_auth("checkins")
    assert (auth.production, auth.secret, auth.own_service_secret()) == (False, DEV_SECRET, dev_service_secret("checkins"))


def run(module_args: list[str], env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in IDENTITY_VARIABLES}
    # timeout: a process that started anyway is killed by subprocess.run, and the test fails on its code
    return subprocess.run([sys.executable, "-m", *module_args], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("module", [f"services.{service}.{process}" for service in ("goals", "checkins", "metrics", "notify")
                                    for process in ("api", "worker")])
def test_every_process_refuses_to_start_and_says_what_to_set(module):
    done = run([module], {"V2MOM_ENV": "production", "JWT_SECRET": DEV_SECRET,
                          "AMQP_URI": "amqp://guest:guest@127.0.0.1:5672/"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "V2MOM_ENV=production refuses to start" in done.stderr
    for what in ("JWT_SECRET is the development secret", "set OIDC_JWKS_URL or OIDC_JWKS_FILE",
                 "SERVICE_SECRET is missing"):
        assert what in done.stderr
    assert "Traceback" not in done.stderr


def test_the_cli_refuses_a_development_secret_and_has_no_development_tokens_in_production(tmp_path):
    token_file = {"V2MOM_TOKEN_FILE": str(tmp_path / "token")}
    refused = run(["v2mom_cli.main", "whoami"], {"V2MOM_ENV": "production", "JWT_SECRET": DEV_SECRET, **token_file})
    assert refused.returncode == 2 and "JWT_SECRET is the development secret" in refused.stderr
    # Not even the bootstrap: `login <person>` minted an admin token to look them up; production has none at all.
    no_minting = run(["v2mom_cli.main", "login", "kofi.mensah"], {"V2MOM_ENV": "production", **token_file})
    assert no_minting.returncode == 2
    assert "no development tokens" in no_minting.stderr and "v2mom login --token" in no_minting.stderr
    assert not (tmp_path / "token").exists()
