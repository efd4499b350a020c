"""Logging set-up shared by every service: one line per record on stdout (JSON by default), secrets masked.

structlog's own loggers and the standard library's (uvicorn, FastStream, aiokafka, httpx, …) end in the same
renderer: stdlib records go through structlog's `ProcessorFormatter` on the root handler, so a service never
prints a plain-text line beside its JSON ones.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

from tandem_shared.redaction import redact

# Libraries that install handlers of their own (uvicorn's log config, FastStream at import): their records must
# reach the root handler instead, or they are printed a second time, as plain text.
OWN_HANDLER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream")
# httpx and httpcore log every request at INFO with its full URL, and Mailchimp's member URLs carry emails.
QUIET_LOGGERS = ("httpx", "httpcore")


def _redact_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    masked: Mapping[str, Any] = redact(event_dict)
    return masked


def _renderer(json: bool) -> Processor:
    return structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()


def stdlib_formatter(json: bool = True) -> structlog.stdlib.ProcessorFormatter:
    """Renders a stdlib record as structlog renders its own lines: the same fields, masking and renderer."""
    foreign: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json:
        # The console renderer prints tracebacks itself; JSON needs them as a string field.
        final.append(structlog.processors.format_exc_info)
    final += [_redact_processor, _renderer(json)]
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=foreign, processors=final)


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """The one handler configure_logging installs (a class of its own, so a second call can find and replace it)."""


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    handler = _StdoutHandler(sys.stdout)
    handler.setFormatter(stdlib_formatter(json))
    root = logging.getLogger()
    for previous in [h for h in root.handlers if isinstance(h, _StdoutHandler)]:
        root.removeHandler(previous)  # configured again (tests build several apps): replaced, not doubled
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in OWN_HANDLER_LOGGERS:
        own = logging.getLogger(name)
        for old in list(own.handlers):
            own.removeHandler(old)
        own.propagate = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            _renderer(json),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # The same stdout as the stdlib lines, whatever was configured before (the CLI's stderr, in tests).
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        # Not cached: module-level loggers must follow a later configure() (the CLI quiets them after import).
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
