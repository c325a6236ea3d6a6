"""tradewire — the real-time WebSocket gateway of a trading system.

Public API: :class:`WebSocketAPIServer`, :class:`Settings`, the protocol registries
(:class:`ErrorCode`, :class:`CloseCode`, :class:`MessageType`, :class:`Stream`), the exception
tree rooted at :class:`TradewireError`, and the Python client (:class:`Client`, its blocking
:class:`SyncClient`; everything else of it in :mod:`tradewire.client`).
"""

from tradewire._version import PROTOCOL_VERSION, __version__
from tradewire.auth.permissions import Level, Permission
from tradewire.client import Client, SyncClient
from tradewire.clock import Clock, ManualClock, SystemClock
from tradewire.config import Settings
from tradewire.errors import AuthError, ConfigError, PermissionDenied, RequestError, TradewireError
from tradewire.protocol.codes import CloseCode, ErrorCode
from tradewire.protocol.messages import MessageType, Stream
from tradewire.server import WebSocketAPIServer

__all__ = [
    "PROTOCOL_VERSION",
    "AuthError",
    "Client",
    "Clock",
    "CloseCode",
    "ConfigError",
    "ErrorCode",
    "Level",
    "ManualClock",
    "MessageType",
    "Permission",
    "PermissionDenied",
    "RequestError",
    "Settings",
    "Stream",
    "SyncClient",
    "SystemClock",
    "TradewireError",
    "WebSocketAPIServer",
    "__version__",
]
