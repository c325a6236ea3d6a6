"""An encoded stream message, shared by every recipient.

The JSON payload is encoded once per publish. The complete unmasked WebSocket frame (header +
payload, RFC 6455 §5.2) is built lazily, once, the first time a transport that writes raw bytes
(the picows engine) needs it; the ASGI adapter uses the payload. picows' own ``send()`` would
frame (and copy) the payload again for every connection and cannot join several frames into one
write, which is what coalescing needs — hence the ten lines of framing here.
"""

from __future__ import annotations

import struct

_SHORT = 126
_MEDIUM = 1 << 16
_TEXT_FIN = 0x81


class Frame:
    """One stream message: ``payload`` (JSON bytes) and its cached wire form."""

    __slots__ = ("_wire", "key", "offset", "payload", "stream")

    def __init__(
        self, payload: bytes, offset: int = 0, key: object = None, stream: str | None = None
    ) -> None:
        self.payload = payload
        self.stream = stream  # the stream it belongs to (None for non-stream frames)
        self.offset = offset  # the stream offset it carries (0 for non-stream frames)
        self.key = key  # conflation key ((stream, symbol)) or None: never conflated
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        wire = self._wire
        if wire is None:
            wire = self._wire = text_frame(self.payload)
        return wire


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame carrying ``payload`` (server → client framing)."""
    size = len(payload)
    if size < _SHORT:
        header = bytes((_TEXT_FIN, size))
    elif size < _MEDIUM:
        header = struct.pack("!BBH", _TEXT_FIN, _SHORT, size)
    else:
        header = struct.pack("!BBQ", _TEXT_FIN, 127, size)
    return header + payload
