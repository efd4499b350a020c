"""Audience and member use cases: the domain rules applied to the store, with change notices for webhooks."""

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from mailchimp_sim import domain
from mailchimp_sim.domain import Member, MergeField, Status, WebhookSource
from mailchimp_sim.errors import (
    INVALID_RESOURCE_DETAIL,
    ApiError,
    FieldError,
    cannot_archive,
    email_change_refused,
    forgotten,
    invalid_resource,
    member_exists,
    not_found,
)
from mailchimp_sim.schemas import BatchSubscribe, MemberWrite, TagsUpdate, parse_batch_members
from mailchimp_sim.settings import SimSettings
from mailchimp_sim.store import AudienceRow, Store

SOURCE_LABELS: dict[WebhookSource, str] = {"api": "API - Generic", "admin": "Admin Add", "user": "Hosted Signup Form"}


@dataclass(frozen=True)
class Change:
    """A committed member change; ``None`` = not on the audience (absent, archived or deleted)."""

    list_id: str
    before: Member | None
    after: Member | None
    source: WebhookSource
    reason: str = ""


def now() -> datetime:
    # Mailchimp timestamps have second resolution.
    return datetime.now(UTC).replace(microsecond=0)


def _active(member: Member | None) -> Member | None:
    return member if member is not None and not member.archived else None


def _blank(field: str) -> ApiError:
    return invalid_resource(errors=[FieldError(field, "This value should not be blank.")])


def _contact_exists(email: str) -> dict[str, str]:
    return {
        "email_address": email,
        "error": f"{email} is already a list member, do you want to update? "
        "please provide update_existing:true in the request body",
        "error_code": "ERROR_CONTACT_EXISTS",
        "field": "email_address",
        "field_message": "This contact already exists.",
    }


def _generic_error(email: str, error: ApiError) -> dict[str, str]:
    """Any other per-member failure, with the first field error (Mailchimp's ``field``/``field_message``)."""
    first = error.errors[0] if error.errors else None
    return {
        "email_address": email,
        "error": error.detail,
        "error_code": "ERROR_GENERIC",
        "field": first.field if first else "",
        "field_message": first.message if first else "",
    }


class AudienceService:
    def __init__(self, store: Store, settings: SimSettings, notify: Callable[[Change], None]) -> None:
        self._store = store
        self._settings = settings
        self._notify = notify
        # While a batch runs: its changes, announced only once the batch's one transaction has committed.
        self._deferred: list[Change] | None = None

    def _emit(self, change: Change) -> None:
        if self._deferred is None:
            self._notify(change)
        else:
            self._deferred.append(change)

    # --- lookups ---

    def audience(self, account_id: str, list_id: str) -> AudienceRow:
        audience = self._store.audience(list_id)
        if audience is None or audience.account_id != account_id:
            raise not_found()
        return audience

    def resolve(self, list_id: str, key: str) -> str:
        """The member id for a path segment: subscriber hash, email address or contact_id."""
        if "@" in key:
            return domain.subscriber_hash(key)
        lowered = key.lower()
        if domain.is_subscriber_hash(lowered):
            return lowered
        by_contact = self._store.member_by_contact_id(list_id, key)
        return by_contact.id if by_contact else lowered

    def member(self, list_id: str, key: str) -> Member:
        member = self._store.member(list_id, self.resolve(list_id, key))
        if member is None:
            raise not_found()
        return member

    # --- writes ---

    def upsert(
        self, list_id: str, key: str, body: MemberWrite, *, skip_merge_validation: bool, source: WebhookSource
    ) -> Member:
        """PUT. A path hash that differs from ``email_address`` moves the member at that hash to the new address."""
        email = self._email(body)
        path_id = self.resolve(list_id, key)
        body_id = domain.subscriber_hash(email)
        if path_id == body_id:
            return self._put(list_id, email, body, skip_merge_validation, source, allow_update=True)
        stored_at_path = self._store.member(list_id, path_id)
        at_path = _active(stored_at_path)
        occupant = self._store.member(list_id, body_id)
        if at_path is None:
            if _active(occupant) is not None:
                raise member_exists(email)
            if stored_at_path is not None:
                raise email_change_refused("archived")
            raise invalid_resource(
                f"The subscriber hash {path_id} does not match {email} and no list member has that hash."
            )
        if occupant is not None:
            raise member_exists(email)
        return self._update_existing(list_id, at_path, body, email, skip_merge_validation, source)

    def create(self, list_id: str, body: MemberWrite, *, skip_merge_validation: bool, source: WebhookSource) -> Member:
        """POST: create only; ``status_if_new`` is a PUT field and does not count here."""
        email = self._email(body)
        if body.status is None:
            raise invalid_resource(errors=[FieldError("status", "Schema describes enum, NULL found instead")])
        existing = _active(self._store.member(list_id, domain.subscriber_hash(email)))
        if existing is not None:
            raise member_exists(email)
        return self._put(
            list_id, email, body.model_copy(update={"status_if_new": None}), skip_merge_validation, source, False
        )

    def update(
        self, list_id: str, key: str, body: MemberWrite, *, skip_merge_validation: bool, source: WebhookSource
    ) -> Member:
        """PATCH: partial update, email change included. On an archived member only a ``status`` counts: it
        un-archives the member (Stack Overflow 63584277), through the consent rules."""
        stored = self._store.member(list_id, self.resolve(list_id, key))
        if stored is None:
            raise not_found()
        if stored.archived:
            if body.email_address is not None and domain.subscriber_hash(self._email(body)) != stored.id:
                raise email_change_refused("archived")
            if body.status is None:
                raise not_found()
            unarchive = body.model_copy(update={"email_address": stored.email_address, "status_if_new": None})
            return self._put(list_id, stored.email_address, unarchive, skip_merge_validation, source, True)
        existing = stored
        email = existing.email_address
        if body.email_address is not None:
            email = self._email(body)
            new_id = domain.subscriber_hash(email)
            occupant = self._store.member(list_id, new_id) if new_id != existing.id else None
            if occupant is not None:
                shown = "archived" if occupant.archived else occupant.status
                raise invalid_resource(f'"{email}" is already in this list with a status of "{shown}".')
        return self._update_existing(list_id, existing, body, email, skip_merge_validation, source)

    def archive(self, list_id: str, key: str, source: WebhookSource) -> None:
        member = self.member(list_id, key)
        if member.archived or member.status in ("pending", "cleaned"):
            raise cannot_archive()
        archived = replace(member, archived=True, last_changed=now())
        with self._store.transaction():
            self._store.save_member(archived)
        self._emit(Change(list_id, member, None, source))

    def delete_permanent(self, list_id: str, key: str, source: WebhookSource) -> None:
        member = self.member(list_id, key)
        with self._store.transaction():
            self._store.delete_member(list_id, member.id)
            self._store.forget(list_id, member.id)
        self._emit(Change(list_id, _active(member), None, source))

    def set_status(
        self, list_id: str, key: str, status: Literal["unsubscribed", "cleaned"], reason: str, source: WebhookSource
    ) -> Member:
        """A status change made outside the API (the subscriber's unsubscribe link, a bounce, the UI)."""
        member = _active(self.member(list_id, key))
        if member is None:
            raise not_found()
        if member.status == status:
            return member
        changed = replace(
            member,
            status=status,
            last_changed=now(),
            unsubscribe_reason=reason,
            unsubscribed_by=source if status == "unsubscribed" else "",
            unsubscribed_at=domain.format_timestamp(now()) if status == "unsubscribed" else "",
        )
        with self._store.transaction():
            self._store.save_member(changed)
        self._emit(Change(list_id, member, changed, source, reason))
        return changed

    def update_tags(self, list_id: str, key: str, update: TagsUpdate) -> None:
        member = _active(self.member(list_id, key))
        if member is None:
            raise not_found()
        tags = list(member.tags)
        for change in update.tags:
            if change.status == "active" and change.name not in tags:
                tags.append(change.name)
            elif change.status == "inactive" and change.name in tags:
                tags.remove(change.name)
        if tuple(tags) != member.tags:
            with self._store.transaction():
                self._store.save_member(replace(member, tags=tuple(tags), last_changed=now()))

    def batch(
        self,
        list_id: str,
        request: BatchSubscribe,
        *,
        skip_merge_validation: bool,
        skip_duplicate_check: bool,
        source: WebhookSource,
    ) -> dict[str, Any]:
        limit = self._settings.batch_max_members
        if len(request.members) > limit:
            raise invalid_resource(
                errors=[FieldError("members", f"Array has too many items ({len(request.members)}); max {limit}.")]
            )
        bodies = parse_batch_members(request.members)
        created: list[Member] = []
        updated: list[Member] = []
        errors: list[dict[str, str]] = []
        seen: set[str] = set()
        # One transaction for the whole call (not one commit per member); webhooks go out after it commits, in
        # member order, exactly as the same writes made one PUT at a time would fire them.
        self._deferred = []
        try:
            with self._store.transaction():
                for body in bodies:
                    email = body.email_address or ""
                    try:
                        email = self._email(body)
                        member_id = domain.subscriber_hash(email)
                        if skip_duplicate_check and member_id in seen:
                            continue
                        seen.add(member_id)
                        existing = _active(self._store.member(list_id, member_id))
                        if existing is not None and not request.update_existing:
                            errors.append(_contact_exists(email))
                            continue
                        saved = self._put(list_id, email, body, skip_merge_validation, source, allow_update=True)
                        (updated if existing is not None else created).append(saved)
                    except ApiError as error:
                        errors.append(_generic_error(email, error))
            changes = self._deferred
        finally:
            self._deferred = None
        for change in changes:
            self._notify(change)
        return {
            "new_members": created,
            "updated_members": updated,
            "errors": errors,
            "total_created": len(created),
            "total_updated": len(updated),
            "error_count": len(errors),
        }

    # --- internals ---

    def _email(self, body: MemberWrite) -> str:
        if not body.email_address or not body.email_address.strip():
            raise _blank("email_address")
        email = body.email_address.strip()
        # Both texts as recorded (mailchimp-api.md §10: grouparoo fixtures, JustFixNYC #1554, VingtCinq #183).
        if not domain.is_plausible_email(email):
            raise invalid_resource("Please provide a valid email address.")
        settings = self._settings
        if domain.is_fake_domain(email, settings.fake_email_domains, settings.reject_example_domains):
            raise invalid_resource(f"{email} looks fake or invalid, please enter a real email address.")
        return email

    def _put(
        self,
        list_id: str,
        email: str,
        body: MemberWrite,
        skip_merge_validation: bool,
        source: WebhookSource,
        allow_update: bool,
    ) -> Member:
        member_id = domain.subscriber_hash(email)
        stored = self._store.member(list_id, member_id)
        if stored is None and self._store.is_forgotten(list_id, member_id):
            raise forgotten(email)
        if stored is not None and not stored.archived:
            if not allow_update:
                raise member_exists(email)
            return self._update_existing(list_id, stored, body, email, skip_merge_validation, source)
        if stored is not None:
            status = domain.status_for_readd(
                stored.status, body.status, body.status_if_new, email, stored.unsubscribed_by
            )
        else:
            status = domain.status_for_create(body.status, body.status_if_new)
        moment = now()
        base = stored or Member(
            list_id=list_id,
            id=member_id,
            email_address=email,
            unique_email_id=secrets.token_hex(5),
            contact_id=secrets.token_hex(16),
            web_id=secrets.randbelow(900_000_000) + 100_000_000,
            status=status,
            merge_fields={},
            last_changed=moment,
            source=SOURCE_LABELS[source],
            tags=tuple(body.tags or ()),
            unsubscribed_by=source if status == "unsubscribed" else "",
            unsubscribed_at=domain.format_timestamp(moment) if status == "unsubscribed" else "",
        )
        member = self._apply(
            list_id, base, body, email, status, skip_merge_validation, moment, source=source, creating=True
        )
        member = replace(member, archived=False, last_changed=moment)
        with self._store.transaction():
            self._store.save_member(member)
        self._emit(Change(list_id, None, member, source))
        return member

    def _update_existing(
        self,
        list_id: str,
        existing: Member,
        body: MemberWrite,
        email: str,
        skip_merge_validation: bool,
        source: WebhookSource,
    ) -> Member:
        new_id = domain.subscriber_hash(email)
        if new_id != existing.id and existing.status != "subscribed":
            raise email_change_refused(existing.status)
        if new_id != existing.id and self._store.is_forgotten(list_id, new_id):
            raise forgotten(email)
        status = domain.status_for_update(
            existing.status, body.status, existing.email_address, existing.unsubscribed_by
        )
        moment = now()
        member = self._apply(
            list_id, existing, body, email, status, skip_merge_validation, moment, source=source, creating=False
        )
        if new_id != existing.id:
            # The contact keeps its contact_id; the per-address ids follow the new address.
            member = replace(member, id=new_id, unique_email_id=secrets.token_hex(5))
        if replace(member, last_changed=existing.last_changed) == existing:
            return existing
        with self._store.transaction():
            self._store.save_member(member, previous_id=existing.id)
        self._emit(Change(list_id, existing, member, source))
        return member

    def _apply(
        self,
        list_id: str,
        base: Member,
        body: MemberWrite,
        email: str,
        status: Status,
        skip_merge_validation: bool,
        moment: datetime,
        *,
        source: WebhookSource,
        creating: bool,
    ) -> Member:
        definitions: list[MergeField] = self._store.merge_fields(list_id)
        merges = domain.validate_merge_fields(
            definitions,
            body.merge_fields or {},
            base.merge_fields if not creating or base.archived else {},
            creating=creating,
            skip_required=skip_merge_validation,
            reject_unknown=self._settings.reject_unknown_merge_fields,
        )
        merges.raise_if_invalid()
        errors: list[FieldError] = []
        timestamps: dict[str, str] = {}
        for name in ("ip_signup", "ip_opt"):
            error = domain.validate_ip(getattr(body, name) or "", name)
            if error:
                errors.append(error)
        for name in ("timestamp_signup", "timestamp_opt"):
            raw = getattr(body, name)
            if raw:
                parsed = domain.parse_timestamp(raw)
                if parsed is None:
                    errors.append(FieldError(name, "This value is not a valid datetime."))
                else:
                    timestamps[name] = domain.format_timestamp(parsed)
        if errors:
            raise ApiError(400, "Invalid Resource", INVALID_RESOURCE_DETAIL, errors)
        opted_in = status == "subscribed" and (creating or base.status != "subscribed")
        # Who unsubscribed stays with the member while it stays unsubscribed (archived and re-added included).
        if status != "unsubscribed":
            unsubscribed_by, unsubscribed_at = "", ""
        elif base.status == "unsubscribed":
            unsubscribed_by, unsubscribed_at = base.unsubscribed_by, base.unsubscribed_at
        else:
            unsubscribed_by, unsubscribed_at = source, domain.format_timestamp(moment)
        return replace(
            base,
            email_address=email,
            status=status,
            merge_fields=merges.values,
            email_type=body.email_type or base.email_type,
            interests={**base.interests, **(body.interests or {})},
            language=body.language if body.language is not None else base.language,
            vip=body.vip if body.vip is not None else base.vip,
            ip_signup=body.ip_signup if body.ip_signup is not None else base.ip_signup,
            ip_opt=body.ip_opt if body.ip_opt is not None else base.ip_opt,
            timestamp_signup=timestamps.get("timestamp_signup", base.timestamp_signup),
            timestamp_opt=timestamps.get(
                "timestamp_opt", domain.format_timestamp(moment) if opted_in else base.timestamp_opt
            ),
            unsubscribe_reason="" if status != "unsubscribed" else base.unsubscribe_reason,
            unsubscribed_by=unsubscribed_by,
            unsubscribed_at=unsubscribed_at,
            last_changed=moment,
        )
