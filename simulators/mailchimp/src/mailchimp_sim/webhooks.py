"""Outgoing audience webhooks: URL verification, async delivery with retries, 410 handling and signing."""

import asyncio
import itertools
import time
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from mailchimp_sim import domain
from mailchimp_sim.errors import ApiError
from mailchimp_sim.service import Change, now
from mailchimp_sim.settings import SimSettings
from mailchimp_sim.store import Store, Webhook

USER_AGENT = "MailChimp"


@dataclass(frozen=True)
class Delivery:
    id: int
    webhook_id: str
    list_id: str
    type: str
    body: str


@dataclass(frozen=True)
class Attempt:
    delivery_id: int
    webhook_id: str
    list_id: str
    url: str
    type: str
    attempt: int
    at: str
    status_code: int | None
    error: str
    outcome: str  # delivered | retrying | failed | disabled | dropped
    body: str


def verification_error(code: int) -> ApiError:
    return ApiError(
        400,
        "Invalid Resource",
        f"We couldn't verify the URL is working. Please double check and try again. HTTP Code: {code}",
    )


class Dispatcher:
    """One FIFO queue per webhook keeps first attempts in event order; retries run beside it, so one failing
    delivery does not hold back later events (Mailchimp promises no ordering either)."""

    def __init__(self, store: Store, settings: SimSettings) -> None:
        self._store = store
        self._settings = settings
        self._ids = itertools.count(1)
        self._queues: dict[str, asyncio.Queue[Delivery]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self.attempts: deque[Attempt] = deque(maxlen=settings.webhook_delivery_log_size)

    async def start(self) -> None:
        self._client = httpx.AsyncClient(headers={"User-Agent": USER_AGENT}, follow_redirects=False)

    async def stop(self) -> None:
        self.reset()
        if self._client is not None:
            await self._client.aclose()

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self._queues.clear()
        self.attempts.clear()

    async def verify(self, url: str) -> None:
        """Mailchimp GETs the URL before accepting a webhook."""
        assert self._client is not None
        try:
            response = await self._client.get(url, timeout=self._settings.webhook_verify_timeout_s)
        except httpx.HTTPError:
            raise verification_error(0) from None
        if not response.is_success:
            raise verification_error(response.status_code)

    def on_change(self, change: Change) -> None:
        events = domain.member_events(change.before, change.after, change.reason)
        if not events:
            return
        hooks = [h for h in self._store.webhooks(change.list_id) if not h.disabled and h.sources.get(change.source)]
        if not hooks:
            return
        definitions = self._store.merge_fields(change.list_id)
        fired_at = now()
        for event in events:
            body = domain.encode_form(
                domain.event_pairs(
                    event,
                    fired_at,
                    definitions,
                    self._settings.webhook_address_format,
                    shape=self._settings.webhook_body_shape,
                )
            )
            for hook in hooks:
                if hook.events.get(event.type):
                    self._enqueue(Delivery(next(self._ids), hook.id, change.list_id, event.type, body))

    def fire_campaign(self, list_id: str, campaign_id: str, subject: str, status: str, reason: str) -> int:
        """Campaign events are not about a member, so ``sources`` do not filter them."""
        pairs = domain.campaign_pairs(
            campaign_id, subject, status, reason, list_id, now(), shape=self._settings.webhook_body_shape
        )
        body = domain.encode_form(pairs)
        hooks = [h for h in self._store.webhooks(list_id) if not h.disabled and h.events.get("campaign")]
        for hook in hooks:
            self._enqueue(Delivery(next(self._ids), hook.id, list_id, "campaign", body))
        return len(hooks)

    def log(self, webhook_id: str | None, limit: int) -> list[dict[str, Any]]:
        rows = [asdict(a) for a in self.attempts if webhook_id is None or a.webhook_id == webhook_id]
        return rows[-limit:]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, delivery: Delivery) -> None:
        queue = self._queues.get(delivery.webhook_id)
        if queue is None:
            queue = self._queues[delivery.webhook_id] = asyncio.Queue()
            self._spawn(self._drain(queue))
        queue.put_nowait(delivery)

    async def _drain(self, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            delivery = await queue.get()
            await self._attempt(delivery, 1)

    async def _retry(self, delivery: Delivery, attempt: int, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self._attempt(delivery, attempt)

    async def _attempt(self, delivery: Delivery, attempt: int) -> None:
        hook = self._store.webhook(delivery.webhook_id)
        if hook is None or hook.disabled:
            self._record(delivery, hook, attempt, None, "webhook deleted or disabled", "dropped")
            return
        status_code: int | None = None
        error = ""
        try:
            assert self._client is not None
            response = await self._client.post(
                hook.url,
                content=delivery.body.encode(),
                headers=self._headers(hook, delivery.body),
                timeout=self._settings.webhook_timeout_s,
            )
            status_code = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if status_code is not None and 200 <= status_code < 300:
            self._record(delivery, hook, attempt, status_code, error, "delivered")
        elif status_code == 410:
            # Mailchimp disables a webhook that answers 410 Gone, without retrying.
            self._store.disable_webhook(hook.id)
            self._record(delivery, hook, attempt, status_code, error, "disabled")
        elif attempt <= len(self._settings.webhook_retry_delays_s):
            self._record(delivery, hook, attempt, status_code, error, "retrying")
            self._spawn(self._retry(delivery, attempt + 1, self._settings.webhook_retry_delays_s[attempt - 1]))
        else:
            self._record(delivery, hook, attempt, status_code, error, "failed")

    def _headers(self, hook: Webhook, body: str) -> dict[str, str]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if hook.signing_enabled:
            headers["X-Mailchimp-Signature"] = domain.sign(hook.signing_secret, int(time.time()), body)
        return headers

    def _record(
        self, delivery: Delivery, hook: Webhook | None, attempt: int, status: int | None, error: str, outcome: str
    ) -> None:
        self.attempts.append(
            Attempt(
                delivery_id=delivery.id,
                webhook_id=delivery.webhook_id,
                list_id=delivery.list_id,
                url=hook.url if hook else "",
                type=delivery.type,
                attempt=attempt,
                at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                status_code=status,
                error=error,
                outcome=outcome,
                body=delivery.body,
            )
        )
