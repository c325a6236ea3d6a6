"""Exceptions of the Python client, under tradewire's own root::

TradewireError
└── ClientError            anything the client raises on purpose
    ├── ServerError        the server answered with an error envelope (code, message, details)
    │   └── AuthenticationFailed   ``auth`` was refused (invalid_token, token_expired, ...)
    ├── RequestTimeout     no reply within the request's timeout (also a TimeoutError)
    ├── ConnectionLost     the link dropped while the request was in flight (it may or may
    │                      not have been processed: retry only idempotent requests)
    └── ClientClosed       the client was closed, or the server closed it for good
"""

from __future__ import annotations

from typing import Any

from tradewire.errors import TradewireError


class ClientError(TradewireError):
    """Base of the client's exceptions."""


class ServerError(ClientError):
    """An error envelope in reply to a request."""

    def __init__(self, envelope: dict[str, Any]) -> None:
        self.envelope = envelope
        self.code: str = str(envelope.get("error_code", "unknown"))
        self.message: str = str(envelope.get("error_message", ""))
        self.details: dict[str, Any] = envelope.get("details") or {}
        super().__init__(f"{self.code}: {self.message}")


class AuthenticationFailed(ServerError):
    """The server refused the token (``details`` may name the issuer or key in use)."""


class RequestTimeout(ClientError, TimeoutError):
    """No reply arrived in time; a late reply is dropped."""


class ConnectionLost(ClientError):
    """The connection dropped before the reply arrived."""


class ClientClosed(ClientError):
    """The client is closed (by :meth:`Client.close` or a final close code from the server)."""
