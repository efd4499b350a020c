"""Simulator configuration (env prefix ``MAILCHIMP_SIM_``)."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ListSeed(BaseModel):
    id: str = Field(pattern=r"^[0-9a-z]{10}$")
    name: str
    double_optin: bool = False


class AccountSeed(BaseModel):
    """An account (Mailchimp "user") with its keys and audiences; also the body of ``POST /_sim/accounts``."""

    account_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    api_keys: list[str] = Field(default_factory=list)
    lists: list[ListSeed] = Field(default_factory=list)


class SimSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILCHIMP_SIM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8101
    data_dir: Path = Path(".tandem/sim/mailchimp")
    # Seeded on every start next to the demo account, as JSON: [{"account_id": …, "api_keys": […], "lists": […]}].
    extra_accounts: list[AccountSeed] = Field(default_factory=list)

    # Mailchimp allows 10 simultaneous connections per user, shared by all of the user's keys.
    max_in_flight_per_account: int = 10

    # Mailchimp's real schedule is undocumented ("increasing intervals over 75 minutes"); short by default for tests.
    webhook_retry_delays_s: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0])
    webhook_timeout_s: float = 10.0
    webhook_verify_timeout_s: float = 10.0
    # New webhooks get a signing secret unless the create body says ``"signing_enabled": false``.
    webhook_signing: bool = True
    # How an ADDRESS merge is sent in webhooks: PHP sub-keys (data[merges][ADDRESS][addr1]=…) or one string.
    webhook_address_format: Literal["subkeys", "string"] = "subkeys"
    # Body of a delivery: "recorded" as captured real payloads are (data[web_id], empty keys left out;
    # mailchimp-api.md §10, which wins over the samples) or "sample" as Mailchimp's published samples (empty keys
    # sent as empty strings, no data[web_id]).
    webhook_body_shape: Literal["recorded", "sample"] = "recorded"
    webhook_delivery_log_size: int = 1000

    # Real Mailchimp silently drops merge tags the audience does not have; switch on to catch client typos.
    reject_unknown_merge_fields: bool = False
    max_merge_fields: int = 30
    # Addresses at these domains are refused as "looks fake or invalid" (mailchimp-api.md §10: real Mailchimp refuses
    # disposable and test domains). Which domains real Mailchimp lists is not published: this default is known
    # disposable-mail domains only (an assumption), so demo and test addresses at example.com keep working.
    fake_email_domains: list[str] = Field(
        default_factory=lambda: [
            "mailinator.com",
            "yopmail.com",
            "trash-mail.com",
            "guerrillamail.com",
            "10minutemail.com",
            "sharklasers.com",
            "dispostable.com",
            "tempmail.com",
        ]
    )
    # Real Mailchimp also refuses the RFC 2606 example domains (example.com/.net/.org, *.example); off by default so
    # the demo's and the tests' addresses are accepted.
    reject_example_domains: bool = False
    batch_max_members: int = 500
    # Simulated cost of each member of a batch subscribe, on top of any per-request latency (`/_sim/controls`), so a
    # batch is not free. No source gives Mailchimp's figure: 2 ms per member is an assumption (ASSUMPTIONS.md).
    batch_latency_per_member_ms: float = 2.0
    max_page_count: int = 1000
    uvicorn_graceful_shutdown_s: float = 2.0
    # One log line per request cost more CPU than a member write; /_sim/stats counts requests instead.
    access_log: bool = False
