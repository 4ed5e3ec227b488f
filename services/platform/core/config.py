"""Configuration from environment variables, with safe local defaults.

Every process reads its settings once at start-up. A value that is present
but malformed stops the process with a message naming the variable.
"""

import os
from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class AuthSettings:
    # HS256 with a shared secret in development; RS256 with a public key in
    # production (JWT_PUBLIC_KEY, PEM text) - see docs/architecture.md.
    algorithm: str = "HS256"
    secret: str = "dev-only-secret-change-me-in-production"
    public_key: str = ""
    private_key: str = ""
    issuer: str = "v2mom-dev"
    audience: str = "v2mom"

    @property
    def verify_key(self) -> str:
        return self.public_key if self.algorithm.startswith("RS") else self.secret

    @property
    def signing_key(self) -> str:
        return self.private_key if self.algorithm.startswith("RS") else self.secret


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
    auth: AuthSettings = field(default_factory=AuthSettings)

    @property
    def database_name(self) -> str:
        return self.mongo_db or self.service


def load_auth() -> AuthSettings:
    algorithm = env_str("JWT_ALGORITHM", "HS256")
    if algorithm not in ("HS256", "RS256"):
        raise ConfigError(f"JWT_ALGORITHM must be HS256 or RS256, got {algorithm!r}")
    settings = AuthSettings(
        algorithm=algorithm,
        secret=env_str("JWT_SECRET", AuthSettings.secret),
        public_key=env_str("JWT_PUBLIC_KEY", ""),
        private_key=env_str("JWT_PRIVATE_KEY", ""),
        issuer=env_str("JWT_ISSUER", AuthSettings.issuer),
        audience=env_str("JWT_AUDIENCE", AuthSettings.audience),
    )
    if algorithm == "RS256" and not settings.public_key:
        raise ConfigError("JWT_ALGORITHM=RS256 needs JWT_PUBLIC_KEY")
    return settings


def load(service: str, default_grpc_addr: str = "127.0.0.1:50051") -> Settings:
    """Settings for one service; MONGO_DB defaults to the service name."""
    return Settings(
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
        auth=load_auth(),
    )
