"""Wire protocol v1: message schemas, error codes and close codes (no I/O here)."""
