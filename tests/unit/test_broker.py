"""The simulated broker, bar by bar, with numbers checked by hand."""

from __future__ import annotations

import pytest

from tradewire.engine.broker import Costs, EntrySpec, Order, OrderStatus, Position, SimulatedBroker, Trade

PAIR = ("s", "X")
NO_COSTS = Costs()


class Listener:
    """Records what the broker tells a pair's state machine."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def entry_filled(self, position: Position) -> None:
        self.events.append(("filled", position))

    def entry_rejected(self, order: Order) -> None:
        self.events.append(("rejected", order))

    def position_closed(self, trade: Trade) -> None:
        self.events.append(("closed", trade))


def _broker(spec: EntrySpec, costs: Costs = NO_COSTS, **kwargs: object) -> tuple[SimulatedBroker, Listener]:
    broker = SimulatedBroker(10_000.0, costs, **kwargs)  # type: ignore[arg-type]
    listener = Listener()
    broker.attach(PAIR, listener, spec)
    return broker, listener


def _bars(broker: SimulatedBroker, bars: list[tuple[float, float, float, float]], start: int = 1) -> None:
    for index, (o, h, low, c) in enumerate(bars, start=start):
        broker.on_bar("X", float(index), o, h, low, c, index)


def test_one_trade_with_fees_by_hand() -> None:
    """Fixed notional 1,000, whole units, 10 bp fees: decided on bar 1, filled at bar 2's open,
    exit decided on bar 2, filled at bar 3's open."""
    broker, listener = _broker(EntrySpec(1, "fixed", 1_000.0), Costs(fee_bps=10), whole_units=True)
    _bars(broker, [(100, 101, 99, 100)])
    broker.submit_entry(PAIR, 1.0, 100.0)
    _bars(broker, [(100, 106, 99.5, 105)], start=2)
    position = broker.position(PAIR)
    assert position is not None
    assert (position.units, position.entry_price, position.entry_fee) == (9, 100.0, 0.9)  # 1000 // 100.1
    assert broker.cash == pytest.approx(9_999.1)
    assert broker.equity() == pytest.approx(9_999.1 + 9 * 5)
    broker.submit_exit(PAIR, 2.0, 105.0, "ze1_close conditions met")
    _bars(broker, [(106, 107, 105, 106.5)], start=3)
    (trade,) = broker.trades
    assert (trade.entry_price, trade.exit_price, trade.entry_index, trade.exit_index) == (100.0, 106.0, 2, 3)
    assert trade.fees == pytest.approx(0.9 + 0.954)
    assert trade.pnl == pytest.approx(54 - 0.9 - 0.954)
    assert trade.return_pct == pytest.approx((0.06 - 1.854 / 900) * 100)
    assert broker.cash == pytest.approx(10_000 + 54 - 0.9 - 0.954)
    assert [kind for kind, _ in listener.events] == ["filled", "closed"]
    assert [(o.kind.value, o.status.value, o.fill_price) for o in broker.orders] == [
        ("entry", "filled", 100.0),
        ("exit", "filled", 106.0),
    ]


def test_slippage_worsens_both_fills() -> None:
    broker, _ = _broker(EntrySpec(1, "fixed", 1_000.0), Costs(fee_bps=10, slippage_bps=10), whole_units=True)
    broker.submit_entry(PAIR, 0.0, 100.0)
    _bars(broker, [(100, 101, 99, 100)])
    broker.submit_exit(PAIR, 1.0, 100.0, "exit")
    _bars(broker, [(106, 107, 105, 106)], start=2)
    (trade,) = broker.trades
    assert trade.units == 9  # 1000 // (100.1 + 0.1)
    assert trade.entry_price == pytest.approx(100.1)
    assert trade.exit_price == pytest.approx(105.894)
    assert trade.pnl == pytest.approx(9 * (105.894 - 100.1) - 9 * 100.1 * 0.001 - 9 * 105.894 * 0.001)


LONG = EntrySpec(1, "fixed", 1_000.0, stop_loss_pct=2.0, take_profit_pct=5.0)  # stop 98, target 105
SHORT = EntrySpec(-1, "fixed", 1_000.0, stop_loss_pct=2.0, take_profit_pct=5.0)  # stop 102, target 95


@pytest.mark.parametrize(
    ("spec", "bar", "reason", "price"),
    [
        (LONG, (99, 100, 97.5, 99), "stop_loss", 98.0),  # touched inside the bar: at the level
        (LONG, (96, 97, 95, 96.5), "stop_loss", 96.0),  # gapped through: at the open
        (LONG, (101, 106, 100.5, 104), "take_profit", 105.0),
        (LONG, (107, 108, 106, 107), "take_profit", 107.0),  # gapped beyond the target: at the open
        (LONG, (101, 106, 97, 100), "stop_loss", 98.0),  # both touched: the stop first
        (SHORT, (101, 102.5, 100.5, 101), "stop_loss", 102.0),
        (SHORT, (103, 104, 102.5, 103), "stop_loss", 103.0),
        (SHORT, (99, 99.5, 94, 96), "take_profit", 95.0),
        (SHORT, (94, 94.5, 93, 94), "take_profit", 94.0),
        (SHORT, (99, 103, 94, 99), "stop_loss", 102.0),
    ],
)
def test_brackets_bar_by_bar(spec: EntrySpec, bar: tuple[float, ...], reason: str, price: float) -> None:
    broker, _ = _broker(spec)
    broker.submit_entry(PAIR, 0.0, 100.0)
    _bars(broker, [(100, 100, 100, 100)])  # the entry fills at 100 on a quiet bar
    _bars(broker, [bar], start=2)  # type: ignore[list-item]
    (trade,) = broker.trades
    assert (trade.exit_reason, trade.exit_price, trade.exit_index) == (reason, price, 2)


def test_a_stop_can_fill_in_the_bar_the_entry_filled() -> None:
    """backtesting.py reprocesses brackets after a market entry: the entry bar's low counts."""
    broker, listener = _broker(LONG)
    broker.submit_entry(PAIR, 0.0, 100.0)
    _bars(broker, [(100, 100.5, 97, 99)])
    (trade,) = broker.trades
    assert (trade.entry_index, trade.exit_index, trade.exit_price) == (1, 1, 98.0)
    assert [kind for kind, _ in listener.events] == ["filled", "closed"]


def test_percentage_sizes_use_the_margin_left_and_leverage() -> None:
    broker = SimulatedBroker(10_000.0)
    listeners = [Listener() for _ in range(3)]
    broker.attach(("a", "X"), listeners[0], EntrySpec(1, "percentage", 50, leverage=2))
    broker.attach(("b", "Y"), listeners[1], EntrySpec(1, "percentage", 100))
    broker.attach(("c", "Z"), listeners[2], EntrySpec(1, "fixed", 20_000))
    for pair, symbol in ((("a", "X"), "X"), (("b", "Y"), "Y"), (("c", "Z"), "Z")):
        broker.submit_entry(pair, 0.0, 100.0)
        broker.on_bar(symbol, 1.0, 100, 100, 100, 100, 1)
    positions = {p.pair[0]: p.units for p in broker.open_positions()}
    assert positions == {"a": 100.0, "b": 50.0}  # 10k × 2 × 50 %; then the 5k of margin left
    rejected = listeners[2].events[0][1]
    assert isinstance(rejected, Order)
    assert (rejected.status, rejected.note) == (OrderStatus.REJECTED, "insufficient margin")


def test_an_order_that_rounds_to_zero_units_is_rejected() -> None:
    broker, listener = _broker(EntrySpec(1, "fixed", 50.0), whole_units=True)
    broker.submit_entry(PAIR, 0.0, 100.0)
    _bars(broker, [(100, 100, 100, 100)])
    assert listener.events[0][0] == "rejected"
    assert broker.open_positions() == []


def test_equity_at_zero_liquidates_and_stops_trading() -> None:
    broker, _ = _broker(EntrySpec(1, "percentage", 100, leverage=10))
    broker.submit_entry(PAIR, 0.0, 100.0)
    _bars(broker, [(100, 100, 100, 100), (95, 95, 89, 89)])
    assert broker.equity() == pytest.approx(10_000 - 1_000 * 11)
    broker.liquidate(2.0)
    assert broker.bankrupt and broker.cash == 0.0
    assert broker.trades[-1].exit_reason == "out_of_money"
    assert broker.submit_entry(PAIR, 3.0, 89.0) is None


def test_trade_on_close_fills_at_once_and_cancel_and_close_all() -> None:
    broker, listener = _broker(EntrySpec(1, "fixed", 1_000.0), trade_on_close=True)
    broker.submit_entry(PAIR, 1.0, 100.0)
    assert listener.events[0][0] == "filled"
    broker.mark("X", 110.0)
    broker.close_all(2.0, "end_of_data")
    assert broker.trades[0].exit_price == 110.0 and broker.trades[0].exit_reason == "end_of_data"
    queued, _ = _broker(EntrySpec(1, "fixed", 1_000.0))
    queued.submit_entry(PAIR, 1.0, 100.0)
    assert queued.cancel_pending(PAIR, "deactivated")
    _bars(queued, [(100, 100, 100, 100)])
    assert queued.open_positions() == [] and queued.orders[0].status is OrderStatus.CANCELLED
