"""Transport-agnostic core: connections, limits, routing and the connection lifecycle."""
