"""Event bus: how the engine's events reach the gateway (in-process now, Redis later)."""
