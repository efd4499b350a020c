"""`tandem webhooks register|list INSTANCE`: the instance's Mailchimp audience webhook, pointing at ingest.

Mailchimp shows a webhook's signing secret once, in the answer to its creation. `register` hands it to the operator
without ever logging it: written to a file (mode 0600), or printed as a `kubectl` command on stdout. It then points
the instance's `mailchimp.webhook_signing_secret` at where the services will read it, so ingest verifies every
delivery's X-Mailchimp-Signature.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from tandem_cli.audit import audited
from tandem_cli.vendors import vendor_clients
from tandem_shared.contracts import InstanceConfig, MailchimpConnection
from tandem_shared.instance_store import put_instance, read_instances
from tandem_shared.kafka import KafkaConnection
from tandem_shared.secrets import SecretUnavailable, resolve_secret
from tandem_shared.settings import CommonSettings
from tandem_shared.vendors.mailchimp.bodies import webhook_body
from tandem_shared.vendors.mailchimp.client import MailchimpClient, MailchimpError
from tandem_shared.vendors.priority import Priority

KUBECTL_SECRET_KEY = "mailchimp-webhook-signing-secret"


class RegistrationError(RuntimeError):
    """Mailchimp refused, or the instance cannot be registered; the message is safe to show (no secrets)."""


@dataclass(frozen=True)
class Registration:
    webhook_id: str
    created: bool
    signing_secret: str | None = None


def webhook_url(public_url: str, instance_id: str, path_secret: str) -> str:
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RegistrationError(f"--public-url must be an http(s) URL, got {public_url!r}")
    return f"{public_url.rstrip('/')}/webhooks/mailchimp/{instance_id}/{path_secret}"


def masked(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class MailchimpWebhooks:
    """The audience's webhooks through the Mailchimp client. Operator calls an operator waits for: after live
    writes, before reconciliation."""

    def __init__(self, client: MailchimpClient, connection: MailchimpConnection) -> None:
        self._client = client
        self._audience = connection.audience_id
        self._path_secret: str | None = None

    def hide(self, path_secret: str) -> None:
        self._path_secret = path_secret

    async def _request(self, method: str, path: str, *, json: Any = None) -> Any:
        try:
            reply = await self._client.request(method, path, json=json, priority=Priority.AUTHORITATIVE_READ)
        except MailchimpError as exc:
            if exc.status is None:
                reason = type(exc.__cause__).__name__ if exc.__cause__ else exc.error.error_class
                raise RegistrationError(f"Mailchimp could not be reached: {reason}") from exc
            problem = exc.problem
            detail = f"{problem.get('title')}: {problem.get('detail')}" if problem else f"HTTP {exc.status}"
            raise RegistrationError(f"Mailchimp refused {method} {path}: {masked(detail, self._path_secret)}") from exc
        return reply.document

    async def audience(self) -> dict[str, Any]:
        return dict(await self._request("GET", f"/lists/{self._audience}"))

    async def webhooks(self) -> list[dict[str, Any]]:
        return list((await self._request("GET", f"/lists/{self._audience}/webhooks")).get("webhooks", []))

    async def create(self, url: str) -> dict[str, Any]:
        return dict(await self._request("POST", f"/lists/{self._audience}/webhooks", json=webhook_body(url)))

    async def delete(self, webhook_id: str) -> None:
        await self._request("DELETE", f"/lists/{self._audience}/webhooks/{webhook_id}")


async def _create_unless_present(api: MailchimpWebhooks, url: str, path_secret: str, *, replace: bool) -> Registration:
    """Creates the webhook unless one with this URL exists; `replace` recreates it (a new signing secret)."""
    api.hide(path_secret)
    existing = [hook for hook in await api.webhooks() if hook.get("url") == url]
    if existing and not replace:
        return Registration(str(existing[0]["id"]), created=False)
    for hook in existing:
        await api.delete(str(hook["id"]))
    created = await api.create(url)
    return Registration(str(created["id"]), created=True, signing_secret=created.get("signing_secret") or None)


@asynccontextmanager
async def _webhooks_api(connection: MailchimpConnection, api_key: str) -> AsyncIterator[MailchimpWebhooks]:
    async with vendor_clients(timeout_s=30.0) as clients:
        client = clients.mailchimp.for_account(connection.api_root(api_key), api_key)
        yield MailchimpWebhooks(client, connection)


async def _register(
    instance: InstanceConfig, api_key: str, url: str, path_secret: str, *, replace: bool
) -> Registration:
    async with _webhooks_api(instance.mailchimp, api_key) as api:
        for warning in audience_warnings(instance, await api.audience()):
            _say(f"warning: {warning}")
        return await _create_unless_present(api, url, path_secret, replace=replace)


def register_webhook(
    connection: MailchimpConnection, api_key: str, url: str, path_secret: str, *, replace: bool = False
) -> Registration:
    """Creates the webhook unless one with this URL exists; `replace` recreates it (a new signing secret)."""

    async def create() -> Registration:
        async with _webhooks_api(connection, api_key) as api:
            return await _create_unless_present(api, url, path_secret, replace=replace)

    return asyncio.run(create())


async def _list(instance: InstanceConfig, api_key: str) -> list[dict[str, Any]]:
    async with _webhooks_api(instance.mailchimp, api_key) as api:
        return await api.webhooks()


def audience_warnings(instance: InstanceConfig, audience: dict[str, Any]) -> list[str]:
    warnings = []
    if audience.get("double_optin") and instance.mailchimp.status_if_new == "subscribed":
        warnings.append(
            f"audience {instance.mailchimp.audience_id} uses double opt-in but the instance adds new contacts as "
            "'subscribed' (no confirmation email); set mailchimp.status_if_new to 'pending' to send one"
        )
    return warnings


def write_secret_file(path: Path, secret: str) -> None:
    """Atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secret)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def with_signing_secret(instance: InstanceConfig, ref: str) -> InstanceConfig:
    """The instance reading its signing secret from `ref`, validated as any configuration is."""
    data = instance.model_dump()
    data["mailchimp"]["webhook_signing_secret"] = ref
    data["version"] = instance.version + 1
    try:
        return InstanceConfig.model_validate(data)
    except ValidationError as exc:
        raise RegistrationError(f"--secret-ref {ref!r} is not a secret reference ('file:/path' or 'env:NAME')") from exc


def kubectl_command(name: str, namespace: str | None, secret: str) -> str:
    parts = ["kubectl", "create", "secret", "generic", name]
    if namespace:
        parts += ["--namespace", namespace]
    parts += [f"--from-literal={KUBECTL_SECRET_KEY}={secret}", "--dry-run=client", "-o", "yaml"]
    apply = ["kubectl", "apply", "-f", "-"] + (["--namespace", namespace] if namespace else [])
    return f"{shlex.join(parts)} | {shlex.join(apply)}"


def _say(message: str) -> None:
    # Status goes to stderr: stdout carries only the kubectl command, so it can be piped to a shell.
    print(message, file=sys.stderr)


def _load_instance(kafka: str, instance_id: str) -> InstanceConfig:
    instance = asyncio.run(read_instances(KafkaConnection.from_env("tandem-cli", kafka))).get(instance_id)
    if instance is None:
        raise RegistrationError(f"no instance {instance_id!r} on {kafka}")
    return instance


def _resolve(ref: str | None, what: str) -> str:
    if ref is None:
        raise RegistrationError(f"the instance has no {what}")
    try:
        return resolve_secret(ref)
    except SecretUnavailable as exc:
        raise RegistrationError(f"{what} unavailable here: {exc}") from exc


def cmd_register(args: argparse.Namespace) -> int:
    if args.signing_secret_file is None and args.kubectl_secret is None:
        _say("choose where Mailchimp's signing secret goes: --signing-secret-file PATH or --kubectl-secret NAME")
        return 2
    try:
        instance = _load_instance(args.kafka, args.instance)
        if args.secret_ref is not None:
            with_signing_secret(instance, args.secret_ref)  # refuse a bad reference before touching Mailchimp
        api_key = _resolve(instance.mailchimp.api_key, "mailchimp.api_key")
        path_secret = _resolve(instance.mailchimp.webhook_secret, "mailchimp.webhook_secret (the URL's secret)")
        url = webhook_url(args.public_url, instance.id, path_secret)
        registration = asyncio.run(_register(instance, api_key, url, path_secret, replace=args.replace))
    except RegistrationError as exc:
        _say(f"error: {exc}")
        return 1
    shown = masked(url, path_secret)
    if not registration.created:
        _say(
            f"webhook {registration.webhook_id} already sends to {shown}; its signing secret is only shown at "
            "creation, so use --replace to recreate it with a new one"
        )
        return 0
    _say(f"created webhook {registration.webhook_id} → {shown}")
    if registration.signing_secret is None:
        _say("Mailchimp did not sign this webhook; only the URL's secret protects it")
        return 0
    ref = args.secret_ref
    if args.signing_secret_file is not None:
        path = Path(args.signing_secret_file).resolve()
        write_secret_file(path, registration.signing_secret)
        _say(f"signing secret written to {path} (mode 0600)")
        ref = ref or f"file:{path}"
    else:
        print(kubectl_command(args.kubectl_secret, args.namespace, registration.signing_secret), flush=True)
        _say(f"mount key {KUBECTL_SECRET_KEY} of secret {args.kubectl_secret} where the ingest pods can read it")
    if ref is None:
        _say("set the instance's mailchimp.webhook_signing_secret to where ingest reads the secret (--secret-ref)")
        return 0
    if args.no_update_instance:
        _say(f"set the instance's mailchimp.webhook_signing_secret to {ref}")
        return 0
    asyncio.run(put_instance(KafkaConnection.from_env("tandem-cli", args.kafka), with_signing_secret(instance, ref)))
    _say(f"instance {instance.id}: mailchimp.webhook_signing_secret = {ref}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    try:
        instance = _load_instance(args.kafka, args.instance)
        api_key = _resolve(instance.mailchimp.api_key, "mailchimp.api_key")
        path_secret = instance.mailchimp.webhook_secret
        hidden = resolve_secret(path_secret) if path_secret else None
        hooks = asyncio.run(_list(instance, api_key))
    except (RegistrationError, SecretUnavailable) as exc:
        _say(f"error: {exc}")
        return 1
    for hook in hooks:
        events = ",".join(k for k, on in hook.get("events", {}).items() if on)
        sources = ",".join(k for k, on in hook.get("sources", {}).items() if on)
        signed = "signed" if hook.get("signing_enabled") else "unsigned"
        print(f"{hook.get('id')}  {masked(str(hook.get('url')), hidden)}  {signed}  events={events}  sources={sources}")
    return 0


HELP = """\
Registers the instance's Mailchimp audience webhook, pointing at ingest's
PUBLIC_URL/webhooks/mailchimp/INSTANCE/<the instance's mailchimp.webhook_secret>, for the events subscribe,
profile, upemail, unsubscribe and cleaned from every source (user, admin, api). Mailchimp first checks the URL
with a GET, so ingest must be reachable from Mailchimp at PUBLIC_URL and already know the instance.

Mailchimp shows the webhook's signing secret only once, now. It is never logged; choose where it goes:
  --signing-secret-file PATH   written to PATH (mode 0600); the instance then reads it as file:PATH
                               (or as --secret-ref, if the services see the file elsewhere)
  --kubectl-secret NAME        printed on stdout, as the only output, as a `kubectl create secret generic NAME
                               ... | kubectl apply -f -` command (pipe it to sh); give --secret-ref with the path
                               where the ingest pods mount key mailchimp-webhook-signing-secret
Then the instance's mailchimp.webhook_signing_secret is set on tandem.instances (unless --no-update-instance),
and ingest verifies the X-Mailchimp-Signature of every delivery.

An existing webhook with the same URL is kept (its secret cannot be read back); --replace recreates it.
The API key and URL secret are resolved from the instance's references (env:/file:) in this shell.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("webhooks", help="Mailchimp audience webhooks of an instance")
    actions = parser.add_subparsers(dest="webhooks_command", required=True)
    kafka_default = CommonSettings().kafka_bootstrap_servers

    register = actions.add_parser(
        "register",
        help="create the instance's Mailchimp webhook and keep its signing secret",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    register.add_argument("instance", help="instance id")
    register.add_argument(
        "--public-url", required=True, help="where Mailchimp reaches ingest, e.g. https://sync.example.com"
    )
    where = register.add_mutually_exclusive_group()
    where.add_argument("--signing-secret-file", metavar="PATH", help="write the signing secret to this file (0600)")
    where.add_argument("--kubectl-secret", metavar="NAME", help="print a kubectl command creating secret NAME")
    register.add_argument("--namespace", help="Kubernetes namespace for --kubectl-secret")
    register.add_argument("--secret-ref", help="reference the services use to read the secret (file:… or env:…)")
    register.add_argument("--no-update-instance", action="store_true", help="leave tandem.instances unchanged")
    register.add_argument("--replace", action="store_true", help="recreate an existing webhook (new signing secret)")
    register.add_argument("--kafka", default=kafka_default, help=f"Kafka bootstrap servers (default {kafka_default})")
    register.set_defaults(handler=cmd_register)
    audited(
        register,
        "register_webhook",
        lambda a: (f"webhooks register {a.instance}", a.instance),
        servers=lambda a: a.kafka,
    )

    listing = actions.add_parser("list", help="the audience's webhooks (URL secrets masked)")
    listing.add_argument("instance", help="instance id")
    listing.add_argument("--kafka", default=kafka_default, help=f"Kafka bootstrap servers (default {kafka_default})")
    listing.set_defaults(handler=cmd_list)
