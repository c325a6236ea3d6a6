"""The ``config`` of ``session_start``: one typed schema, unknown keys refused.

Validated into :class:`SessionConfig` before anything starts; every problem is reported at once
as ``{path, message}`` (``InvalidSessionConfig``), never spread into calls. Shapes and units:

========================  ========================================================================
``dataset_id``            backtest: the stored dataset to replay (its symbol must be the one
                          traded); or ``datasets``: ``{symbol: dataset_id}`` for several symbols
``initial_capital``       account currency, > 0 (default 10,000)
``fee_bps``               fee per side on notional, basis points, 0–1000 (default 0)
``slippage_bps``          fill price worsened per side, basis points, 0–1000 (default 0)
``whole_units``           floor position sizes to whole units (backtesting.py's rule; default false)
``acceleration_factor``   backtest: data seconds per wall second (e.g. 3600 = an hour per second);
                          absent = as fast as possible
``close_at_end``          backtest: close open positions at the last close (default true)
``stream_events``         publish signals, state changes, orders and positions on the streams
                          (default: true, except for as-fast-as-possible backtests)
``max_duration_seconds``  paper/live: stop by itself after this long (default: until stopped)
``max_position_notional`` live: refuse an entry whose notional (units × price, quote currency)
                          is larger (default: no limit)
``max_orders_per_minute`` live: refuse an entry when this many orders went out in the last 60 s
                          (exits are never refused; they count) (default: no limit)
========================  ========================================================================
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from tradewire.errors import InvalidSessionConfig

_Bps = Annotated[float, msgspec.Meta(ge=0, le=1000)]
_DatasetId = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
_Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class SessionConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    dataset_id: _DatasetId | None = None
    datasets: Annotated[dict[_Symbol, _DatasetId], msgspec.Meta(max_length=100)] | None = None
    initial_capital: Annotated[float, msgspec.Meta(gt=0, le=1e15)] = 10_000.0
    fee_bps: _Bps = 0.0
    slippage_bps: _Bps = 0.0
    whole_units: bool = False
    acceleration_factor: Annotated[float, msgspec.Meta(gt=0, le=1e12)] | None = None
    close_at_end: bool = True
    stream_events: bool | None = None
    max_duration_seconds: Annotated[float, msgspec.Meta(gt=0, le=366 * 86400)] | None = None
    max_position_notional: Annotated[float, msgspec.Meta(gt=0, le=1e15)] | None = None
    max_orders_per_minute: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None

    def streams_events(self, session_type: str) -> bool:
        """Whether this session publishes its signals, orders and positions live."""
        if self.stream_events is not None:
            return self.stream_events
        return session_type != "backtest" or self.acceleration_factor is not None


def parse_config(raw: dict[str, Any]) -> SessionConfig:
    """The typed config; :class:`InvalidSessionConfig` naming the path of the problem."""
    try:
        return msgspec.convert(raw, SessionConfig)
    except msgspec.ValidationError as exc:
        reason, _, where = str(exc).partition(" - at ")
        path = "config" + where.strip("`").removeprefix("$")
        unknown = reason.removeprefix("Object contains unknown field ")
        if unknown != reason:
            path += "." + unknown.strip("`")
            reason = "unknown field"
        raise InvalidSessionConfig([{"path": path, "message": reason}]) from exc
