"""The ``data`` envelope of a stream message and its :class:`~tradewire.core.frames.Frame`.

Both brokers build frames here: the memory broker encodes the envelope with orjson, the Redis
broker receives the envelope bytes built once by its publish script and only decodes them for
filtering (never re-encodes). The bytes are the same JSON either way (same keys, same order).
"""

from __future__ import annotations

from typing import Any

import orjson

from tradewire.core.frames import Frame
from tradewire.protocol.messages import Stream
from tradewire.streams.catalog import CATALOG


def encode(stream: Stream, data: dict[str, Any], offset: int, epoch: str, timestamp: str) -> bytes:
    """The envelope of one message, as the wire carries it (PROTOCOL: stream messages)."""
    return orjson.dumps(
        {
            "type": "data",
            "stream": stream.value,
            "data": data,
            "offset": offset,
            "epoch": epoch,
            "timestamp": timestamp,
        }
    )


def frame_for(stream: Stream, payload: bytes, offset: int, data: dict[str, Any]) -> Frame:
    """The shared frame of one message; conflatable streams key it by (stream, symbol)."""
    symbol = data.get("symbol")
    key = (stream, symbol) if CATALOG[stream].conflatable and isinstance(symbol, str) else None
    return Frame(payload, offset, key, stream.value)
