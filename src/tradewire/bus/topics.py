"""Every event-bus topic name, in one place (the engine publishes them, the bridge maps them).

Topics are dotted: ``<area>.<event>``. The bridge (:mod:`tradewire.streams.bridge`) turns them
into client streams by pattern (``execution.*`` → ``execution_status``); engines and tests use
these constants instead of string literals so a rename cannot leave a publisher behind.
"""

from __future__ import annotations

from typing import Final

# Market data (sources → engine and ``market_data``)
MARKET_PRICE_UPDATE: Final = "market.price_update"
MARKET_ORDERBOOK_UPDATE: Final = "market.orderbook_update"
MARKET_ALL: Final = "market.*"

# Strategies (→ ``indicators``, ``signals``, ``state_machines``)
INDICATOR_UPDATED: Final = "indicator.updated"
SIGNAL_GENERATED: Final = "signal_generated"
STRATEGY_STATE_CHANGED: Final = "strategy.state_changed"

# Sessions (→ ``execution_status``, ``execution_result``, ``orders``, ``positions``)
EXECUTION_STARTED: Final = "execution.started"
EXECUTION_PROGRESS: Final = "execution.progress"
EXECUTION_STOPPING: Final = "execution.stopping"
EXECUTION_COMPLETED: Final = "execution.completed"
EXECUTION_STOPPED: Final = "execution.stopped"
EXECUTION_FAILED: Final = "execution.failed"
EXECUTION_INTERRUPTED: Final = "execution.interrupted"
SESSION_RESULT: Final = "session.result"
ORDER_SUBMITTED: Final = "order.submitted"
ORDER_FILLED: Final = "order.filled"
ORDER_CANCELLED: Final = "order.cancelled"
ORDER_REJECTED: Final = "order.rejected"
POSITION_OPENED: Final = "position.opened"
POSITION_CLOSED: Final = "position.closed"

# Operator alerts (→ ``health_check``), e.g. an emergency exit with the ``notify`` action
ALERT_STRATEGY_EMERGENCY: Final = "health.strategy_emergency"
ALERT_EXCHANGE_DISCONNECTED: Final = "health.exchange_disconnected"  # polls failing: live orders unwatched
ALERT_EXCHANGE_RECONNECTED: Final = "health.exchange_reconnected"  # back, reconciled (strays listed)
ALERT_LIVE_POSITION_LEFT_OPEN: Final = (
    "health.live_position_left_open"  # a stopped live session could not flatten
)
