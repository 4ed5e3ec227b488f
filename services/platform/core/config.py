"""Configuration from environment variables, with safe local defaults.

Every process reads its settings once at start-up. A value that is present
but malformed stops the process with a message naming the variable.
"""

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


class ConfigError(RuntimeError):
    pass


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


DEV_SECRET = "dev-only-secret-change-me-in-production"
# RFC 7518 3.2: an HS256 key shorter than the hash output (32 bytes) weakens it.
MIN_SECRET_BYTES = 32
PRODUCTION = "production"


def dev_service_secret(service: str) -> str:
    """The development credential of a service: public, like DEV_SECRET, and refused in production."""
    return f"dev-only-service-secret-of-{service}-change-me"


@dataclass(frozen=True)
class AuthSettings:
    """Who may call: people with a token from the identity provider, and services with their own credential.

    User tokens: from an OIDC provider, verified with its JWKS (jwks_url or
    jwks_file), or - outside production only - HS256 tokens signed with
    ``secret`` (the dev CLI, the demo seed, tests). Service credentials:
    ``service_secret`` is this process's own, ``service_keys`` the callers'
    (docs/architecture.md, "Security").
    """

    secret: str = DEV_SECRET
    issuer: str = "v2mom-dev"
    audience: str = "v2mom"
    jwks_url: str = ""
    jwks_file: str = ""
    leeway_seconds: float = 30.0
    # Refetch the JWKS for an unknown kid at most this often: a flood of made-up kids must not flood the IdP.
    jwks_refetch_seconds: float = 30.0
    service: str = ""
    service_secret: str = ""
    service_keys: tuple[tuple[str, str], ...] = ()
    production: bool = False

    @property
    def oidc(self) -> bool:
        return bool(self.jwks_url or self.jwks_file)

    def own_service_secret(self) -> str:
        return self.service_secret or ("" if self.production else dev_service_secret(self.service))

    def caller_key(self, caller_service: str) -> str:
        """The secret a calling service signs with; '' when this process does not know it."""
        known = dict(self.service_keys)
        if caller_service in known:
            return known[caller_service]
        return "" if self.production else dev_service_secret(caller_service)


@dataclass(frozen=True)
class Settings:
    service: str
    mongo_uri: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongo_db: str = ""
    amqp_uri: str = "amqp://guest:guest@127.0.0.1:5672/"
    grpc_addr: str = "127.0.0.1:50051"
    # Where other services reach goals-api.
    goals_addr: str = "127.0.0.1:50051"
    log_level: str = "INFO"
    relay_interval_seconds: float = 0.2
    relay_batch_size: int = 200
    directory_cache_seconds: float = 5.0
    # The workers' queues and consumers (docs/architecture.md, "Queues, prefetch and concurrency").
    queue_type: str = "classic"
    delivery_limit: int = 20
    worker_concurrency: int = 10
    prefetch: int = 0  # 0: as many as worker_concurrency
    # How long the event log keeps what the relay published, for ReplayEvents (bus/event_log.py); 0: no log.
    event_log_retention_days: int = 30
    auth: AuthSettings = field(default_factory=AuthSettings)

    @property
    def prefetch_count(self) -> int:
        """Unacknowledged deliveries the broker sends each handler queue's consumer ahead of the workers."""
        return self.prefetch or self.worker_concurrency

    @property
    def database_name(self) -> str:
        return self.mongo_db or self.service


QUEUE_TYPES = ("classic", "quorum")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_at_least(name: str, default: int, least: int) -> int:
    value = env_int(name, default)
    if value < least:
        raise ConfigError(f"{name} must be at least {least}, got {value}")
    return value


def env_between(name: str, default: int, least: int, most: int) -> int:
    value = env_int(name, default)
    if not least <= value <= most:
        raise ConfigError(f"{name} must be between {least} and {most}, got {value}")
    return value


MAX_RETENTION_DAYS = 3650


def is_production() -> bool:
    return env_str("V2MOM_ENV", "development").strip().lower() == PRODUCTION


def parse_service_keys(raw: str) -> tuple[tuple[str, str], ...]:
    """SERVICE_KEYS="checkins=<secret>,metrics=<secret>": the credentials of the services that call this one."""
    pairs = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, secret = part.partition("=")
        if not sep or not name.strip() or not secret.strip():
            raise ConfigError("SERVICE_KEYS must look like 'checkins=<secret>,metrics=<secret>'")
        pairs.append((name.strip(), secret.strip()))
    return tuple(pairs)


def load_auth(service: str = "") -> AuthSettings:
    if env_str("JWT_ALGORITHM", "HS256") != "HS256" or env_str("JWT_PUBLIC_KEY", ""):
        raise ConfigError("JWT_ALGORITHM=RS256 and JWT_PUBLIC_KEY are gone: user tokens come from your identity "
                          "provider; set OIDC_JWKS_URL (or OIDC_JWKS_FILE), OIDC_ISSUER and OIDC_AUDIENCE")
    settings = AuthSettings(
        secret=env_str("JWT_SECRET", DEV_SECRET),
        issuer=env_str("OIDC_ISSUER", env_str("JWT_ISSUER", AuthSettings.issuer)),
        audience=env_str("OIDC_AUDIENCE", env_str("JWT_AUDIENCE", AuthSettings.audience)),
        jwks_url=env_str("OIDC_JWKS_URL", ""),
        jwks_file=env_str("OIDC_JWKS_FILE", ""),
        leeway_seconds=env_float("JWT_LEEWAY_SECONDS", AuthSettings.leeway_seconds),
        jwks_refetch_seconds=env_float("OIDC_JWKS_REFETCH_SECONDS", AuthSettings.jwks_refetch_seconds),
        service=service,
        service_secret=env_str("SERVICE_SECRET", ""),
        service_keys=parse_service_keys(env_str("SERVICE_KEYS", "")),
        production=is_production(),
    )
    if settings.production:
        require_production_auth(settings)
    return settings


def require_production_auth(auth: AuthSettings) -> None:
    """Production refuses every credential a reader of this repository could know or guess."""
    problems = []
    if "JWT_SECRET" in os.environ:
        what = "is the development secret" if auth.secret == DEV_SECRET else "signs development tokens"
        problems.append(f"JWT_SECRET {what}, and production accepts only the identity provider's tokens: unset it")
    if auth.service:  # a service process; the CLI only carries a token
        if not auth.oidc:
            problems.append("user tokens need the identity provider's keys: set OIDC_JWKS_URL or OIDC_JWKS_FILE")
        if "OIDC_ISSUER" not in os.environ:
            problems.append("set OIDC_ISSUER to your identity provider's issuer")
        problems += _weak_secret("SERVICE_SECRET", auth.service_secret, dev_service_secret(auth.service))
    for name, secret in auth.service_keys:
        problems += _weak_secret(f"SERVICE_KEYS[{name}]", secret, dev_service_secret(name))
    if problems:
        raise ConfigError("V2MOM_ENV=production refuses to start: " + "; ".join(p.strip() for p in problems))


def secret_setting(name: str, dev_value: str) -> str:
    """A secret from the environment variable ``name``; ``dev_value`` when unset, except in production, which
    refuses it unset, public (``dev_value`` is in this repository) or too short to be an HMAC key."""
    secret = env_str(name, "")
    if is_production():
        problems = _weak_secret(name, secret, dev_value)
        if problems:
            raise ConfigError("V2MOM_ENV=production refuses to start: " + "; ".join(problems))
    return secret or dev_value


def _weak_secret(name: str, secret: str, dev_value: str) -> list[str]:
    if not secret:
        return [f"{name} is missing: set it to at least {MIN_SECRET_BYTES} random bytes (openssl rand -hex 32)"]
    if secret in (dev_value, DEV_SECRET):
        return [f"{name} is a development secret: set your own (openssl rand -hex 32)"]
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return [f"{name} is shorter than {MIN_SECRET_BYTES} bytes: an HS256 key that short can be guessed "
                "(openssl rand -hex 32)"]
    return []


def require_production_broker(amqp_uri: str) -> None:
    """RabbitMQ's guest user is known to everyone; production names its own, with a password."""
    parsed = urlsplit(amqp_uri)
    user, password = unquote(parsed.username or "guest"), unquote(parsed.password or "")
    problem = "uses the broker's guest user (or none)" if user == "guest" else "has no password" if not password else ""
    if problem:
        raise ConfigError(f"V2MOM_ENV=production refuses to start: AMQP_URI {problem}: set "
                          "AMQP_URI=amqp://<user>:<password>@<host>:5672/<vhost> with this service's own RabbitMQ user")


def load(service: str, default_grpc_addr: str = "127.0.0.1:50051") -> Settings:
    """Settings for one service; MONGO_DB defaults to the service name.

    With V2MOM_ENV=production, refuses (ConfigError) weak or missing secrets and
    the broker's guest user.
    """
    settings = Settings(
        service=service,
        mongo_uri=env_str("MONGO_URI", Settings.mongo_uri),
        mongo_db=env_str("MONGO_DB", ""),
        amqp_uri=env_str("AMQP_URI", Settings.amqp_uri),
        grpc_addr=env_str("GRPC_ADDR", default_grpc_addr),
        goals_addr=env_str("GOALS_ADDR", Settings.goals_addr),
        log_level=env_str("LOG_LEVEL", "INFO").upper(),
        relay_interval_seconds=env_float("RELAY_INTERVAL_SECONDS", 0.2),
        relay_batch_size=env_int("RELAY_BATCH_SIZE", 200),
        directory_cache_seconds=env_float("DIRECTORY_CACHE_SECONDS", 5.0),
        queue_type=env_choice("AMQP_QUEUE_TYPE", Settings.queue_type, QUEUE_TYPES),
        delivery_limit=env_at_least("AMQP_DELIVERY_LIMIT", Settings.delivery_limit, 1),
        worker_concurrency=env_at_least("WORKER_CONCURRENCY", Settings.worker_concurrency, 1),
        prefetch=env_at_least("AMQP_PREFETCH", Settings.prefetch, 0),
        event_log_retention_days=env_between("EVENT_LOG_RETENTION_DAYS", Settings.event_log_retention_days, 0,
                                             MAX_RETENTION_DAYS),
        auth=load_auth(service),
    )
    if settings.auth.production:
        require_production_broker(settings.amqp_uri)
    return settings


def load_or_exit(service: str, default_grpc_addr: str = "127.0.0.1:50051") -> Settings:
    """``load`` for a process's main: a ConfigError ends it with the message, not a traceback."""
    return or_exit(service, lambda: load(service, default_grpc_addr))


def or_exit[T](process: str, read: Callable[[], T]) -> T:
    """``read()`` for a process's start: a ConfigError ends the process (status 2) with its message."""
    try:
        return read()
    except ConfigError as error:
        print(f"{process}: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
