"""Reconnect: saved client sessions, reconnect tokens, and the stores that keep them."""
