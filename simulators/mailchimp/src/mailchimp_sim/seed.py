"""The demo account and any configured extra accounts, seeded idempotently on every start."""

import secrets

from mailchimp_sim.domain import MergeField, default_merge_fields
from mailchimp_sim.errors import ApiError
from mailchimp_sim.service import now
from mailchimp_sim.settings import AccountSeed, ListSeed, SimSettings
from mailchimp_sim.store import AudienceRow, Store

DEMO_ACCOUNT_ID = "tandemdemo"
DEMO_API_KEY = "tandemdemo0000000000000000000000-us1"
DEMO_LIST_ID = "a1b2c3d4e5"
DEMO_ACCOUNT = AccountSeed(
    account_id=DEMO_ACCOUNT_ID,
    api_keys=[DEMO_API_KEY],
    lists=[ListSeed(id=DEMO_LIST_ID, name="Tandem Demo", double_optin=False)],
)
DEMO_EXTRA_FIELDS = {DEMO_LIST_ID: [MergeField(6, "COMPANY", "Company", "text", display_order=7, options={"size": 25})]}


def create_audience(store: Store, account_id: str, name: str, double_optin: bool) -> AudienceRow:
    """A new audience (`POST /lists`) with a fresh 10-character id and the default merge fields."""
    with store.transaction():
        while True:
            row = AudienceRow(
                id=secrets.token_hex(5),
                account_id=account_id,
                web_id=secrets.randbelow(900_000) + 100_000,
                name=name,
                double_optin=double_optin,
                date_created=now().isoformat(),
            )
            if store.insert_audience(row):
                break
        for field in default_merge_fields():
            store.put_merge_field(row.id, field)
    return row


def ensure_account(store: Store, account: AccountSeed) -> None:
    """Adds what is missing; never touches existing audiences' members or merge fields."""
    with store.transaction():
        for key in account.api_keys:
            store.add_api_key(key, account.account_id)
        for spec in account.lists:
            existing = store.audience(spec.id)
            if existing is not None:
                if existing.account_id != account.account_id:
                    raise ApiError(409, "Conflict", f"Audience {spec.id} belongs to another account.")
                store.update_audience(spec.id, spec.name, spec.double_optin)
                continue
            row = AudienceRow(
                id=spec.id,
                account_id=account.account_id,
                web_id=secrets.randbelow(900_000) + 100_000,
                name=spec.name,
                double_optin=spec.double_optin,
                date_created=now().isoformat(),
            )
            if store.insert_audience(row):
                for field in [*default_merge_fields(), *DEMO_EXTRA_FIELDS.get(spec.id, [])]:
                    store.put_merge_field(spec.id, field)


def seed(store: Store, settings: SimSettings) -> None:
    for account in [DEMO_ACCOUNT, *settings.extra_accounts]:
        ensure_account(store, account)
