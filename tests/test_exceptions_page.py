"""The exceptions page end to end, as a finance operator uses it: headless Chromium (Debian's
``chromium``, driven by Playwright; no browser download) against ``remitflow serve``'s app under
uvicorn on a free loopback port, after a real ``remitflow run`` on the local Kafka and Redis.

Log in, filter the queue, open a case and read its lineage, confirm the suggested pair, see
both items leave the queue, and check the journal went out once.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from remitflow.api import create_app
from tests.test_api import ALICE, Deployment, only_item, run_pipeline, unmatched
from tests.test_services_smoke import _servers_wanted

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not _servers_wanted(), reason="local servers not running"),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from run_pipeline(tmp_path_factory.mktemp("ui"), seed=8)


@pytest.fixture(scope="module")
def server(deployment: Deployment) -> Iterator[str]:
    """``remitflow serve``'s app under uvicorn in a thread, on a port the OS chose."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(deployment.settings), log_config=None, access_log=False, lifespan="off"
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    made = context.new_page()
    made.set_default_timeout(15_000)
    try:
        yield made
    finally:
        context.close()


def queue_ids(page: Page) -> list[str]:
    return [str(row.get_attribute("data-case")) for row in page.locator("#queue tbody tr").all()]


def log_in(page: Page, base: str, token: str) -> None:
    page.goto(f"{base}/ui/exceptions")
    expect(page).to_have_url(f"{base}/ui/login?next=%2Fui%2Fexceptions")
    page.fill("#token", token)
    page.click("button:has-text('Sign in')")


def test_an_operator_filters_the_queue_and_resolves_a_pair(
    page: Page, server: str, deployment: Deployment, tmp_path: Path
) -> None:
    # Sign in: a wrong token is refused, the right one opens the queue under its name.
    log_in(page, server, "not-a-token")
    expect(page.locator(".error")).to_have_text("That token is not valid.")
    log_in(page, server, ALICE)
    expect(page).to_have_url(f"{server}/ui/exceptions")
    expect(page.locator("#operator")).to_have_text("alice")
    cookie = next(c for c in page.context.cookies() if c["name"] == "remitflow_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ALICE not in cookie["value"]

    everything = {
        r["case_id"] for topic in ("unmatched", "variances") for r in deployment.records[topic]
    }
    assert set(queue_ids(page)) == everything
    expect(page.locator("#total")).to_have_text(str(len(everything)))

    # Filter: the ambiguous items, two remittances and two deposits of one amount.
    rems = unmatched(deployment, "ambiguous", "remittance")
    deps = unmatched(deployment, "ambiguous", "bank_transaction")
    page.select_option("#f-reason", "ambiguous")
    page.click("button:has-text('Apply')")
    expect(page).to_have_url(
        f"{server}/ui/exceptions?entity=&payer=&reason=ambiguous&min_age=&as_of="
    )
    assert set(queue_ids(page)) == {r["case_id"] for r in rems + deps}

    # Open the first remittance: its lineage says where it was read and why it is open.
    rem = rems[0]
    page.click(f"#queue tr[data-case='{rem['case_id']}'] a")
    expect(page.locator("#case-id")).to_have_text(rem["case_id"])
    expect(page.locator("#status")).to_have_text("unmatched")
    source = only_item(rem)["source"]
    read = page.locator("#lineage tr.step-read")
    expect(read).to_contain_text(source["file"])
    expect(read).to_contain_text(f"@ byte {source['offset']}")
    expect(page.locator("#lineage tr.step-decided")).to_contain_text("ambiguous")

    # The suggestions are the open deposits, those of the same amount first.
    suggested = page.locator("#suggestions tbody tr")
    first = str(suggested.first.get_attribute("data-case"))
    assert first in {d["case_id"] for d in deps}
    page.screenshot(path=str(tmp_path / "case.png"), full_page=True)
    reason = "Same amount and day; trace confirmed with the payer"
    suggested.first.locator("input[name=reason]").fill(reason)
    suggested.first.locator("button:has-text('Confirm pair')").click()

    # The case the pair made: matched by the operator, with the reason in its lineage.
    expect(page.locator("#notice")).to_contain_text("Pair confirmed")
    expect(page.locator("#status")).to_have_text("matched")
    expect(page.locator("#resolution")).to_contain_text("alice")
    expect(page.locator("#resolution")).to_contain_text(reason)
    expect(page.locator("#lineage tr.step-resolved")).to_contain_text("alice")
    expect(page.locator("#ledger-status")).to_have_text("posted")
    made = page.locator("#case-id").inner_text()
    journal_key = page.locator("#journal code").first.inner_text()

    # Both items have left the queue; the other two are still there.
    page.goto(f"{server}/ui/exceptions?reason=ambiguous")
    left = set(queue_ids(page))
    assert left == {r["case_id"] for r in rems + deps} - {rem["case_id"], first}
    assert made not in left
    journals = [j for j in deployment.topic("erp-postings") if j["idempotency_key"] == journal_key]
    assert len(journals) == 1 and journals[0]["case_id"] == made

    # The same form sent again (a double click, a back button) posts nothing more.
    page.goto(f"{server}/ui/cases/{rem['case_id']}")
    expect(page.locator("#status")).to_have_text("resolved")
    expect(page.locator("#actions")).to_have_count(0)


def test_a_deposit_is_marked_non_payer_cash_and_forms_need_the_session(
    page: Page, server: str, deployment: Deployment
) -> None:
    log_in(page, server, ALICE)
    dep = unmatched(deployment, "end_of_input", "bank_transaction")[0]
    page.goto(f"{server}/ui/cases/{dep['case_id']}")
    form = page.locator("#non-payer-cash")
    form.locator("input[name=reason]").fill("Refund from the bank, not a claim payment")
    form.locator("button").click()
    expect(page.locator("#notice")).to_contain_text("non-payer cash")
    expect(page.locator("#status")).to_have_text("resolved")
    page.goto(f"{server}/ui/exceptions")
    assert dep["case_id"] not in queue_ids(page)

    # A form posted without the session's CSRF token (another site's form) is refused.
    other = unmatched(deployment, "end_of_input", "remittance")[0]
    forged: Any = page.request.post(
        f"{server}/ui/cases/{other['case_id']}/confirm-pair",
        form={"counterpart": dep["case_id"], "reason": "forged"},
        max_redirects=0,
    )
    assert forged.status == 403

    # Signing out ends the session.
    page.goto(f"{server}/ui/exceptions")
    page.click("button:has-text('Sign out')")
    expect(page).to_have_url(f"{server}/ui/login")
    page.goto(f"{server}/ui/exceptions")
    expect(page).to_have_url(f"{server}/ui/login?next=%2Fui%2Fexceptions")
