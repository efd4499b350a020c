from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from tandem_shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_INGEST_", extra="ignore", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = 8000
    # Vendors give up on a webhook after ~10 s; answer 503 before that so they retry rather than time out.
    publish_timeout_s: float = 8.0
    max_body_bytes: int = 256 * 1024
    # A signed delivery older (or newer) than this is refused: a captured request cannot be replayed later.
    signature_tolerance_s: int = 300

    # Each change is published once: the first receipt claims its event id in Redis. A claim in flight expires
    # after this (a crashed publisher cannot hold a change back for long) ...
    dedupe_pending_ttl_s: float = 30.0
    # ... and a published one is remembered this long (longer than any webhook retry, poll overlap or outage that
    # re-delivers the same change; the same as tandem.changes' retention).
    dedupe_done_ttl_s: float = 7 * 24 * 3600.0

    # Unsigned accessplanit deliveries (the default: accessplanit documents no signing) are read back from the API;
    # deliveries of one user within this window share one read, taken after the last of them arrived
    # (accessplanit_changes.CoalescingUserReader). 0 reads once per delivery.
    accessplanit_reread_window_s: float = 0.1
    # ... and one user is read at most once per this interval, however its deliveries are spaced (they wait for the
    # next read and share it).
    accessplanit_reread_min_interval_s: float = 1.0
    # Beyond this many unsigned deliveries of an instance a minute (all replicas together), a delivery is answered at
    # once and its user left to the catch-up poll, which reads a page of users per request (catch_up.py). The
    # default spends at most ~2,400 of accessplanit's 5,000 requests an hour per module on re-reads, leaving the
    # rest to the writer and the poller.
    accessplanit_rereads_per_minute: int = 40

    # The accessplanit catch-up poller (see poller.py).
    poller_enabled: bool = True
    poll_interval_s: float = 60.0
    poll_page_size: int = 100
    # Bounds one round's requests (and so its share of the rate budget); the next round continues from the cursor.
    poll_max_pages: int = 10
    poll_overlap_s: float = 2.0
    # A deferred delivery wakes the poller; rounds never follow each other closer than this.
    poll_wake_min_interval_s: float = 5.0
    # A read answers a deferred delivery only when it began this much after the delivery arrived (replicas' clocks).
    poll_clock_skew_s: float = 1.0
