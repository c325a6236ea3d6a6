"""Two example strategies installed on the first start, so a new user sees signals at once.

Both run on the synthetic feed's symbols (ticks every 0.25 s): the RSI mean-reversion one
signals within a minute of ``make run``; the pump detector waits for the feed's occasional pumps.
"""

from __future__ import annotations

from typing import Any

SYNTHETIC_SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]


def _condition(cid: str, indicator: str, op: str, value: float, **params: Any) -> dict[str, Any]:
    return {"id": cid, "indicatorId": indicator, "operator": op, "value": value, "params": params}


PUMP_DETECTOR: dict[str, Any] = {
    "strategy_name": "pump_detector",
    "description": "Ride a pump: price up over a minute on surging volume; leave when it fades.",
    "direction": "LONG",
    "symbols": SYNTHETIC_SYMBOLS,
    "enabled": True,
    "s1_signal": {
        "conditions": [
            _condition("pump", "pump_magnitude_pct", ">", 1.0, window_seconds=60),
            _condition(
                "volume", "volume_surge_ratio", ">", 1.5, short_window_seconds=15, long_window_seconds=300
            ),
        ]
    },
    "z1_entry": {
        "conditions": [_condition("rising", "price_velocity", ">", 0.0, window_seconds=10)],
        "positionSize": {"type": "percentage", "value": 5},
        "stopLoss": {"offsetPercent": 1.0},
        "takeProfit": {"offsetPercent": 3.0},
        "leverage": 2,
    },
    "ze1_close": {
        "conditions": [_condition("below_twpa", "price_to_twpa_ratio", "<", 0.998, window_seconds=120)]
    },
    "o1_cancel": {"conditions": [], "timeoutSeconds": 30},
    "emergency_exit": {
        "conditions": [_condition("wide_spread", "spread_pct", ">", 1.0)],
        "cooldownMinutes": 5,
        "actions": ["close_position", "cancel_orders", "notify"],
    },
}

RSI_MEAN_REVERSION: dict[str, Any] = {
    "strategy_name": "rsi_mean_reversion",
    "description": "Buy an oversold dip once RSI turns up; sell back near the middle.",
    "direction": "LONG",
    "symbols": SYNTHETIC_SYMBOLS,
    "enabled": True,
    "s1_signal": {"conditions": [_condition("oversold", "rsi", "<", 30.0, period=14)]},
    "z1_entry": {
        "conditions": [_condition("turning", "rsi", ">", 35.0, period=14)],
        "positionSize": {"type": "fixed", "value": 100},
        "stopLoss": {"offsetPercent": 1.5},
        "takeProfit": {"offsetPercent": 2.0},
        "leverage": 1,
    },
    "ze1_close": {"conditions": [_condition("recovered", "rsi", ">", 55.0, period=14)]},
    "o1_cancel": {"conditions": [], "timeoutSeconds": 120},
    "emergency_exit": {
        "conditions": [_condition("crash", "price_velocity", "<", -0.2, window_seconds=10)],
        "cooldownMinutes": 2,
        "actions": ["close_position", "notify"],
    },
}

EXAMPLES: tuple[dict[str, Any], ...] = (PUMP_DETECTOR, RSI_MEAN_REVERSION)
