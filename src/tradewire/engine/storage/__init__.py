"""Persistence of the reference engine: SQLite by default, PostgreSQL through the same code."""
