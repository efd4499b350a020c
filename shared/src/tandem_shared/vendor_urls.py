"""Where Tandem may send an instance's vendor credentials: the vendors' own hosts, over HTTPS.

An instance's `accessplanit.base_url` and `mailchimp.api_base_url` (and the data centre a Mailchimp key names) decide
where its API key goes; unchecked, a configuration could point them at any host the service can reach (SSRF, with
the key as a gift). Only the vendors' hosts are allowed, unless a development setting names more:
`TANDEM_DEVELOPMENT_VENDOR_HOSTS` (comma-separated host names, e.g. `127.0.0.1,localhost,mailchimp-sim`) lets
those hosts be called over http or https, for the simulators. devstack, docker compose, the tests and the bench
set it; production does not. Read at the point of use, like a secret reference.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

DEVELOPMENT_HOSTS_ENV = "TANDEM_DEVELOPMENT_VENDOR_HOSTS"

# accessplanit tenants are <tenant>.accessplanit.com; Mailchimp's API is <dc>.api.mailchimp.com (e.g. us6).
_VENDOR_HOSTS = {
    "accessplanit": re.compile(r"([a-z0-9-]+\.)+accessplanit\.com"),
    "mailchimp": re.compile(r"[a-z]+[0-9]+\.api\.mailchimp\.com"),
}


class VendorUrlRefused(ValueError):
    """The URL is not one of the vendor's hosts (nor a development host this process allows)."""


def development_hosts() -> frozenset[str]:
    raw = os.environ.get(DEVELOPMENT_HOSTS_ENV, "")
    return frozenset(h.strip().lower() for h in raw.split(",") if h.strip())


def check_vendor_url(url: str, vendor: str, *, development: frozenset[str] | None = None) -> str:
    """`url` when Tandem may send `vendor`'s credentials there; VendorUrlRefused (naming no secret) otherwise."""
    allowed_dev = development_hosts() if development is None else development
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 (a malformed port raises here, not at the first request)
    except ValueError:
        raise VendorUrlRefused(f"{vendor} URL {url!r} is not a URL") from None
    if parts.username or parts.password:
        raise VendorUrlRefused(f"{vendor} URL {url!r} carries credentials of its own")
    if host in allowed_dev and parts.scheme in ("http", "https"):
        return url
    if parts.scheme == "https" and _VENDOR_HOSTS[vendor].fullmatch(host):
        return url
    raise VendorUrlRefused(
        f"{vendor} URL {url!r} is not an https URL on {vendor}'s own hosts; a simulator or other development host "
        f"must be named in {DEVELOPMENT_HOSTS_ENV}"
    )
