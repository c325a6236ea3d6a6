"""Datasets from files: import with a content hash (the same data twice is one dataset), and the
bundled sample files, which every fresh install lists as datasets without an import step.

Samples (from backtesting.py's test data, in ``sample_data/``): ``GOOG`` daily bars 2004–2013,
``BTC-USD`` monthly bars, ``EUR-USD`` hourly bars.
"""

from __future__ import annotations

import asyncio
import hashlib
from importlib import resources
from pathlib import Path

import structlog

from tradewire.engine.market_data import detect_kind, read_ohlcv_csv, read_trades_csv
from tradewire.engine.storage.database import Database, Dataset
from tradewire.engine.storage.schema import SYSTEM_OWNER
from tradewire.engine.symbols import canonical

_log = structlog.get_logger("tradewire.datasets")
SAMPLES: tuple[tuple[str, str], ...] = (
    ("GOOG.csv", "GOOG"),
    ("BTCUSD.csv", "BTC-USD"),
    ("EURUSD.csv", "EUR-USD"),
)


def content_hash(kind: str, symbol: str, data: bytes) -> str:
    """SHA-256 of what a dataset is: its kind, its symbol and the file's bytes."""
    return hashlib.sha256(f"{kind}\n{symbol}\n".encode() + data).hexdigest()


async def import_file(
    db: Database,
    path: Path,
    symbol: str,
    kind: str | None = None,
    source: str | None = None,
    owner: str = SYSTEM_OWNER,
) -> tuple[Dataset, bool]:
    """Import a CSV as a dataset of ``canonical(symbol)``; ``(dataset, False)`` when the same
    content (kind, symbol and bytes) is already stored, whoever imported it and under whatever
    file name. Reading and parsing run in a worker thread (files may be large)."""
    symbol = canonical(symbol)
    if kind is None:
        kind = await asyncio.to_thread(detect_kind, path)
    data = await asyncio.to_thread(path.read_bytes)
    digest = content_hash(kind, symbol, data)
    existing = await db.dataset_by_hash(digest)
    if existing is not None:
        return existing, False
    label = source or str(path)
    if kind == "ohlcv":
        bars = await asyncio.to_thread(read_ohlcv_csv, path)
        return await db.import_bars(symbol, label, bars, digest, owner), True
    ticks = await asyncio.to_thread(read_trades_csv, path)
    return await db.import_trades(symbol, label, ticks, digest, owner), True


async def ensure_samples(db: Database) -> list[Dataset]:
    """The sample datasets, imported on first use (idempotent: matched by content hash)."""
    out = []
    folder = resources.files("tradewire.engine") / "sample_data"
    for filename, symbol in SAMPLES:
        with resources.as_file(folder / filename) as path:
            dataset, created = await import_file(db, path, symbol, "ohlcv", f"sample:{filename}")
        if created:
            _log.info("datasets.sample_imported", dataset_id=dataset.id, symbol=symbol, rows=dataset.rows)
        out.append(dataset)
    return out
