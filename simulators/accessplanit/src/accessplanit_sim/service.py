"""User-module writes: validation, attribution to the caller, audit log and webhook planning in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from .controls import Controls
from .fields import USER_FIELDS
from .seed import FIRST_USER_ID
from .settings import SimSettings
from .store import Doc, Store
from .validation import FieldError, UserWrite, WriteContext, validate_user_write
from .webhooks import WebhookDispatcher, plan_deliveries


@dataclass(frozen=True)
class Caller:
    """The platform user that owns the credential on the request; every write is attributed to them."""

    id: str
    name: str
    credential: str  # digest of the key or token, the rate limiter's "per key"


class ApiError(Exception):
    def __init__(self, status: int, errors: list[FieldError]) -> None:
        super().__init__(status, errors)
        self.status = status
        self.errors = errors

    def body(self) -> dict[str, Any]:
        return {"errors": [e.to_json() for e in self.errors]}


def not_found(module: str, object_id: str) -> ApiError:
    return ApiError(404, [FieldError("ID", f"{module} '{object_id}' was not found.")])


def shaped(values: Doc) -> Doc:
    """The User JSON with keys in the documented order, the derived fields computed from the stored ones."""
    user = {spec.name: values.get(spec.name) for spec in USER_FIELDS}
    names = (user.get("Forenames"), user.get("Surname"))
    # How the platform builds Fullname is undocumented: forenames then surname (an assumption).
    user["Fullname"] = " ".join(n for n in names if n) or None
    user["HasEmail"] = bool(user.get("Email"))
    user["UserCompaniesIDs"] = user.get("MainCompanyID")
    # Bookings and notes are not simulated: their counts stay 0.
    user["ActiveCoursesCount"] = 0
    user["NotesCount"] = 0
    return user


class UserService:
    def __init__(self, store: Store, settings: SimSettings, controls: Controls, dispatcher: WebhookDispatcher):
        self._store = store
        self._settings = settings
        self._controls = controls
        self._dispatcher = dispatcher

    def get(self, user_id: str) -> Doc:
        user = self._store.user(user_id)
        if user is None:
            raise not_found("User", user_id)
        return user

    def create(self, caller: Caller, body: object) -> Doc:
        write = self._validate(caller, body, creating=True)
        companies = self._companies()
        with self._store.transaction():
            now = self._store.next_timestamp()
            user = shaped(
                {
                    **write.fields,
                    "ID": self._store.next_id("user", FIRST_USER_ID),
                    "UniqueID": str(uuid.uuid4()),
                    "MainCompanyName": companies[write.fields["MainCompanyID"]],
                    "DateCreated": now,
                    "DateUpdated": now,
                    "CreatedByID": caller.id,
                    "CreatedByName": caller.name,
                    "UpdatedByID": caller.id,
                    "UpdatedByName": caller.name,
                    "CustomFields": {d.name: write.custom_fields.get(d.name) for d in self._store.custom_fields()},
                }
            )
            self._store.put_user(user)
            self._audit(caller, "Created", user, changes(shaped({"CustomFields": {}}), user))
            deliveries = plan_deliveries(self._store, self._controls, "User", "created", user)
        self._dispatcher.enqueue(deliveries)
        return user

    def update(self, caller: Caller, user_id: str, body: object) -> Doc:
        current = self.get(user_id)
        write = self._validate(caller, body, creating=False)
        updated = shaped({**current, **write.fields})
        updated["CustomFields"] = {**current["CustomFields"], **write.custom_fields}
        if "MainCompanyID" in write.fields:
            updated["MainCompanyName"] = self._companies()[write.fields["MainCompanyID"]]
        diff = changes(current, updated)
        if not diff and not self._settings.noop_updates_touch:
            return current
        with self._store.transaction():
            updated.update(DateUpdated=self._store.next_timestamp(), UpdatedByID=caller.id, UpdatedByName=caller.name)
            self._store.put_user(updated)
            self._audit(caller, "Updated", updated, diff)
            deliveries = plan_deliveries(self._store, self._controls, "User", "updated", updated)
        self._dispatcher.enqueue(deliveries)
        return updated

    def upsert(self, caller: Caller, body: object) -> tuple[Doc, bool]:
        """Insert or update by the configured match keys → (user, created)."""
        if not isinstance(body, dict):
            return self.create(caller, body), True
        fields = dict(body)
        match_id = fields.pop("ID", None)
        for key in self._settings.upsert_match_keys:
            value = match_id if key == "ID" else fields.get(key)
            if value in (None, ""):
                continue
            matches = self._find(key, str(value))
            if len(matches) > 1:
                message = f"{len(matches)} users match {key} '{value}'; upsert needs a unique match."
                raise ApiError(409, [FieldError(key, message)])
            if matches:
                return self.update(caller, matches[0]["ID"], fields), False
        return self.create(caller, fields), True

    def delete(self, caller: Caller, user_id: str) -> None:
        current = self.get(user_id)
        mode = self._controls.delete_mode
        soft = mode == "soft" or (mode == "soft-then-hard" and current["Status"] != "Deleted")
        with self._store.transaction():
            if soft:
                user = {
                    **current,
                    "Status": "Deleted",
                    "DateUpdated": self._store.next_timestamp(),
                    "UpdatedByID": caller.id,
                    "UpdatedByName": caller.name,
                }
                self._store.put_user(user)
                self._audit(caller, "Deleted", user, changes(current, user))
            else:
                user = current
                self._store.remove_user(user_id)
                self._audit(caller, "Removed", user, [])
            deliveries = plan_deliveries(self._store, self._controls, "User", "deleted", user)
        self._dispatcher.enqueue(deliveries)

    def _validate(self, caller: Caller, body: object, *, creating: bool) -> UserWrite:
        writable = self._controls.custom_fields_writable or caller.id in self._settings.ui_user_ids
        ignore = not self._settings.reject_read_only_writes
        ctx = WriteContext(self._companies(), self._store.custom_fields(), writable, ignore_read_only=ignore)
        write = validate_user_write(body, ctx, creating=creating)
        if write.errors:
            raise ApiError(400, write.errors)
        return write

    def _companies(self) -> dict[str, str]:
        return {c["ID"]: c["Name"] for c in self._store.companies()}

    def _find(self, key: str, value: str) -> list[Doc]:
        if key == "ID":
            user = self._store.user(value)
            return [user] if user else []
        fold = key in self._settings.case_insensitive_fields
        return [
            dict(u)
            for u in self._store.users_view()
            if u.get(key) is not None and (u[key].lower() == value.lower() if fold else u[key] == value)
        ]

    def _audit(self, caller: Caller, action: str, user: Doc, diff: list[Doc]) -> None:
        self._store.add_audit(
            {
                "DateCreated": user["DateUpdated"],
                "Module": "User",
                "Action": action,
                "ObjectID": user["ID"],
                "UserID": caller.id,
                "UserName": caller.name,
                "Changes": diff,
            }
        )


def changes(before: Doc, after: Doc) -> list[Doc]:
    """Field-level old→new pairs for the audit log; custom fields appear as `CustomFields/<name>`."""
    diff = [
        {"Field": spec.name, "OldValue": before.get(spec.name), "NewValue": after.get(spec.name)}
        for spec in USER_FIELDS
        if spec.writable and before.get(spec.name) != after.get(spec.name)
    ]
    old_custom, new_custom = before.get("CustomFields") or {}, after.get("CustomFields") or {}
    diff += [
        {"Field": f"CustomFields/{name}", "OldValue": old_custom.get(name), "NewValue": new_custom.get(name)}
        for name in new_custom
        if old_custom.get(name) != new_custom.get(name)
    ]
    return diff
