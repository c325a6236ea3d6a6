"""Per-stream history: the last messages with their offsets, bounded by count and by age.

Offsets start at 1 and grow by one per message of the stream; offset 0 means "nothing yet". The
``epoch`` is a random id chosen when the history is created: a client holding offsets from another
epoch (a restarted server, a lost history) cannot recover from them and is told so.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

from tradewire.core.frames import Frame


@dataclass(frozen=True, slots=True)
class Entry:
    offset: int
    at: float  # monotonic seconds when appended
    frame: Frame
    data: dict[str, Any]  # the published data, for filtering on replay without decoding
    epoch: str = ""  # the history's epoch when it was appended


class StreamHistory:
    """Bounded history of one stream."""

    __slots__ = ("_entries", "epoch", "max_age", "max_size", "offset")

    def __init__(self, max_size: int, max_age: float, epoch: str | None = None) -> None:
        self.max_size = max_size
        self.max_age = max_age
        self.epoch = epoch or secrets.token_hex(6)
        self.offset = 0  # offset of the newest message (0: none yet)
        self._entries: deque[Entry] = deque(maxlen=max_size) if max_size > 0 else deque(maxlen=0)

    def __len__(self) -> int:
        return len(self._entries)

    def next_offset(self) -> int:
        self.offset += 1
        return self.offset

    def append(self, offset: int, frame: Frame, now: float, data: dict[str, Any]) -> Entry:
        """Keep ``frame`` (the deque drops the oldest over ``max_size``), then drop expired ones."""
        entry = Entry(offset, now, frame, data, self.epoch)
        self._entries.append(entry)
        self.trim(now)
        return entry

    def trim(self, now: float) -> None:
        entries = self._entries
        horizon = now - self.max_age
        while entries and entries[0].at < horizon:
            entries.popleft()

    def since(self, offset: int, now: float) -> list[Entry] | None:
        """Entries after ``offset`` in order, or None if history no longer reaches back to it."""
        self.trim(now)
        if offset >= self.offset:
            return []
        entries = self._entries
        if not entries or entries[0].offset > offset + 1:
            return None
        start = offset + 1 - entries[0].offset
        return [entries[i] for i in range(start, len(entries))]
