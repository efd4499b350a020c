"""`tandem contacts forget EMAIL [--instance ID]`: ask every Tandem service to remove one contact from its stores.

Publishes an erasure request on tandem.erasure and returns once Kafka has it; each service applies it to its own
stores (the mapper: sync state, held changes, the writer's markers in Redis; the console: its trace store) and
acknowledges it with a trace record named by the request id, which the console shows. What stays in Kafka's other
topics until their retention ends is listed in docs/security.md ("Erasing a contact").
"""

from __future__ import annotations

import argparse
import getpass

from tandem_cli.common import (
    EXIT_CODES_HELP,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Unavailable,
    add_broker_option,
    fail,
    kafka_connection,
    run,
)
from tandem_shared.contracts import ErasureRequest
from tandem_shared.erasure import erasure_request, request_erasure
from tandem_shared.kafka import KafkaProducer
from tandem_shared.secrets import SecretUnavailable


async def _publish(args: argparse.Namespace, request: ErasureRequest) -> None:
    producer = KafkaProducer(kafka_connection(args))
    await producer.start()
    try:
        await request_erasure(producer, request)
    finally:
        await producer.stop()


def forget(args: argparse.Namespace) -> int:
    email = args.email.strip()
    if "@" not in email:
        return fail(f"{args.email!r} is not an email address", EXIT_USAGE)
    try:
        request = erasure_request(email, instance_id=args.instance, requested_by=f"cli:{getpass.getuser()}")
        request.contact  # noqa: B018 - the contact hash key must resolve before anything is published
        run(_publish(args, request), timeout=args.timeout, what="Kafka")
    except (Unavailable, SecretUnavailable) as exc:
        return fail(str(exc), EXIT_UNAVAILABLE)
    print(f"erasure request {request.request_id} published for {request.scope}")
    print("each service acknowledges it in the trace (stage 'erasure', execution id = the request id)")
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("contacts", help="one contact's data in Tandem's own stores")
    actions = parser.add_subparsers(dest="contacts_command", required=True)
    command = actions.add_parser(
        "forget",
        help="remove a contact from every Tandem store (an erasure request each service applies)",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("email", help="the contact's address")
    command.add_argument("--instance", help="only this instance's stores (default: every instance)")
    add_broker_option(command)
    command.set_defaults(handler=forget)
