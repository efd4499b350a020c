"""`tandem report …`: what an operator needs to know about the data itself.

`duplicates INSTANCE` lists the accessplanit users who share an email address. Mailchimp keeps one contact per
address, so for each shared address the user changed last is the one Mailchimp shows (the seed's rule).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tandem_cli.common import (
    EXIT_CODES_HELP,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    Unavailable,
    add_broker_option,
    fail,
    kafka_connection,
    run,
)
from tandem_cli.vendors import vendor_clients
from tandem_shared.contracts import InstanceConfig, email_key
from tandem_shared.instance_store import read_instances
from tandem_shared.secrets import SecretUnavailable, resolve_secret
from tandem_shared.vendors.accessplanit.client import AccessplanitClient, AccessplanitError
from tandem_shared.vendors.priority import Priority

PAGE_SIZE = 500


@dataclass(frozen=True)
class SharedUser:
    id: str
    name: str
    updated: str


@dataclass(frozen=True)
class DuplicateGroup:
    email: str
    users: list[SharedUser]  # most recently updated first: that one wins in Mailchimp


def duplicate_groups(users: Iterable[Mapping[str, Any]]) -> list[DuplicateGroup]:
    """Users grouped by address (case-insensitive), only where an address is shared; newest change first."""
    by_email: dict[str, list[Mapping[str, Any]]] = {}
    for user in users:
        email = user.get("Email")
        if isinstance(email, str) and email.strip():
            by_email.setdefault(email_key(email), []).append(user)
    groups = []
    for email, members in sorted(by_email.items()):
        if len(members) < 2:
            continue
        ordered = sorted(members, key=lambda u: (str(u.get("DateUpdated") or ""), str(u.get("ID"))), reverse=True)
        groups.append(
            DuplicateGroup(
                email=email,
                users=[
                    SharedUser(
                        id=str(u.get("ID")),
                        name=" ".join(str(u.get(k) or "") for k in ("Forenames", "Surname")).strip(),
                        updated=str(u.get("DateUpdated") or ""),
                    )
                    for u in ordered
                ],
            )
        )
    return groups


async def fetch_users(client: AccessplanitClient, base_url: str) -> list[dict[str, Any]]:
    """Every user, page by page: a reconciliation read, so the services' live writes go first."""
    users: list[dict[str, Any]] = []
    skip = 0
    while True:
        try:
            page = await client.list_users(
                filter="",
                orderby="ID",
                top=PAGE_SIZE,
                skip=skip,
                select="ID,Email,Forenames,Surname,DateUpdated",
                action="read users",
                priority=Priority.RECONCILIATION,
            )
        except AccessplanitError as exc:
            if exc.status is None:
                reason = type(exc.__cause__).__name__ if exc.__cause__ else exc.error.error_class
                raise Unavailable(f"accessplanit at {base_url} could not be reached: {reason}") from exc
            raise Unavailable(f"accessplanit answered HTTP {exc.status} reading users") from exc
        users.extend(page)
        if len(page) < PAGE_SIZE:
            return users
        skip += PAGE_SIZE


async def _read_users(instance: InstanceConfig, api_key: str) -> list[dict[str, Any]]:
    async with vendor_clients(timeout_s=30.0) as clients:
        client = clients.accessplanit.for_tenant(instance.accessplanit.base_url, api_key)
        return await fetch_users(client, instance.accessplanit.base_url.rstrip("/"))


def render(instance: InstanceConfig, groups: list[DuplicateGroup]) -> str:
    if not groups:
        return f"No two accessplanit users share an email address (instance '{instance.id}')."
    lines = [
        f"{len(groups)} email address(es) are shared by more than one accessplanit user (instance '{instance.id}').",
        "Mailchimp keeps one contact per address: the user changed last is the one Mailchimp shows.",
    ]
    for group in groups:
        lines.append("")
        lines.append(f"{group.email}  ({len(group.users)} users)")
        for index, user in enumerate(group.users):
            marker = "  ← changed last: in Mailchimp" if index == 0 else ""
            lines.append(f"  {user.id:<10} {user.name or '(no name)':<32} updated {user.updated}{marker}")
    return "\n".join(lines)


def cmd_duplicates(args: argparse.Namespace) -> int:
    try:
        instance = run(read_instances(kafka_connection(args)), timeout=args.timeout, what="Kafka").get(args.instance)
        if instance is None:
            return fail(f"no instance '{args.instance}'", EXIT_NOT_FOUND)
        try:
            api_key = resolve_secret(instance.accessplanit.api_key)
        except SecretUnavailable as exc:
            return fail(f"the instance's accessplanit key is unavailable here: {exc}", EXIT_UNAVAILABLE)
        users = run(_read_users(instance, api_key), timeout=args.timeout * 10, what="accessplanit")
    except Unavailable as exc:
        return fail(str(exc), EXIT_UNAVAILABLE)
    groups = duplicate_groups(users)
    if args.json:
        print(json.dumps({"instance": instance.id, "shared": [asdict(g) for g in groups]}, indent=2))
    else:
        print(render(instance, groups))
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "report",
        help="reports about the synced data",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reports = parser.add_subparsers(dest="report", required=True)
    duplicates = reports.add_parser(
        "duplicates",
        help="accessplanit users who share an email address (one Mailchimp contact for all of them)",
        description="Reads every user through the instance's accessplanit API key and lists the addresses "
        "several users share. Mailchimp keeps one contact per address: the user changed last wins.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    duplicates.add_argument("instance", help="the instance id")
    duplicates.add_argument("--json", action="store_true", help="machine-readable output")
    add_broker_option(duplicates)
    duplicates.set_defaults(handler=cmd_duplicates)
