"""The exception tree and the one place that turns failures into error envelopes.

::

    TradewireError
    ├── ConfigError            settings that must not start a server (e.g. no secret in production)
    └── RequestError           a request failed in a way the client is told about (carries ErrorCode)
        ├── AuthError          token missing, invalid or expired
        └── PermissionDenied   authenticated, but lacking a permission

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
