"""structlog set-up: event names like ``connection.opened`` with key/value context, console or JSON."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from tradewire.config import LogFormat


def configure_logging(fmt: LogFormat = LogFormat.CONSOLE, level: str = "info") -> None:
    """Route structlog (and stdlib logging of dependencies) to stderr in one format."""
    log_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    tail: list[Any] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if fmt is LogFormat.JSON
        else [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(log_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=max(log_level, logging.WARNING), stream=sys.stderr, format="%(name)s %(message)s"
    )
