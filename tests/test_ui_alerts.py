"""The alert pages in a real headless Chromium, on alerts the engine raised from a replayed fault."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import Tracebox, start_tracebox
from tests.test_engine_server import BURST, KEEP_HISTORY, drained, post, traffic
from tests.test_ui import CHROMIUM, CHROMIUM_ARGS, SHOTS


@pytest.fixture(scope="module")
def alerted(tmp_path_factory) -> Iterator[Tracebox]:
    server = start_tracebox(tmp_path_factory.mktemp("ui-alerts") / "t.db", *KEEP_HISTORY)
    spans = traffic()
    post(server, spans)
    drained(server, len(spans))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(alerted) -> Iterator:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        yield page
        browser.close()


def test_alert_list_and_detail_show_the_evidence(alerted, page):
    [burst] = [
        a
        for a in alerted.get_json("/api/tracebox/alerts")
        if a["kind"] == "error" and a["service"] == "payments"
    ]
    assert BURST.start * 1_000_000 <= burst["startedAt"] <= BURST.end * 1_000_000  # raised by the fault
    page.goto(alerted.url + "/alerts?serviceName=payments")
    row = page.locator("table.alerts-table tbody tr", has_text="payments")
    assert row.count() == 1
    assert "error" in row.inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "alerts-list.png"), full_page=True)

    row.locator("a").first.click()
    page.wait_for_url(f"**/alerts/{burst['id']}")
    heading = page.locator("h1").inner_text()
    assert "error" in heading and "payments" in heading
    assert page.locator(f"code:text('{burst['id']}')").count() == 1
    assert page.locator("figure.evidence svg circle.observed").count() >= 1  # the observed values, drawn
    examples = page.locator("a[href^='/traces/']")
    assert examples.count() == len(burst["traceIds"]) > 0
    page.screenshot(path=str(SHOTS / "alert-detail.png"), full_page=True)

    examples.first.click()  # an example trace opens its waterfall
    page.wait_for_url("**/traces/*")
    assert page.locator(".waterfall, [data-span-id]").count() > 0


def test_unknown_alert_is_a_friendly_404(alerted, page):
    response = page.goto(alerted.url + "/alerts/does-not-exist")
    assert response.status == 404
    assert "not found" in page.content().lower()
