"""Storage of data collections: their records, and the batched appends to their datasets.

A view of :class:`~tradewire.engine.storage.database.Database` for
:mod:`tradewire.engine.collection`. Each append is one transaction: the trade rows, each
dataset's row count and time range, the removal of its (now stale) columnar copy, and the
collection's counters, so a crash leaves datasets and records that agree with each other.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import case, delete, insert, select, update

from tradewire.engine.storage.database import Database, store_columns
from tradewire.engine.storage.schema import collections, dataset_columns, datasets, trades

Row = tuple[int, float, float, float, float | None, float | None]  # dataset id, ts, price, volume, bid, ask
_UNFINISHED = ("running", "stopping")


class CollectionStorage:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, record: dict[str, Any], source: str) -> dict[str, int]:
        """One empty trade-tick dataset per symbol and the collection's record, in one transaction;
        returns ``{symbol: dataset id}``."""
        mapping: dict[str, int] = {}
        async with self._db.engine.begin() as conn:
            for symbol in record["symbols"]:
                result = await conn.execute(
                    insert(datasets).values(
                        symbol=symbol,
                        kind="trades",
                        source=source,
                        created_at=time.time(),
                        rows=0,
                        owner=record["owner"],
                    )
                )
                key = result.inserted_primary_key
                assert key is not None
                mapping[symbol] = int(key[0])
            await conn.execute(insert(collections).values(**{**record, "datasets": mapping}))
        return mapping

    async def append(self, collection_id: str, rows: Sequence[Row], written: int, dropped: int) -> None:
        """Commit ``rows`` and the counters that include them (see the module docstring)."""
        spans: dict[int, tuple[int, float, float]] = {}  # dataset → rows, first ts, last ts
        for dataset_id, ts, *_ in rows:
            n, lo, hi = spans.get(dataset_id, (0, ts, ts))
            spans[dataset_id] = (n + 1, min(lo, ts), max(hi, ts))
        values = [
            {"dataset_id": d, "ts": ts, "price": price, "volume": volume, "bid": bid, "ask": ask}
            for d, ts, price, volume, bid, ask in rows
        ]
        async with self._db.engine.begin() as conn:
            await conn.execute(insert(trades), values)
            for dataset_id, (n, lo, hi) in spans.items():
                c = datasets.c
                await conn.execute(
                    update(datasets)
                    .where(c.id == dataset_id)
                    .values(
                        rows=c.rows + n,
                        start_ts=case((c.start_ts.is_(None), lo), (c.start_ts > lo, lo), else_=c.start_ts),
                        end_ts=case((c.end_ts.is_(None), hi), (c.end_ts < hi, hi), else_=c.end_ts),
                    )
                )
            await conn.execute(delete(dataset_columns).where(dataset_columns.c.dataset_id.in_(list(spans))))
            await conn.execute(
                update(collections)
                .where(collections.c.id == collection_id)
                .values(written=written, dropped=dropped)
            )

    async def finish(self, dataset_ids: Iterable[int]) -> None:
        """Build each dataset's columnar copy and content hash (SHA-256 of the copy), so the first
        backtest reads one blob."""
        for dataset_id in dataset_ids:
            dataset = await self._db.dataset(dataset_id)
            columns = await self._db.read_rows(dataset_id)
            blob = columns.pack()
            digest = hashlib.sha256(f"{dataset.kind}\n{dataset.symbol}\n".encode() + blob).hexdigest()
            async with self._db.engine.begin() as conn:
                if len(columns):
                    await store_columns(conn, dataset_id, columns)
                await conn.execute(update(datasets).where(datasets.c.id == dataset_id).values(sha256=digest))

    async def update(self, collection_id: str, record: dict[str, Any]) -> None:
        fields = {k: v for k, v in record.items() if k not in ("id", "owner")}
        async with self._db.engine.begin() as conn:
            await conn.execute(update(collections).where(collections.c.id == collection_id).values(**fields))

    async def get(self, collection_id: str) -> dict[str, Any] | None:
        query = select(collections).where(collections.c.id == collection_id)
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return dict(row) if row is not None else None

    async def list(self, owner: str | None, limit: int) -> list[dict[str, Any]]:
        """Newest first; every owner's when ``owner`` is None (admins)."""
        query = select(collections).order_by(collections.c.created_at.desc(), collections.c.id).limit(limit)
        if owner is not None:
            query = query.where(collections.c.owner == owner)
        async with self._db.engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings().all()]

    async def interrupt_unfinished(self, now: float) -> int:
        """Collections a previous process left running are ``interrupted`` (returns how many)."""
        async with self._db.engine.begin() as conn:
            result = await conn.execute(
                update(collections)
                .where(collections.c.status.in_(_UNFINISHED))
                .values(status="interrupted", ended_at=now)
            )
        return int(result.rowcount or 0)
