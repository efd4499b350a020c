"""`tandem contacts forget EMAIL [--instance ID]`: ask every Tandem service to remove one contact from its stores.

Publishes an erasure request on tandem.erasure and returns once Kafka has it; each service applies it to its own
stores (the mapper: sync state, held changes, user links; the writer: its markers in Redis; the console: its trace
store; ingest holds nothing named by the contact) and acknowledges it with a trace record named by the request id,
which the console shows. With --wait SECONDS the command waits for the acknowledgement of every service (ingest,
mapper, writer, console), prints what each removed, and exits 4 naming the services that did not acknowledge in
time. What stays in Kafka's other topics until their retention ends is listed in docs/security.md ("Erasing a
contact").
"""

from __future__ import annotations

import argparse
import getpass

from tandem_cli.audit import audited
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
from tandem_shared.contracts import ERASURE_SERVICES, ErasureAcknowledgement, ErasureRequest
from tandem_shared.erasure import AcknowledgementWaiter, erasure_request, request_erasure
from tandem_shared.kafka import KafkaProducer
from tandem_shared.secrets import SecretUnavailable


async def _publish(args: argparse.Namespace, request: ErasureRequest) -> None:
    producer = KafkaProducer(kafka_connection(args))
    await producer.start()
    try:
        await request_erasure(producer, request)
    finally:
        await producer.stop()


async def _publish_and_wait(args: argparse.Namespace, request: ErasureRequest) -> dict[str, ErasureAcknowledgement]:
    # Reading the trace from where it ends before the request exists: no acknowledgement can be missed.
    waiter = AcknowledgementWaiter(kafka_connection(args))
    await waiter.start()
    try:
        await _publish(args, request)
        return await waiter.wait(request.request_id, args.wait)
    finally:
        await waiter.stop()


def forget(args: argparse.Namespace) -> int:
    email = args.email.strip()
    if "@" not in email:
        return fail(f"{args.email!r} is not an email address", EXIT_USAGE)
    try:
        request = erasure_request(email, instance_id=args.instance, requested_by=f"cli:{getpass.getuser()}")
        request.contact  # noqa: B018 - the contact hash key must resolve before anything is published
        if args.wait is None:
            run(_publish(args, request), timeout=args.timeout, what="Kafka")
        else:
            acks = run(_publish_and_wait(args, request), timeout=args.timeout + args.wait, what="Kafka")
    except (Unavailable, SecretUnavailable) as exc:
        return fail(str(exc), EXIT_UNAVAILABLE)
    print(f"erasure request {request.request_id} published for {request.scope}")
    if args.wait is None:
        print("each service acknowledges it in the trace (stage 'erasure', execution id = the request id)")
        return EXIT_OK
    for service in ERASURE_SERVICES:
        if service in acks:
            removed = ", ".join(f"{n} {what}" for what, n in acks[service].removed.items()) or "nothing"
            print(f"  {service}: acknowledged, removed {removed}")
    missing = [service for service in ERASURE_SERVICES if service not in acks]
    if missing:
        return fail(f"no acknowledgement within {args.wait:.0f}s from: {', '.join(missing)}", EXIT_UNAVAILABLE)
    print("every service acknowledged")
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
    command.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to SECONDS for every service's acknowledgement (exit 4 naming those missing)",
    )
    add_broker_option(command)
    command.set_defaults(handler=forget)
    # The address is not kept in the audit record: the erasure request's id and keyed hash say which contact it was.
    audited(command, "forget_contact", lambda a: ("contacts forget (address not kept)", a.instance))
