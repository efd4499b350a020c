from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tandem_shared.settings import CommonSettings


class ConsoleSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_CONSOLE_", extra="ignore", env_ignore_empty=True)

    port: int = 8080
    database_url: str = Field(
        default="sqlite:///.tandem/console/console.db",
        description="sqlite:///path/to/file.db or postgresql://user@host/db (needs the 'postgres' extra).",
    )
    # Matches tandem.trace's retention: older executions could not be rebuilt from the topic anyway.
    retention_days: float = 14.0
    purge_interval_s: float = 3600.0
    batch_size: int = 500
    # Empty the store at start and read tandem.trace again from its beginning.
    rebuild_on_start: bool = False
    page_size: int = 50
    # Most executions one "replay these" may republish; a larger set must be narrowed by its filters first.
    replay_limit: int = 500
    publish_timeout_s: float = 10.0

    # --- who may use it (docs/security.md, "Console access") ---
    # Operator accounts and API tokens, hashed: a JSON file, in Kubernetes a key of a mounted Secret.
    accounts_file: Path | None = None
    # Signs session cookies and CSRF tokens. Unset: a random one per process (every restart logs everyone out;
    # replicas need one shared secret).
    session_secret: SecretStr | None = None
    session_ttl_s: float = 8 * 3600.0
    # Cookies only over HTTPS. Browsers treat http://127.0.0.1 and localhost as secure, so it stays on there too.
    cookie_secure: bool = True
    # Host names the console answers to (DNS rebinding): comma-separated, port not included.
    allowed_hosts: str = "localhost,127.0.0.1"
    # A loopback-only install may turn the login off, explicitly: every caller from a loopback address is then an
    # operator, and any other caller is refused. Never set in the image or the manifests.
    login_disabled: bool = False
    # OpenID Connect (docs/security.md): on when an issuer and a client id are set. Roles come from the groups the
    # ID token lists; someone in none of these groups is not let in.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_display_name: str = "your organisation's login"
    oidc_scopes: str = "openid email profile"
    oidc_name_claim: str = "email"
    oidc_groups_claim: str = "groups"
    oidc_operator_groups: str = ""
    oidc_viewer_groups: str = ""
    # The callback URL registered with the provider; unset: this console's own URL + /login/oidc/callback.
    oidc_redirect_uri: str | None = None

    @property
    def host_names(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())

    # Step output fields shown masked in the console (any depth, case-insensitive), e.g. ["DOB", "PHONE"] as JSON.
    # Display only: the trace keeps what the minimisation rule keeps (docs/security.md).
    masked_fields: list[str] = Field(default_factory=list)

    @property
    def masked(self) -> frozenset[str]:
        return frozenset(name.strip().lower() for name in self.masked_fields if name.strip())
