"""Pure parts of `tandem webhooks register`: the URL, masking, the kubectl line, the secret file, the instance."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest

from tandem_cli.main import build_parser
from tandem_cli.webhooks import (
    KUBECTL_SECRET_KEY,
    RegistrationError,
    audience_warnings,
    kubectl_command,
    masked,
    webhook_url,
    with_signing_secret,
    write_secret_file,
)
from tandem_shared.instances import demo_instance


def test_the_url_carries_the_instance_and_its_path_secret() -> None:
    assert webhook_url("https://sync.example.com/", "acme", "s3cret") == (
        "https://sync.example.com/webhooks/mailchimp/acme/s3cret"
    )
    with pytest.raises(RegistrationError):
        webhook_url("sync.example.com", "acme", "s3cret")


def test_masking_hides_every_secret_given() -> None:
    assert masked("https://x/webhooks/mailchimp/a/s3cret already exists", "s3cret", None) == (
        "https://x/webhooks/mailchimp/a/*** already exists"
    )


def test_the_kubectl_line_creates_or_updates_the_secret() -> None:
    line = kubectl_command("tandem-mailchimp", "tandem", "ab12")
    create, apply = line.split(" | ")
    assert shlex.split(create)[:5] == ["kubectl", "create", "secret", "generic", "tandem-mailchimp"]
    assert f"--from-literal={KUBECTL_SECRET_KEY}=ab12" in shlex.split(create)
    assert "--dry-run=client" in shlex.split(create)
    assert shlex.split(apply) == ["kubectl", "apply", "-f", "-", "--namespace", "tandem"]


def test_the_secret_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "signing"
    write_secret_file(path, "first")
    write_secret_file(path, "second")
    assert path.read_text() == "second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["signing"]


def test_the_instance_gains_the_reference_and_a_new_version() -> None:
    instance = demo_instance()
    updated = with_signing_secret(instance, "file:/run/secrets/signing")
    assert updated.mailchimp.webhook_signing_secret == "file:/run/secrets/signing"
    assert updated.version == instance.version + 1
    with pytest.raises(RegistrationError, match="not a secret reference"):
        with_signing_secret(instance, "the-secret-itself")


def test_a_double_opt_in_audience_with_subscribed_new_contacts_is_flagged() -> None:
    instance = demo_instance()
    assert audience_warnings(instance, {"double_optin": False}) == []
    assert "double opt-in" in audience_warnings(instance, {"double_optin": True})[0]
    pending = instance.model_copy(
        update={"mailchimp": instance.mailchimp.model_copy(update={"status_if_new": "pending"})}
    )
    assert audience_warnings(pending, {"double_optin": True}) == []


def test_the_command_is_registered_and_needs_a_public_url() -> None:
    parser = build_parser()
    args = parser.parse_args(["webhooks", "register", "acme", "--public-url", "https://x", "--kubectl-secret", "s"])
    assert (args.instance, args.public_url, args.kubectl_secret) == ("acme", "https://x", "s")
    with pytest.raises(SystemExit):
        parser.parse_args(["webhooks", "register", "acme"])
    with pytest.raises(SystemExit):
        parser.parse_args(
            [
                "webhooks",
                "register",
                "acme",
                "--public-url",
                "https://x",
                "--kubectl-secret",
                "s",
                "--signing-secret-file",
                "f",
            ]
        )
