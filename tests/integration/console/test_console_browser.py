"""The seed's own test steps, in a real browser, against the whole stack (simulators, services, console).

"If your execution has a red circle ... open the 'Logs' tab and click on the 'Show only errors' button, the error
should tell you the cause of the fail. In this case, the User did not have an email address" — and "click the
pause button to 'Pause the instance'. This will prevent any Users/Contacts from syncing."

And who may do it (issue 17): a login first, a viewer refused the pause, an operator doing it (audited), a
cross-site form and a rebound host name refused.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from support.console_access import OPERATOR, PASSWORDS, VIEWER, bearer
from support.stack import RunningStack, running_stack
from support.topics import wait_for_records
from support.waiting import eventually
from tandem_devstack.stack import DEMO_ACCESSPLANIT_ADMIN_KEY, DEMO_MAILCHIMP_API_KEY, DEMO_MAILCHIMP_AUDIENCE
from tandem_shared.contracts import Stage, TraceRecord, TraceStatus, subscriber_hash
from tandem_shared.contracts.topics import TRACE

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
REBOUND = "rebound.attacker.test"
ATTACKER = "http://attacker.test"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A name that resolves to the console's own address, as a rebound DNS name would: its Host is not allowed.
    f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1",
]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("console-browser")
    with running_stack(kafka_bootstrap, redis_url, tmp) as running:
        yield running


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        await launched.close()


async def log_in(page: Page, console: str, name: str) -> None:
    await page.goto(f"{console}/login")
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Password").fill(PASSWORDS[name])
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#whoami")).to_contain_text(name)


@pytest.fixture
async def page(browser: Browser, stack: RunningStack) -> AsyncIterator[Page]:
    context = await browser.new_context()
    opened = await context.new_page()
    await log_in(opened, stack.url("console"), OPERATOR)
    yield opened
    await context.close()


async def instance_paused(stack: RunningStack) -> bool:
    async with httpx.AsyncClient(timeout=10, headers=bearer("viewer")) as client:
        answer = await client.get(f"{stack.url('console')}/api/instances/{stack.instance.id}")
    paused: bool = answer.json()["paused"]
    return paused


async def test_a_viewer_is_refused_pausing_and_an_operator_pauses_and_enables(
    stack: RunningStack, browser: Browser
) -> None:
    console = stack.url("console")
    summary = f"{console}/instances/{stack.instance.id}"
    context = await browser.new_context()
    try:
        viewer = await context.new_page()
        await viewer.goto(summary)
        assert viewer.url.startswith(f"{console}/login?"), "no page without a login"
        await log_in(viewer, console, VIEWER)
        await viewer.goto(summary)
        await viewer.get_by_role("button", name="Pause the instance").click()
        await expect(viewer.locator("h1")).to_have_text("Not allowed")
        await expect(viewer.get_by_role("alert")).to_contain_text("needs the operator role")
        assert not await instance_paused(stack)
    finally:
        await context.close()

    context = await browser.new_context()
    try:
        operator = await context.new_page()
        await log_in(operator, console, OPERATOR)
        await operator.goto(summary)
        await operator.get_by_role("button", name="Pause the instance").click()
        await expect(operator.locator("#instance-state")).to_have_text("Paused")
        await operator.get_by_role("button", name="Enable the instance").click()
        await expect(operator.locator("#instance-state")).to_contain_text("Running")

        await operator.get_by_role("link", name="Audit").click()
        rows = await operator.locator("table.audit tbody tr").all_inner_texts()
        # Newest first: the operator's resume and pause, then the viewer's refused pause.
        resumed, paused, refused = [r for r in rows if f"/instances/{stack.instance.id}/" in r][:3]
        assert all(w in resumed for w in (OPERATOR, "resume", "303")), resumed
        assert all(w in paused for w in (OPERATOR, "pause", "303")), paused
        assert all(w in refused for w in (VIEWER, "pause", "403 refused")), refused
    finally:
        await context.close()


async def test_a_cross_site_form_and_a_rebound_host_are_refused(stack: RunningStack, page: Page) -> None:
    """`page` is logged in as an operator: a page elsewhere still cannot pause the instance in their name."""
    console = stack.url("console")
    target = f"{console}/instances/{stack.instance.id}/pause"
    await page.route(
        f"{ATTACKER}/**",
        lambda route: route.fulfill(
            content_type="text/html",
            body=f'<form method="post" action="{target}"><button type="submit">Win a prize</button></form>',
        ),
    )
    await page.goto(f"{ATTACKER}/prize")
    async with page.expect_response(target) as answered:
        await page.get_by_role("button", name="Win a prize").click()
    assert (await answered.value).status in (401, 403)
    assert not await instance_paused(stack)

    port = urlsplit(console).port
    rebound = await page.goto(f"http://{REBOUND}:{port}/instances/{stack.instance.id}")
    assert rebound is not None and rebound.status == 400
    assert "host not allowed" in await page.content()


async def create_user(stack: RunningStack, **fields: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        created = await client.post(
            f"{stack.url('accessplanit_sim')}/api/v2/User",
            headers={"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"},
            json={"MainCompanyID": "2", **fields},
        )
    assert created.status_code in (200, 201), created.text
    return str(created.json()["ID"])


async def test_a_failed_execution_tells_why_when_showing_only_errors(stack: RunningStack, page: Page) -> None:
    user_id = await create_user(stack, Forenames="No", Surname="Email")
    console = stack.url("console")

    await page.goto(f"{console}/instances/{stack.instance.id}")
    await page.locator(".tabs").get_by_role("link", name="Executions").click()
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Filter").click()

    row = page.locator("tr.row", has_text=f"user {user_id}")

    async def listed() -> bool:
        if await row.count():
            return True
        await page.reload()
        return False

    await eventually(listed, timeout=60, interval=0.5)
    assert await row.locator(".dot").get_attribute("data-status") == "failed"
    assert await page.locator("tr.row .dot").evaluate_all("dots => dots.map(d => d.dataset.status)") == ["failed"] * (
        await page.locator("tr.row").count()
    )

    await row.locator("a.execution-link").click()
    await expect(page.locator(".status-label")).to_have_text("Failed")
    # Step Outputs first: the data section shows the user this execution is about.
    await expect(page.locator("pre.data").first).to_contain_text(f'"ID": "{user_id}"')

    await page.get_by_role("tab", name="Logs").click()
    await page.get_by_role("link", name="Show only errors").click()
    logs = page.locator("table.logs tbody")
    await expect(logs).to_contain_text("User has no email address")
    levels = await logs.locator("td:nth-child(2)").all_inner_texts()
    assert levels and set(levels) == {"error"}


async def test_pausing_from_summary_holds_new_changes(stack: RunningStack, page: Page) -> None:
    console = stack.url("console")
    await page.goto(f"{console}/instances/{stack.instance.id}")
    await expect(page.locator("#instance-state")).to_contain_text("Running")
    await page.get_by_role("button", name="Pause the instance").click()
    await expect(page.locator("#instance-state")).to_have_text("Paused")
    await expect(page.get_by_role("button", name="Enable the instance")).to_be_visible()

    email = f"held.{uuid.uuid4().hex[:8]}@example.com"
    user_id = await create_user(stack, Forenames="Held", Surname="Back", Email=email)

    records = await wait_for_records(
        stack.kafka,
        TRACE,
        TraceRecord,
        where=lambda r: r.instance_id == stack.instance.id and r.accessplanit_user_id == user_id,
        until=lambda found: any(r.stage is Stage.MAPPER for r in found),
        timeout=60,
    )
    mapper = next(r for r in records if r.stage is Stage.MAPPER)
    assert mapper.status is TraceStatus.HELD, mapper.summary
    assert not any(r.stage is Stage.WRITER for r in records)
    async with httpx.AsyncClient(timeout=10) as client:
        member = await client.get(
            f"{stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members/{subscriber_hash(email)}",
            auth=("any", DEMO_MAILCHIMP_API_KEY),
        )
    assert member.status_code == 404, member.text

    # The console shows it amber, as held.
    await page.goto(f"{console}/executions?instance={stack.instance.id}&status=held")
    row = page.locator("tr.row", has_text=email)

    async def listed() -> bool:
        if await row.count():
            return True
        await page.reload()
        return False

    await eventually(listed, timeout=30, interval=0.5)
    assert await row.locator(".dot").get_attribute("data-status") == "held"
