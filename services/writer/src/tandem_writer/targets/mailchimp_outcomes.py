"""A Mailchimp answer (or its absence) as a command's WriteOutcome (pure)."""

from __future__ import annotations

from typing import Any

from tandem_shared.contracts import ErrorInfo
from tandem_shared.vendors.mailchimp.bodies import member_summary
from tandem_shared.vendors.mailchimp.client import MailchimpError, Reply
from tandem_writer.domain.outcome import WriteOutcome

STOPPING = ErrorInfo(
    error_class="Shutdown", message="the writer stopped before the write was confirmed", permanent=False
)


def member(reply: Reply) -> dict[str, Any] | None:
    return reply.document if isinstance(reply.document, dict) else None


def failed(error: ErrorInfo) -> WriteOutcome:
    return WriteOutcome(False, f"Mailchimp write failed: {error.message}", error=error)


def refused(error: ErrorInfo) -> WriteOutcome:
    return WriteOutcome(False, f"Mailchimp refused the write: {error.message}", error=error)


def email_change_refused(old_email: str, new_email: str, reason: str) -> ErrorInfo:
    """Mailchimp moves only subscribed members to a new address; Tandem never creates the new address instead."""
    return ErrorInfo(
        error_class="EmailChangeRefused",
        message=f"{old_email} was not changed to {new_email}: {reason} — Mailchimp changes the address of subscribed "
        "members only, and Tandem does not create a member at the new address, which would subscribe a contact who "
        "opted out or has not confirmed; change the address in Mailchimp, or re-subscribe the contact, if wanted",
        permanent=True,
        field="email_address",
    )


def not_written(exc: MailchimpError) -> WriteOutcome:
    """No answer (`failed`) or a refusal (`refused`), as the request's error says."""
    return failed(exc.error) if exc.status is None else refused(exc.error)


def unexpected(reply: Reply) -> WriteOutcome:
    # A 2xx without the member document (a proxy in between?): the PUT/PATCH is safe to repeat.
    error = ErrorInfo(
        error_class="UnexpectedResponse",
        message=f"Mailchimp answered {reply.status} without a member document",
        permanent=False,
    )
    return WriteOutcome(False, f"Mailchimp write unconfirmed: {error.message}", error=error)


def confirmed(document: dict[str, Any], summary: str) -> WriteOutcome:
    """A member document Mailchimp answered with: the write is done; the trace keeps the member's essentials."""
    return WriteOutcome(True, summary, response=member_summary(document))


def member_is(document: dict[str, Any], email: str, note: str = "") -> WriteOutcome:
    """An upserted member, as a PUT or a batch subscribe answered it."""
    return confirmed(
        document,
        f"{note}Mailchimp member {document.get('email_address', email)} is {document.get('status', 'unknown')}",
    )


def upserted(reply: Reply, email: str, note: str = "") -> WriteOutcome:
    """A PUT's answer as the command's outcome."""
    found = member(reply)
    return unexpected(reply) if found is None else member_is(found, email, note)
