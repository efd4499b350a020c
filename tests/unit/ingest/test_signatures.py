from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tandem_ingest.domain.signatures import parse_header, sign, verify

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


def test_an_absurd_timestamp_is_refused_not_raised() -> None:
    """`t=1<thousands of zeros>` overflowed float arithmetic (and int() past 4300 digits) into a 500."""
    digest = "0" * 64
    for zeros in (400, 4000, 5000):
        assert not verify("s3cret", BODY, f"t=1{'0' * zeros},v1={digest}", now=1_000, tolerance_s=300)
    assert not verify("s3cret", BODY, f"t=²,v1={digest}", now=1_000, tolerance_s=300)
    assert not verify("s3cret", BODY, f"t=-1000,v1={digest}", now=1_000, tolerance_s=300)


def test_a_valid_signature_verifies_with_spaces_after_commas() -> None:
    timestamp, digest = parse_header(sign("s3cret", BODY, 1_000)) or (0, "")
    assert verify("s3cret", BODY, f"t={timestamp}, v1={digest}", now=1_000, tolerance_s=300)


signature_like = st.builds(
    lambda t, v, extra: ",".join([f"t={t}", f"v1={v}", *extra]),
    st.one_of(st.integers(-(10**40), 10**40).map(str), st.text(max_size=30)),
    st.one_of(st.text(alphabet="0123456789abcdefABCDEF", max_size=70), st.text(max_size=70)),
    st.lists(st.text(max_size=20), max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(header=st.one_of(st.none(), st.text(max_size=200), signature_like), now=st.floats(0, 2e10))
def test_any_header_is_parsed_or_refused_never_raised(header: str | None, now: float) -> None:
    parsed = parse_header(header)
    assert parsed is None or (0 <= parsed[0] < 10**12 and len(parsed[1]) == 64)
    assert verify("s3cret", BODY, header, now=now, tolerance_s=300) in (True, False)
