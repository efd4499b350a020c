"""An instance's configuration cannot send its credentials anywhere (SSRF) nor read any file as a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem_shared.contracts import ErrorInfo
from tandem_shared.instances import demo_instance
from tandem_shared.secrets import SecretUnavailable, resolve_secret
from tandem_shared.vendor_urls import DEVELOPMENT_HOSTS_ENV, VendorUrlRefused, check_vendor_url
from tandem_shared.vendors.accessplanit.client import AccessplanitClients, AccessplanitError
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings
from tandem_shared.vendors.mailchimp.client import MailchimpClients, MailchimpError

NONE: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    ("url", "vendor"),
    [
        ("https://acme.accessplanit.com", "accessplanit"),
        ("https://acme-training.accessplanit.com/", "accessplanit"),
        ("https://us6.api.mailchimp.com/3.0", "mailchimp"),
    ],
)
def test_the_vendors_own_hosts_are_allowed(url: str, vendor: str) -> None:
    assert check_vendor_url(url, vendor, development=NONE) == url


@pytest.mark.parametrize(
    ("url", "vendor"),
    [
        ("http://acme.accessplanit.com", "accessplanit"),  # credentials in clear text
        ("https://accessplanit.com.evil.example", "accessplanit"),
        ("https://evil.example/acme.accessplanit.com", "accessplanit"),
        ("https://user:pw@acme.accessplanit.com", "accessplanit"),
        ("http://127.0.0.1:8102", "accessplanit"),
        ("http://169.254.169.254/latest/meta-data", "accessplanit"),
        ("https://acme.accessplanit.com:99999", "accessplanit"),
        ("https://evil.example/#.api.mailchimp.com/3.0", "mailchimp"),  # a key's "data centre" suffix
        ("https://us6.api.mailchimp.com.evil.example/3.0", "mailchimp"),
        ("file:///etc/passwd", "mailchimp"),
    ],
)
def test_anything_else_is_refused(url: str, vendor: str) -> None:
    with pytest.raises(VendorUrlRefused):
        check_vendor_url(url, vendor, development=NONE)


def test_simulator_hosts_need_the_explicit_development_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEVELOPMENT_HOSTS_ENV, "127.0.0.1, mailchimp-sim")
    assert check_vendor_url("http://127.0.0.1:8102", "accessplanit")
    assert check_vendor_url("http://mailchimp-sim:8101/3.0", "mailchimp")
    with pytest.raises(VendorUrlRefused):
        check_vendor_url("http://localhost:8102", "accessplanit")
    monkeypatch.delenv(DEVELOPMENT_HOSTS_ENV)
    with pytest.raises(VendorUrlRefused):
        check_vendor_url("http://127.0.0.1:8102", "accessplanit")


async def test_the_vendor_clients_refuse_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVELOPMENT_HOSTS_ENV, raising=False)
    monkeypatch.setenv("TANDEM_DEMO_ACCESSPLANIT_API_KEY", "k")
    monkeypatch.setenv("TANDEM_DEMO_MAILCHIMP_API_KEY", "k-us1")
    instance = demo_instance()  # the simulators on loopback
    ap = AccessplanitClients(None, AccessplanitSettings())
    with pytest.raises(AccessplanitError) as refused:
        ap.for_instance(instance)
    assert isinstance(refused.value.error, ErrorInfo) and refused.value.error.error_class == "VendorUrlRefused"
    assert refused.value.error.permanent and "k" not in refused.value.error.message.split()
    with pytest.raises(MailchimpError):
        MailchimpClients(limiter=None).for_instance(instance)  # type: ignore[arg-type]
    await ap.close()


def test_file_references_are_read_only_inside_the_secrets_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets, elsewhere = tmp_path / "secrets", tmp_path / "elsewhere"
    secrets.mkdir()
    elsewhere.mkdir()
    (secrets / "key").write_text("s3cret\n")
    (elsewhere / "key").write_text("not a secret\n")
    (secrets / "link").symlink_to(elsewhere / "key")
    monkeypatch.setenv("TANDEM_SECRETS_DIRS", str(secrets))
    assert resolve_secret(f"file:{secrets / 'key'}") == "s3cret"
    for ref in (
        f"file:{elsewhere / 'key'}",
        f"file:{secrets}/../elsewhere/key",
        f"file:{secrets / 'link'}",
        "file:/etc/passwd",
        "file:key",
    ):
        with pytest.raises(SecretUnavailable, match="outside the secrets directories"):
            resolve_secret(ref)
    monkeypatch.delenv("TANDEM_SECRETS_DIRS")
    with pytest.raises(SecretUnavailable):  # by default only /var/run/secrets/tandem
        resolve_secret(f"file:{secrets / 'key'}")
