"""Both simulators as a test edits and reads them, through the vendors' own APIs: accessplanit users, and members
of the demo Mailchimp audience."""

from __future__ import annotations

from typing import Any

import httpx

from support.stack import RunningStack
from tandem_devstack.stack import DEMO_ACCESSPLANIT_ADMIN_KEY, DEMO_MAILCHIMP_API_KEY, DEMO_MAILCHIMP_AUDIENCE
from tandem_shared.contracts import subscriber_hash

ADMIN = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
MC_AUTH = ("any", DEMO_MAILCHIMP_API_KEY)


class Sims:
    def __init__(self, client: httpx.AsyncClient, stack: RunningStack) -> None:
        self.client = client
        self.users = f"{stack.url('accessplanit_sim')}/api/v2/User"
        self._members = f"{stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members"

    def member_url(self, email: str) -> str:
        return f"{self._members}/{subscriber_hash(email)}"

    async def create_user(self, email: str, *, first: str = "Ada", last: str = "Lovelace") -> str:
        """A new accessplanit user in the demo's default account; its id."""
        body = {"Forenames": first, "Surname": last, "Email": email, "MainCompanyID": "2"}
        created = await self.client.post(self.users, headers=ADMIN, json=body)
        assert created.status_code in (200, 201), created.text
        return str(created.json()["ID"])

    async def member(self, email: str) -> dict[str, Any] | None:
        response = await self.client.get(self.member_url(email), auth=MC_AUTH)
        found: dict[str, Any] | None = response.json() if response.status_code == 200 else None
        return found

    async def user(self, user_id: str) -> dict[str, Any] | None:
        response = await self.client.get(f"{self.users}/{user_id}", headers=ADMIN)
        found: dict[str, Any] | None = response.json() if response.status_code == 200 else None
        return found

    async def member_named(self, email: str, first_name: str) -> dict[str, Any] | None:
        found = await self.member(email)
        return found if found and found["merge_fields"].get("FNAME") == first_name else None

    async def user_named(self, user_id: str, first_name: str) -> dict[str, Any] | None:
        found = await self.user(user_id)
        return found if found and found.get("Forenames") == first_name else None
