"""One ``Settings`` object for the whole server.

Sources, highest priority first: explicit keyword arguments (``tradewire serve`` flags), the
environment (``TRADEWIRE_*``), an optional TOML file (``--config`` / ``TRADEWIRE_CONFIG_FILE``),
then the defaults below (the seed's limits). Flag names are the field names with dashes:
``ws_port`` ↔ ``--ws-port`` ↔ ``TRADEWIRE_WS_PORT``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import secrets
import zlib
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator

if TYPE_CHECKING:
    from tradewire.auth.throttle import ThrottlePolicy
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
MIN_SECRET_BITS = 80  # entropy estimate (see secret_weakness); 32 random hex characters give >= 94
_ZLIB_OVERHEAD = 9  # bytes zlib adds to any input (header, checksum, block end)
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
    # Tokens whose exp lies further ahead are refused (invalid_token): catches exp in milliseconds
    # and tokens that would stay valid for ever if leaked. Default 7 days.
    max_token_lifetime: int = Field(7 * 24 * 3600, gt=0, le=366 * 24 * 3600)
    token_expiry_grace: float = Field(30.0, ge=0)
    users_file: Path | None = None
    # Guess throttling (login and reconnect; see tradewire/auth/throttle.py and docs/SECURITY.md)
    login_failures_per_minute: float = Field(10.0, gt=0)  # failed logins per address, sustained
    login_failure_burst: int = Field(10, ge=1)  # failed logins per address at once
    auth_free_failures: int = Field(5, ge=1)  # per (account, address) before backoff starts
    auth_backoff_base: float = Field(1.0, gt=0)  # seconds; doubles with each further failure
    auth_backoff_max: float = Field(900.0, gt=0)
    auth_account_failures_per_hour: int = Field(100, ge=1)  # all addresses; then known ones only
    auth_known_addresses: int = Field(8, ge=1, le=64)  # per account, exempt from the cap above
    auth_throttle_keys: int = Field(10_000, ge=100)  # entries per throttle table (LRU): memory bound

    # HTTP side
    http_docs: bool | None = None  # /docs, /openapi.json; None: on in dev, off in production
    dashboard: bool = True  # the browser dashboard at / of the HTTP port (static files, public protocol)
    ops_token: SecretStr | None = None  # when set, /stats and /metrics need "Authorization: Bearer"

    # Storage / cluster
    data_dir: Path = Path("data")
    database_url: str = ""  # empty: SQLite file data_dir/tradewire.db; or postgresql+asyncpg://...
    redis_url: str = ""
    redis_prefix: str = "tradewire:"  # namespace of every Redis key (one per deployment)
    stream_history_size: int | None = Field(None, ge=0)  # overrides the catalog's count for every stream
    stream_history: dict[str, int] = {}  # per stream, e.g. {"market_data": 50000}; wins over both
    # Cluster (with redis_url; docs/CLUSTER.md)
    workers: int = Field(1, ge=1, le=64)  # processes sharing the ports (SO_REUSEPORT); > 1 needs Redis
    node_id: str = ""  # this node's name in Redis (empty: random per process)
    cluster_publish_queue: int = Field(10_000, ge=100)  # publications waiting for Redis, then dropped
    cluster_lease_seconds: float = Field(5.0, ge=0.5)  # leader and job leases; a dead node's expire
    user_rate_limit_per_minute: float = Field(0.0, ge=0)  # a user's messages on all nodes (0: off)
    session_checkpoint_seconds: float = Field(1.0, ge=0)  # re-save live sessions (crash → resume); 0: off

    # Embedded engine (used by `tradewire serve`)
    engine: bool = True  # run the reference engine behind the gateway
    synthetic_symbols: CommaList = ["BTC-USD", "ETH-USD", "SOL-USD"]  # empty: no synthetic feed
    synthetic_interval: float = Field(0.25, gt=0)  # seconds between ticks of each symbol
    synthetic_seed: int = 7
    replay_dataset: int | None = None  # also replay this stored dataset (see `tradewire data import`)
    replay_speed: float = Field(0.0, ge=0)  # market seconds per wall second; 0 = as fast as possible
    max_sessions_per_user: int = Field(5, ge=1)  # running backtest/paper/live sessions of one user
    max_sessions_total: int = Field(50, ge=1)  # running sessions of everyone
    # Data collection (docs/COLLECTION.md): rows buffered per collection while the database is
    # slow (past it, updates are dropped and counted), seconds between batched writes.
    collection_buffer_rows: int = Field(100_000, ge=100, le=10_000_000)
    collection_flush_interval: float = Field(0.5, gt=0, le=60)
    max_collections_per_user: int = Field(3, ge=1)

    # Live trading through ccxt (docs/EXCHANGES.md; needs `pip install tradewire[exchange]`)
    exchange: str = ""  # ccxt exchange id, e.g. "kraken"; empty: no live trading
    exchange_api_key: SecretStr | None = None
    exchange_api_secret: SecretStr | None = None
    exchange_password: SecretStr | None = None  # the passphrase some exchanges require
    exchange_api_url: str = ""  # replaces scheme and host of the exchange's API URLs (a gateway, a stand-in)
    exchange_sandbox: bool = False  # the exchange's test environment, where ccxt knows one
    exchange_symbols: CommaList = []  # markets the engine polls and live sessions may trade
    exchange_poll_interval: float = Field(2.0, gt=0)  # seconds between ticker and order polls
    exchange_timeout: float = Field(10.0, gt=0)  # seconds per exchange request
    exchange_config: dict[str, Any] = {}  # extra ccxt options, e.g. {"enableRateLimit": false}

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
    # Levels of objects/arrays in free-form fields (params, strategy_config); deeper: validation_error.
    # At most 128: replies must stay far below the encoder's 254-level limit.
    max_nesting_depth: int = Field(32, ge=4, le=128)
    max_subscriptions_per_client: int = Field(100, ge=1)
    subscribe_operations_per_hour: int = Field(50, ge=1)
    allowed_origins: CommaList = []
    trusted_proxies: CommaList = []

    # Logging
    log_format: LogFormat = LogFormat.CONSOLE
    log_level: str = "info"

    @field_validator(
        "allowed_origins", "trusted_proxies", "synthetic_symbols", "exchange_symbols", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("synthetic_symbols", "exchange_symbols")
    @classmethod
    def _canonical_symbols(cls, value: list[str]) -> list[str]:
        """One spelling per instrument (``btc/usd`` → ``BTC-USD``), no repeats."""
        from tradewire.engine.symbols import MAX_SYMBOL, canonical

        symbols = list(dict.fromkeys(canonical(item) for item in value))
        too_long = [s for s in symbols if len(s) > MAX_SYMBOL]
        if too_long:
            raise ValueError(f"symbols longer than {MAX_SYMBOL} characters: {', '.join(too_long)}")
        return symbols

    @model_validator(mode="after")
    def _one_live_source_per_symbol(self) -> Settings:
        """Synthetic prices must never reach a symbol an exchange feeds (DESIGN §9)."""
        both = sorted(set(self.synthetic_symbols) & set(self.exchange_symbols))
        if both:
            raise ValueError(
                f"{', '.join(both)}: in both synthetic_symbols and exchange_symbols "
                "(a symbol has one live feed)"
            )
        return self

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

    def throttle_policy(self, rate_per_minute: float, burst: int) -> ThrottlePolicy:
        """A guess-throttle policy with these per-address limits and the shared account rules."""
        from tradewire.auth.throttle import ThrottlePolicy

        return ThrottlePolicy(
            rate=rate_per_minute / 60,
            burst=burst,
            free_failures=self.auth_free_failures,
            backoff_base=self.auth_backoff_base,
            backoff_max=self.auth_backoff_max,
            account_failures_per_hour=self.auth_account_failures_per_hour,
            known_addresses=self.auth_known_addresses,
            max_keys=self.auth_throttle_keys,
        )

    @property
    def docs_enabled(self) -> bool:
        """Whether the HTTP app serves its OpenAPI schema and docs pages."""
        return self.http_docs if self.http_docs is not None else self.mode is Mode.DEV

    def check_production(self) -> None:
        """Refuse settings production must not run with (the JWT secret is checked where it is
        resolved): a weak operator token."""
        if self.mode is Mode.PRODUCTION and self.ops_token is not None:
            weakness = secret_weakness(self.ops_token.get_secret_value().encode())
            if weakness is not None:
                raise ConfigError(f"TRADEWIRE_OPS_TOKEN is too weak for production: {weakness}")


def _env_config_file() -> Path | None:
    value = os.environ.get("TRADEWIRE_CONFIG_FILE")
    return Path(value) if value else None


class SecretSource(StrEnum):
    """Where the HS256 secret came from (said in the start-up log)."""

    CONFIGURED = "configured"  # TRADEWIRE_JWT_SECRET / flag / TOML
    GENERATED = "generated"  # dev mode, first start: a new random secret written to data_dir
    REUSED = "reused"  # dev mode: the secret generated by an earlier start, read from data_dir


@dataclass(frozen=True, slots=True)
class JwtSecret:
    """The resolved HS256 secret, where it came from, and why it is weak (None: it is not)."""

    value: bytes | None
    source: SecretSource | None
    weakness: str | None = None


def secret_weakness(secret: bytes) -> str | None:
    """Why ``secret`` is too weak to sign tokens, or None.

    Rule: at least ``MIN_SECRET_BYTES`` bytes, and an entropy estimate of at least
    ``MIN_SECRET_BITS``. The estimate looks at the secret's shortest repeating unit ("password"
    five times counts as "password" once) and takes the lowest of: the Shannon entropy of its
    bytes times their number, the same for the differences between neighbouring bytes (catches
    "abcdef..." and "0123..."), and its zlib-compressed size in bits. Random secrets pass easily
    (32 random hex characters estimate >= 94 bits, ``secrets.token_urlsafe(32)`` >= 200); a
    cracked "abc", "a"*40 or a repeated word does not. Dictionary phrases without repeats can
    still pass: generate secrets, do not choose them.
    """
    if len(secret) < MIN_SECRET_BYTES:
        return f"shorter than {MIN_SECRET_BYTES} bytes ({len(secret)})"
    bits = entropy_estimate(secret)
    if bits < MIN_SECRET_BITS:
        return f"low entropy (estimated {bits:.0f} bits, at least {MIN_SECRET_BITS} needed)"
    return None


def entropy_estimate(secret: bytes) -> float:
    """A conservative entropy estimate in bits (see :func:`secret_weakness`)."""
    unit = _repeating_unit(secret)
    steps = bytes((b - a) & 0xFF for a, b in pairwise(unit))
    compressed = (len(zlib.compress(unit, 9)) - _ZLIB_OVERHEAD) * 8
    return max(0.0, min(_shannon_bits(unit), _shannon_bits(steps) + 8, compressed))


def _repeating_unit(data: bytes) -> bytes:
    size = len(data)
    for period in range(1, size // 2 + 1):
        if data[period:] == data[:-period]:
            return data[:period]
    return data


def _shannon_bits(data: bytes) -> float:
    size = len(data)
    return -sum(n * math.log2(n / size) for n in Counter(data).values()) if size else 0.0


def resolve_jwt_secret(settings: Settings) -> JwtSecret:
    """The HMAC secret to use, where it came from, and whether it is weak.

    Production refuses to start without a strong secret (:func:`secret_weakness`); dev mode
    accepts a weak one (the server logs a loud warning on every start). Dev mode without a secret
    generates one and keeps it in ``data_dir/.jwt-dev-secret`` (mode 0600), so that ``tradewire
    token`` and a restarted server agree on it.
    """
    if settings.jwt_algorithm is not JwtAlgorithm.HS256:
        return JwtSecret(None, None)
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value().encode()
        weakness = secret_weakness(secret)
        if weakness is not None and settings.mode is Mode.PRODUCTION:
            raise ConfigError(f"TRADEWIRE_JWT_SECRET is too weak for production: {weakness}")
        return JwtSecret(secret, SecretSource.CONFIGURED, weakness)
    if settings.mode is Mode.PRODUCTION:
        raise ConfigError("production mode requires TRADEWIRE_JWT_SECRET (at least 32 random bytes)")
    path = settings.data_dir / DEV_SECRET_FILE
    if path.is_file():
        secret = path.read_bytes().strip()
        return JwtSecret(secret, SecretSource.REUSED, secret_weakness(secret))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48).encode()
    path.touch(mode=0o600)
    path.write_bytes(secret)
    return JwtSecret(secret, SecretSource.GENERATED)
