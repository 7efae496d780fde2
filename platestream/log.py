"""structlog set-up, done once by the entry point: JSON lines in services, readable on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "json", "console"]


def configure_logging(level: str = "INFO", fmt: LogFormat = "auto") -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(message)s")
    # kafka-python warns about transient states (a topic's metadata not there yet, a slow poll);
    # its errors still show, and all of it at DEBUG.
    logging.getLogger("kafka").setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.ERROR)
    # Its connection errors repeat what platestream reports itself, once and with what to do: a
    # cluster that cannot be reached (commands) or a broker that went away (services' own
    # `kafka_error` lines, and /readyz). They show at DEBUG.
    logging.getLogger("kafka.net").setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.CRITICAL)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
