"""The embedded reference trading engine: market data, indicators, strategies, storage."""
