"""Transports: the standalone picows engine and the ASGI adapter, both thin over the core."""
