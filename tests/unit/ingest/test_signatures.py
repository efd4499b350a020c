from __future__ import annotations

from tandem_ingest.domain.signatures import sign, verify

BODY = b'{"Data":{"ID":"1"}}'


def test_a_fresh_signature_over_the_exact_body_verifies() -> None:
    header = sign("s3cret", BODY, 1_000)
    assert verify("s3cret", BODY, header, now=1_010, tolerance_s=300)


def test_wrong_secret_changed_body_stale_or_missing_header_is_refused() -> None:
    header = sign("s3cret", BODY, 1_000)
    assert not verify("other", BODY, header, now=1_000, tolerance_s=300)
    assert not verify("s3cret", BODY + b" ", header, now=1_000, tolerance_s=300)
    assert not verify("s3cret", BODY, header, now=1_301, tolerance_s=300)
    assert not verify("s3cret", BODY, None, now=1_000, tolerance_s=300)
    assert not verify("s3cret", BODY, "t=abc,v1=00", now=1_000, tolerance_s=300)
    assert not verify("s3cret", BODY, "garbage", now=1_000, tolerance_s=300)
