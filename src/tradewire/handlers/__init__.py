"""Message handlers: one class per concern, dependencies injected through the constructor."""
