"""Authentication: JWT verification, permission levels, the users file."""
