"""Streams: catalog, subscriptions with filters, history with offsets, encode-once fan-out."""
