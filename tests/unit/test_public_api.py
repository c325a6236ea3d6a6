"""The public surface: exported names and the documented registries."""

from __future__ import annotations

from pathlib import Path

import tradewire
import tradewire.client
from tradewire.protocol.codes import CLOSE_INFO, ERROR_INFO, CloseCode, ErrorCode

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_exported_members() -> None:
    assert set(tradewire.__all__) == {
        "PROTOCOL_VERSION", "AuthError", "Client", "Clock", "CloseCode", "ConfigError", "ErrorCode",
        "Level", "ManualClock", "MessageType", "Permission", "PermissionDenied", "RequestError",
        "Settings", "Stream", "SyncClient", "SystemClock", "TradewireError", "WebSocketAPIServer",
        "__version__",
    }  # fmt: skip
    assert set(tradewire.client.__all__) == {
        "AuthenticationFailed", "Backoff", "Client", "ClientClosed", "ClientError", "ConnectionLost",
        "RequestTimeout", "ServerError", "State", "StreamMessage", "Subscription", "SyncClient",
        "SyncSubscription", "TokenSource", "build",
    }  # fmt: skip
    for name in tradewire.__all__:
        assert hasattr(tradewire, name), name


def test_every_code_has_a_description() -> None:
    assert set(ERROR_INFO) == set(ErrorCode)
    assert set(CLOSE_INFO) == set(CloseCode)


def test_protocol_doc_lists_every_error_and_close_code() -> None:
    text = (DOCS / "PROTOCOL.md").read_text()
    missing = [code.value for code in ErrorCode if f"`{code.value}`" not in text]
    missing += [str(int(code)) for code in CloseCode if f"| {int(code)} " not in text]
    assert missing == []
