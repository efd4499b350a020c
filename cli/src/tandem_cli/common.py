"""What the `tandem` sub-commands share: exit codes, the broker option, and running async work with a deadline."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable
from typing import TypeVar

from aiokafka.errors import KafkaError

from tandem_shared.kafka import KafkaConnection

EXIT_OK = 0
EXIT_INVALID = 1  # the configuration (or the data asked for) is not valid; nothing was changed
EXIT_USAGE = 2  # bad arguments, or a file that cannot be read or parsed
EXIT_NOT_FOUND = 3  # no such instance
EXIT_UNAVAILABLE = 4  # Kafka, Redis, a vendor API or a secret could not be reached

EXIT_CODES_HELP = """exit codes:
  0  done (or nothing to do)
  1  invalid configuration: nothing was applied
  2  usage error, or the file cannot be read or parsed
  3  no such instance
  4  Kafka, Redis, a vendor API or a secret is unavailable"""

T = TypeVar("T")


class Unavailable(RuntimeError):
    """Something Tandem depends on did not answer; the message says what."""


def add_broker_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for Kafka (default 30)")


def kafka_connection(args: argparse.Namespace) -> KafkaConnection:
    """The broker `add_broker_option` named."""
    return KafkaConnection.from_env("tandem-cli", args.bootstrap_servers)


def run(awaitable: Awaitable[T], *, timeout: float, what: str) -> T:
    """Run `awaitable`; a broker that does not answer within `timeout` becomes `Unavailable`."""

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(awaitable, timeout=timeout)
        except TimeoutError as exc:
            raise Unavailable(f"{what} did not answer within {timeout:.0f}s") from exc
        except (KafkaError, OSError, LookupError) as exc:
            raise Unavailable(f"{what}: {exc or type(exc).__name__}") from exc

    return asyncio.run(bounded())


def fail(message: str, code: int) -> int:
    print(f"tandem: {message}", file=sys.stderr)
    return code
