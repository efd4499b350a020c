"""Both vendors' schemas as the instance's keys see them, read through the vendor clients.

A side that cannot be read (no answer, an unexpected status, no budget) is reported as a warning and its checks are
skipped; a refused key or a missing audience is an error. The reads are paid from the shared request budget as
authoritative reads: an operator waits for the answer, but live writes go first.
"""

from __future__ import annotations

from tandem_shared.contracts import InstanceConfig
from tandem_shared.instance_validation.problems import LiveSchemas, Problem
from tandem_shared.secrets import SecretUnavailable, resolve_secret
from tandem_shared.vendors.accessplanit.client import AccessplanitClients
from tandem_shared.vendors.accessplanit.schema import AccessplanitSchema
from tandem_shared.vendors.accessplanit.schema import read_schema as read_accessplanit_schema
from tandem_shared.vendors.mailchimp.client import MailchimpClients
from tandem_shared.vendors.mailchimp.schema import AudienceNotFound, MailchimpSchema
from tandem_shared.vendors.mailchimp.schema import read_schema as read_mailchimp_schema
from tandem_shared.vendors.priority import Priority
from tandem_shared.vendors.schema import KeyRefused, SchemaUnreadable

PRIORITY = Priority.AUTHORITATIVE_READ

Found = tuple[list[Problem], list[Problem]]  # errors, warnings


async def _read_mailchimp(config: InstanceConfig, clients: MailchimpClients) -> tuple[MailchimpSchema | None, Found]:
    try:
        key = resolve_secret(config.mailchimp.api_key)
    except SecretUnavailable as exc:
        return None, ([], [Problem("mailchimp.api_key", f"{exc}; the Mailchimp checks were skipped")])
    audience = config.mailchimp.audience_id
    client = clients.for_account(config.mailchimp.api_root(key), key)
    try:
        return await read_mailchimp_schema(client, audience, priority=PRIORITY), ([], [])
    except KeyRefused:
        message = "Mailchimp refused the key (401 API Key Invalid): check the key and its data-centre suffix"
        return None, ([Problem("mailchimp.api_key", message)], [])
    except AudienceNotFound as exc:
        names = ", ".join(f"{a} ({n})" for a, n in exc.audiences) or "none"
        message = f"audience '{audience}' was not found with this API key; the key's audiences: {names}"
        return None, ([Problem("mailchimp.audience_id", message)], [])
    except SchemaUnreadable as exc:
        return None, ([], [Problem("mailchimp", f"Mailchimp could not be read ({exc}); its checks were skipped")])


async def _read_accessplanit(
    config: InstanceConfig, clients: AccessplanitClients
) -> tuple[AccessplanitSchema | None, Found]:
    try:
        key = resolve_secret(config.accessplanit.api_key)
    except SecretUnavailable as exc:
        return None, ([], [Problem("accessplanit.api_key", f"{exc}; the accessplanit checks were skipped")])
    client = clients.for_tenant(config.accessplanit.base_url, key)
    try:
        schema = await read_accessplanit_schema(
            client, default_account_id=config.accessplanit.default_account_id, priority=PRIORITY
        )
    except KeyRefused:
        message = (
            "accessplanit refused the key (401): check the key and that it belongs to the tenant at "
            "accessplanit.base_url"
        )
        return None, ([Problem("accessplanit.api_key", message)], [])
    except SchemaUnreadable as exc:
        message = f"accessplanit could not be read ({exc}); its checks were skipped"
        return None, ([], [Problem("accessplanit", message)])
    return schema, ([], [])


async def read_live_schemas(
    config: InstanceConfig, *, mailchimp: MailchimpClients, accessplanit: AccessplanitClients
) -> LiveSchemas:
    """Both vendors' schemas as the instance's keys see them; what cannot be read is a warning, not an error."""
    mc_schema, (mc_errors, mc_warnings) = await _read_mailchimp(config, mailchimp)
    ap_schema, (ap_errors, ap_warnings) = await _read_accessplanit(config, accessplanit)
    return LiveSchemas(mc_schema, ap_schema, [*mc_errors, *ap_errors], [*mc_warnings, *ap_warnings])
