"""One ``Settings`` object for the whole server.

Sources, highest priority first: explicit keyword arguments (``tradewire serve`` flags), the
environment (``TRADEWIRE_*``), an optional TOML file (``--config`` / ``TRADEWIRE_CONFIG_FILE``),
then the defaults below (the seed's limits). Flag names are the field names with dashes:
``ws_port`` ↔ ``--ws-port`` ↔ ``TRADEWIRE_WS_PORT``.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tradewire.errors import ConfigError

_config_file: ContextVar[Path | None] = ContextVar("tradewire_config_file", default=None)

MIN_SECRET_BYTES = 32
DEV_SECRET_FILE = ".jwt-dev-secret"


class Mode(StrEnum):
    DEV = "dev"
    PRODUCTION = "production"


class JwtAlgorithm(StrEnum):
    HS256 = "HS256"
    RS256 = "RS256"
    ES256 = "ES256"


class LogFormat(StrEnum):
    CONSOLE = "console"
    JSON = "json"


CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """All configuration of a tradewire process (see docs/CONFIGURATION in the README)."""

    model_config = SettingsConfigDict(env_prefix="TRADEWIRE_", extra="forbid", validate_default=True)

    # Network
    host: str = "127.0.0.1"
    ws_port: int = Field(8765, ge=0, le=65535)
    http_port: int = Field(8080, ge=0, le=65535)
    ws_path: str = "/ws"
    mode: Mode = Mode.DEV

    # Authentication
    jwt_secret: SecretStr | None = None
    jwt_algorithm: JwtAlgorithm = JwtAlgorithm.HS256
    jwt_public_key_file: Path | None = None
    jwt_private_key_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    token_ttl: int = Field(3600, gt=0)
    token_expiry_grace: float = Field(30.0, ge=0)
    users_file: Path | None = None

    # Storage / cluster
    data_dir: Path = Path("data")
    database_url: str = ""  # empty: SQLite file data_dir/tradewire.db; or postgresql+asyncpg://...
    redis_url: str = ""
    redis_prefix: str = "tradewire:"  # namespace of every Redis key (one per deployment)
    stream_history_size: int | None = Field(None, ge=0)  # overrides the catalog's count for every stream
    stream_history: dict[str, int] = {}  # per stream, e.g. {"market_data": 50000}; wins over both

    # Embedded engine (used by `tradewire serve`)
    engine: bool = True  # run the reference engine behind the gateway
    synthetic_symbols: CommaList = ["BTC-USD", "ETH-USD", "SOL-USD"]  # empty: no synthetic feed
    synthetic_interval: float = Field(0.25, gt=0)  # seconds between ticks of each symbol
    synthetic_seed: int = 7
    replay_dataset: int | None = None  # also replay this stored dataset (see `tradewire data import`)
    replay_speed: float = Field(0.0, ge=0)  # market seconds per wall second; 0 = as fast as possible

    # Reconnect (DESIGN §3.5)
    session_ttl: float = Field(3600.0, gt=0)
    session_cleanup_interval: float = Field(300.0, gt=0)
    max_saved_sessions: int = Field(100_000, ge=1)
    reconnect_attempts_per_minute: float = Field(10.0, gt=0)
    reconnect_burst: int = Field(10, ge=1)

    # Limits (DESIGN §3.7)
    max_connections: int = Field(1000, ge=1)
    max_connections_per_user: int = Field(5, ge=1)
    max_connections_per_address: int = Field(100, ge=1)  # both endpoints together; over it: 1013
    auth_timeout: float = Field(10.0, ge=0)  # s to authenticate after connecting (4003); 0 = never
    handshake_timeout: float = Field(10.0, gt=0)  # s for a new TCP connection to send its request head
    close_timeout: float = Field(5.0, gt=0)  # s after a close before the socket is aborted, whatever the peer
    heartbeat_interval: float = Field(30.0, gt=0)
    ping_interval: float = Field(20.0, gt=0)
    max_message_size: int = Field(64 * 1024, ge=256)
    outbound_queue_bytes: int = Field(1024 * 1024, ge=4096)
    rate_limit_per_minute: float = Field(100.0, gt=0)
    rate_limit_burst: int = Field(20, ge=1)
    rate_limit_strikes: int = Field(50, ge=1)
    max_inflight_requests: int = Field(4, ge=1)
    max_subscriptions_per_client: int = Field(100, ge=1)
    subscribe_operations_per_hour: int = Field(50, ge=1)
    allowed_origins: CommaList = []
    trusted_proxies: CommaList = []

    # Logging
    log_format: LogFormat = LogFormat.CONSOLE
    log_level: str = "info"

    @field_validator("allowed_origins", "trusted_proxies", "synthetic_symbols", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("stream_history")
    @classmethod
    def _known_streams(cls, value: dict[str, int]) -> dict[str, int]:
        from tradewire.protocol.messages import Stream

        unknown = sorted(set(value) - {s.value for s in Stream})
        if unknown:
            raise ValueError(f"unknown streams: {', '.join(unknown)}")
        if any(size < 0 for size in value.values()):
            raise ValueError("history sizes must be >= 0")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _config_file.get()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Settings from flags (``overrides``), environment and an optional TOML file."""
        toml_file = config_file or _env_config_file()
        if toml_file is not None and not toml_file.is_file():
            raise ConfigError(f"config file not found: {toml_file}")
        token = _config_file.set(toml_file)
        try:
            return cls(**overrides)
        finally:
            _config_file.reset(token)

    @property
    def database(self) -> str:
        """SQLAlchemy URL of the engine database."""
        from tradewire.engine.storage.database import sqlite_url

        return self.database_url or sqlite_url(self.data_dir)

    @property
    def users_path(self) -> Path:
        return self.users_file or self.data_dir / "users.json"


def _env_config_file() -> Path | None:
    value = os.environ.get("TRADEWIRE_CONFIG_FILE")
    return Path(value) if value else None


def resolve_jwt_secret(settings: Settings) -> tuple[bytes | None, bool]:
    """The HMAC secret to use, and whether it was generated for dev mode.

    Production refuses to start without a secret of at least 32 bytes. Dev mode without a secret
    generates one and keeps it in ``data_dir/.jwt-dev-secret`` (mode 0600), so that ``tradewire
    token`` and a restarted server agree on it.
    """
    if settings.jwt_algorithm is not JwtAlgorithm.HS256:
        return None, False
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value().encode()
        if len(secret) < MIN_SECRET_BYTES and settings.mode is Mode.PRODUCTION:
            raise ConfigError(f"TRADEWIRE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes in production")
        return secret, False
    if settings.mode is Mode.PRODUCTION:
        raise ConfigError("production mode requires TRADEWIRE_JWT_SECRET (at least 32 bytes)")
    path = settings.data_dir / DEV_SECRET_FILE
    if path.is_file():
        return path.read_bytes().strip(), True
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48).encode()
    path.touch(mode=0o600)
    path.write_bytes(secret)
    return secret, True
