"""The range a change's own time (accessplanit's DateUpdated, Mailchimp's fired_at) must fall in (pure).

Those times become event ids, Kafka timestamps, idempotency records (microseconds since the epoch) and the
order in which a contact's changes apply. A time at the edge of what Python can hold
(`0001-01-01T00:00:00+14:00` is in year 0 once in UTC) broke the writer on every redelivery; a change that claims
to have happened before Tandem's epoch or centuries from now is not a change of anyone's contact record. Such a
delivery is refused at the door with a 400 that names the field.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tandem_ingest.domain.errors import InvalidPayload

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def in_range(moment: datetime, field: str) -> datetime:
    """`moment` when EARLIEST <= moment < LATEST; otherwise InvalidPayload naming `field`."""
    try:
        fits = EARLIEST <= moment < LATEST
    except (OverflowError, ValueError):  # arithmetic at the year's limits
        fits = False
    if not fits:
        raise InvalidPayload(
            f"{field} {moment.isoformat()} is out of range: a change's time lies from {EARLIEST:%Y-%m-%d} to "
            f"{LATEST:%Y-%m-%d} (UTC)"
        )
    return moment
