"""The exception tree and the one place that turns failures into error envelopes.

::

    TradewireError
    ├── ConfigError            settings that must not start a server (e.g. no secret in production)
    ├── RequestError           a request failed in a way the client is told about (carries ErrorCode)
    │   ├── AuthError          token missing, invalid or expired
    │   └── PermissionDenied   authenticated, but lacking a permission
    └── EngineError            a domain failure of the trading engine (no wire code: the handlers
        │                      map each class to an ErrorCode in one table, handlers/engine_errors.py)
        ├── NotFound                 StrategyNotFound, SessionNotFound, DatasetNotFound,
        │                            CollectionNotFound
        ├── UnknownSymbol            a symbol the engine does not know (``details.matches``: close ones)
        ├── NotOwner                 the object belongs to someone else (shipped examples: "tradewire")
        ├── StrategyInvalid          a strategy document with errors (``result`` holds all of them)
        ├── StrategyDisabled         ``enabled: false`` cannot run
        ├── SessionConflict          the same owner already runs that strategy on that symbol
        ├── SessionLimitExceeded     too many running sessions (per user or in total)
        ├── InvalidSessionConfig     ``config`` or ``strategy_config`` of a session is wrong
        ├── InvalidRequest           another request value is wrong (``details.path`` names it)
        ├── ResultsNotAvailable      the session has no stored results (yet)
        ├── CollectionLimitExceeded  too many running collections of one user
        ├── LiveTradingUnavailable   no exchange adapter is configured (or it is not connected)
        ├── SessionFailed            a session could not go on (its message is safe to show)
        ├── ClusterUnavailable       cluster mode: no node answered, or Redis is unreachable
        └── ExchangeError            an exchange adapter failed (engine-internal: sessions report it)
            ├── ExchangeUnavailable  the exchange cannot be reached now (network, maintenance, limits)
            ├── ExchangeAuthFailed   the exchange refused the credentials (or their permissions)
            └── OrderRejected        the exchange refused an order (the message is safe to show)

(``IndicatorError`` in :mod:`tradewire.engine.indicators` and ``StrategyValidationError`` in
:mod:`tradewire.engine.strategy_document` are engine errors too.)

:class:`ErrorHandler` builds every ``{type:"error", ...}`` envelope (DESIGN §3.3). Unexpected
exceptions never reach the client as text: they are logged with a correlation id and the client
gets ``internal_error`` with that id.
"""

from __future__ import annotations

import secrets
from typing import Any

import structlog

from tradewire.clock import Clock
from tradewire.protocol.codes import ErrorCode

MAX_ERROR_MESSAGE = 300


class TradewireError(Exception):
    """Base of every exception tradewire raises on purpose."""


class ConfigError(TradewireError):
    """The configuration is unsafe or inconsistent; the server refuses to start."""


class RequestError(TradewireError):
    """A client request failed; ``code``, ``message`` and ``details`` go into the envelope."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class AuthError(RequestError):
    """Authentication failed (``invalid_token``, ``token_expired``, ...)."""


class PermissionDenied(RequestError):
    """The caller is authenticated but lacks ``required``."""

    def __init__(self, required: str) -> None:
        super().__init__(
            ErrorCode.INSUFFICIENT_PERMISSIONS,
            f"permission '{required}' is required",
            {"required": required},
        )


class EngineError(TradewireError):
    """A domain failure of the engine; ``details`` is safe to show to the client."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class NotFound(EngineError):
    """The named object does not exist (or is not the caller's: never tell the difference)."""


class StrategyNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no strategy named '{name[:128]}'", {"strategy_name": name})


class SessionNotFound(NotFound):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session '{session_id[:64]}'", {"session_id": session_id})


class DatasetNotFound(NotFound):
    def __init__(self, dataset_id: int) -> None:
        super().__init__(f"no dataset {dataset_id}", {"dataset_id": dataset_id})


class CollectionNotFound(NotFound):
    def __init__(self, collection_id: str) -> None:
        super().__init__(f"no collection '{collection_id[:64]}'", {"collection_id": collection_id})


class UnknownSymbol(EngineError):
    """``details``: the symbol, up to three close ``matches``, and whether a live feed was needed."""

    def __init__(
        self, symbol: str, matches: list[str], *, live: bool = False, path: str | None = None
    ) -> None:
        what = "no live feed publishes" if live else "unknown symbol"
        hint = f"; did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
        details: dict[str, Any] = {"symbol": symbol, "matches": matches, "live": live}
        if path is not None:
            details["path"] = path
        super().__init__(f"{what} {symbol[:32]!r}{hint}", details)


class NotOwner(EngineError):
    """A change to an object only its owner (or an admin) may change."""

    def __init__(self, kind: str, name: str, owner: str) -> None:
        super().__init__(
            f"{kind} '{name[:128]}' belongs to {owner[:128]}: only its owner or an admin may change it",
            {"required": "owner", kind + "_name": name, "owner": owner},
        )


class StrategyInvalid(EngineError):
    """``details`` is the validation result ``{valid, errors, warnings}``."""


class StrategyDisabled(EngineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"strategy '{name[:128]}' is disabled", {"strategy_name": name})


class SessionConflict(EngineError):
    def __init__(self, existing_id: str, strategy: str, symbol: str) -> None:
        super().__init__(
            f"strategy '{strategy[:128]}' already runs on {symbol[:32]} in session {existing_id}",
            {"session_id": existing_id, "strategy_name": strategy, "symbol": symbol},
        )


class SessionLimitExceeded(EngineError):
    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"at most {limit} running sessions {scope}", {"scope": scope, "limit": limit})


class InvalidSessionConfig(EngineError):
    """``details.errors`` lists every problem as ``{path, message}``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("session configuration is invalid", {"errors": errors})


class InvalidRequest(EngineError):
    """A value of a request the wire schema let through is wrong (e.g. a zero duration)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message, {"path": path})


class ResultsNotAvailable(EngineError):
    def __init__(self, session_id: str, status: str) -> None:
        super().__init__(
            f"session {session_id[:64]} has no results ({status})",
            {"session_id": session_id, "status": status},
        )


class SessionFailed(EngineError):
    """A session ended with an error its owner can act on (e.g. an empty dataset)."""


class CollectionLimitExceeded(EngineError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} running collections per user", {"limit": limit})


class ClusterUnavailable(EngineError):
    """Cluster mode could not do it now (no node answered in time, Redis unreachable): retry."""


class LiveTradingUnavailable(EngineError):
    def __init__(self, message: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(
            message or "live trading needs a configured exchange adapter; none is configured on this server",
            details,
        )


class ExchangeError(EngineError):
    """A failure at the exchange boundary; the message is ours (never the exchange's raw text)."""


class ExchangeUnavailable(ExchangeError):
    """The exchange cannot be reached now; retrying later may work (an order's fate is unknown)."""


class ExchangeAuthFailed(ExchangeError):
    """The exchange refused the configured credentials; retrying will not help."""


class OrderRejected(ExchangeError):
    """The exchange refused the order (insufficient funds, below the minimum, ...)."""


class ErrorHandler:
    """Builds error envelopes; the only code that writes ``type: "error"``."""

    def __init__(self, clock: Clock, logger: Any = None) -> None:
        self._clock = clock
        self._log = logger if logger is not None else structlog.get_logger("tradewire.errors")

    def envelope(
        self,
        code: ErrorCode,
        message: str,
        request_id: str | int | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An error envelope; ``request_id`` is set only for direct replies."""
        env: dict[str, Any] = {
            "type": "error",
            "error_code": code.value,
            "error_message": message[:MAX_ERROR_MESSAGE],
            "timestamp": self._clock.iso_now(),
        }
        if request_id is not None:
            env["id"] = request_id
        if details:
            env["details"] = details
        return env

    def from_request_error(self, exc: RequestError, request_id: str | int | None) -> dict[str, Any]:
        return self.envelope(exc.code, exc.message, request_id, exc.details)

    def internal(self, exc: BaseException, request_id: str | int | None, **context: Any) -> dict[str, Any]:
        """Log ``exc`` with a fresh correlation id and return an envelope naming only that id."""
        correlation_id = secrets.token_hex(8)
        self._log.error("request.failed", correlation_id=correlation_id, exc_info=exc, **context)
        return self.envelope(
            ErrorCode.INTERNAL_ERROR,
            "internal server error",
            request_id,
            {"correlation_id": correlation_id},
        )
