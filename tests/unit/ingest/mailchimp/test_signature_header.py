"""X-Mailchimp-Signature headers are whatever the sender put there: odd ones are refused, never an error."""

from __future__ import annotations

from tandem_ingest.domain.signatures import sign, verify

BODY = b"type=profile&fired_at=2026-01-01+00%3A00%3A00"


def test_mailchimps_signature_format_verifies() -> None:
    assert verify("ab" * 32, BODY, sign("ab" * 32, BODY, 1_700_000_000), now=1_700_000_100, tolerance_s=300)


def test_a_non_ascii_digest_is_refused_not_raised() -> None:
    assert not verify("s", BODY, "t=1000,v1=é" + "0" * 63, now=1_000, tolerance_s=300)
    assert not verify("s", BODY, "t=1000,v1=\udcff", now=1_000, tolerance_s=300)
