"""The web UI against a live server loaded with demo traffic: plain HTTP checks and real headless Chromium.

The browser tests share one Chromium for the module and save screenshots to
``artifacts/screenshots/`` so a reviewer can look at what the tests saw.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests

from tests.conftest import Tracebox, start_tracebox
from tracebox.appliance import demo
from tracebox.appliance.store.views import summarize
from tracebox.web import format as fmt
from tracebox.web import waterfall

SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS = '"><img src=x onerror=alert(1)></script><script>alert(2)</script>'
XSS_TRACE = "00000000deadbeef0000000000abc123"
PAGES = ["/", "/dependencies", "/compare", "/llm", "/alerts"]


def _xss_trace(now_us: int) -> list[dict]:
    root = {
        "traceId": XSS_TRACE,
        "id": "00000000000000a1",
        "name": f"get {XSS}",
        "kind": "SERVER",
        "timestamp": now_us - 5_000_000,
        "duration": 120_000,
        "localEndpoint": {"serviceName": "xss-svc"},
        "tags": {"http.path": XSS, XSS[:40]: "key-is-evil", "error": XSS},
        "annotations": [{"timestamp": now_us - 4_990_000, "value": XSS}],
    }
    child = {
        "traceId": XSS_TRACE,
        "id": "00000000000000a2",
        "parentId": "00000000000000a1",
        "name": "call",
        "kind": "CLIENT",
        "timestamp": now_us - 4_980_000,
        "duration": 50_000,
        "localEndpoint": {"serviceName": "xss-svc"},
        "remoteEndpoint": {"serviceName": "evil<b>svc"},
    }
    return [root, child]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> Iterator[tuple[Tracebox, list[list[dict]]]]:
    server = start_tracebox(
        tmp_path_factory.mktemp("ui") / "tracebox.db",
        "--autocomplete-keys",
        "gen_ai.provider.name,http.method",
    )
    try:
        traces = demo.generate_traces(150, seed=8, spread_s=1200)
        for batch in demo.iter_batches(traces, 500):
            response = server.post("/api/v2/spans", demo.encode_zipkin_json(batch))
            assert response.status_code == 202, response.text
        now_us = time.time_ns() // 1000
        response = server.post("/api/v2/spans", orjson.dumps(_xss_trace(now_us)))
        assert response.status_code == 202, response.text
        yield server, traces
    finally:
        server.stop()


def _llm_trace(traces: list[list[dict]]) -> str:
    for trace in traces:
        if sum("gen_ai.usage.output_tokens" in s.get("tags", {}) for s in trace) >= 2:
            return trace[0]["traceId"]
    raise AssertionError("demo traffic has no trace with two LLM calls")


# -- plain HTTP ------------------------------------------------------------------------------------


def _assert_security_headers(response: requests.Response) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    script_src = re.search(r"script-src ([^;]*)", csp)
    assert script_src and "'self'" in script_src[1], csp
    assert "unsafe-inline" not in script_src[1] and "unsafe-eval" not in script_src[1], csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("X-Frame-Options") == "DENY"
    assert response.headers.get("Referrer-Policy")


def test_pages_answer_with_security_headers(loaded):
    server, traces = loaded
    trace_id = traces[-1][0]["traceId"]
    for path in [
        *PAGES,
        f"/traces/{trace_id}",
        f"/compare?a={trace_id}",
        "/static/app.js",
        "/static/app.css",
    ]:
        response = server.get(path)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
        _assert_security_headers(response)
    for path in ("/traces/ffffffffffffffff", "/alerts/nope", "/?limit=x"):
        response = server.get(path)
        assert response.status_code in (400, 404), path
        _assert_security_headers(response)
    # the API keeps its own headers: the UI does not stamp a CSP on JSON answers
    assert "Content-Security-Policy" not in server.get("/api/v2/services").headers


def test_user_data_is_escaped_on_every_page(loaded):
    server, _ = loaded
    pages = [
        f"/traces/{XSS_TRACE}",
        "/?serviceName=xss-svc&lookback=1h",
        f"/?annotationQuery={requests.utils.quote(XSS)}",
        f"/compare?a={XSS_TRACE}&b={XSS_TRACE}",
        f"/compare?a={XSS_TRACE}",
        "/dependencies",
        f"/?serviceName={requests.utils.quote(XSS)}",
        f"/traces?id={requests.utils.quote(XSS)}",
        f"/?minDuration={requests.utils.quote(XSS)}",
    ]
    for path in pages:
        body = server.get(path).text
        assert "<img src=x" not in body, path
        assert "<script>alert" not in body, path
        assert "evil<b>" not in body, path
    trace_page = server.get(f"/traces/{XSS_TRACE}").text
    assert "get &#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in trace_page  # shown, as text
    # the JSON island cannot close its <script> element
    island = trace_page.split('id="trace-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in island and ">" not in island
    assert orjson.loads(island)["traceId"] == XSS_TRACE
    assert "evil&lt;b&gt;svc" in server.get("/dependencies").text


@pytest.mark.parametrize(
    "path",
    [
        "/?minDuration=fast",
        "/?maxDuration=1x",
        "/?minDuration=2s&maxDuration=1s",
        "/?limit=0",
        "/?limit=abc",
        "/?lookback=-1",
        "/?lookback=soon",
        "/?endTs=tomorrow",
        "/?sort=random",
        "/?annotationQuery=%3Dvalue",
        "/traces/not-hex",
        "/traces?id=",
        "/traces?id=xyz",
        "/compare?a=zz",
        "/compare?a=abc&b=qq",
        "/dependencies?lookback=nope",
        "/dependencies?endTs=x",
        "/llm?lookback=0",
        "/llm?groupBy=nonsense",
        "/llm?metric=joules",
        "/alerts?status=maybe",
    ],
)
def test_bad_query_strings_get_a_friendly_400(loaded, path):
    server, _ = loaded
    response = server.get(path)
    assert response.status_code == 400, f"{path}: {response.status_code}"
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<h1>" in response.text and 'class="message"' in response.text
    assert "Traceback" not in response.text


def test_unknown_trace_is_a_404_page(loaded):
    server, _ = loaded
    response = server.get("/traces/0123456789abcdef")
    assert response.status_code == 404
    assert "Trace not found" in response.text


def test_find_box_redirects_to_the_trace(loaded):
    server, traces = loaded
    trace_id = traces[0][0]["traceId"]
    response = requests.get(
        f"{server.url}/traces", params={"id": f"  {trace_id.upper()} "}, allow_redirects=False
    )
    assert response.status_code == 302
    assert response.headers["Location"] == f"/traces/{trace_id}"


def test_search_filters_are_applied(loaded):
    server, traces = loaded
    body = server.get("/", serviceName="xss-svc").text
    assert XSS_TRACE in body
    body = server.get("/", serviceName="web-frontend", limit="50").text
    assert XSS_TRACE not in body
    ids = re.findall(r'href="/traces/([0-9a-f]+)"', body)
    assert ids, "web-frontend traces should be found"
    by_id = {t[0]["traceId"]: t for t in traces}
    for trace_id in ids:
        assert any(s.get("localEndpoint", {}).get("serviceName") == "web-frontend" for s in by_id[trace_id])
    # errors only: every result has an error span
    body = server.get("/", errors="1", limit="50").text
    for trace_id in set(re.findall(r'href="/traces/([0-9a-f]+)"', body)):
        spans = by_id.get(trace_id) or []
        assert trace_id == XSS_TRACE or any("error" in s.get("tags", {}) for s in spans)
    # a duration bound with a unit
    body = server.get("/", minDuration="3s", limit="50").text
    for trace_id in set(re.findall(r'href="/traces/([0-9a-f]+)"', body)):
        assert max(s.get("duration", 0) for s in by_id[trace_id]) >= 3_000_000


def test_duration_parsing():
    assert fmt.parse_duration_us("250ms", "x") == 250_000
    assert fmt.parse_duration_us("2s", "x") == 2_000_000
    assert fmt.parse_duration_us("1.5m", "x") == 90_000_000
    assert fmt.parse_duration_us("150", "x") == 150
    assert fmt.parse_lookback_ms("1h") == 3_600_000
    assert fmt.parse_lookback_ms("900000") == 900_000
    for bad in ("", "ms", "-1s", "1y", "1e9"):
        with pytest.raises(fmt.ParamError):
            fmt.parse_duration_us(bad, "x")
    assert fmt.duration(850) == "850µs"
    assert fmt.duration(12_345) == "12.3ms"
    assert fmt.duration(1_250_000) == "1.25s"


def _span(span_id, parent=None, kind=None, ts=0, dur=0, service="svc", shared=False, name="op"):
    span = {"traceId": "00000000000000aa", "id": span_id, "name": name, "timestamp": 1_000_000 + ts}
    span["localEndpoint"] = {"serviceName": service}
    if dur:
        span["duration"] = dur
    if parent:
        span["parentId"] = parent
    if kind:
        span["kind"] = kind
    if shared:
        span["shared"] = True
    return span


def test_waterfall_merges_rpc_halves_and_marks_the_critical_path():
    spans = [
        _span("000000000000000a", dur=1000, service="front", kind="SERVER"),
        _span("000000000000000b", "000000000000000a", "CLIENT", 10, 600, "front", name="call back"),
        _span("000000000000000b", "000000000000000a", "SERVER", 20, 500, "back", shared=True, name="serve"),
        _span("000000000000000c", "000000000000000b", None, 30, 400, "back", name="work"),
        _span("000000000000000d", "000000000000000a", None, 50, 100, "front", name="early"),
        _span("000000000000000e", "000000000000000a", None, 700, 250, "front", name="late"),
    ]
    wf = waterfall.build("00000000000000aa", spans)
    names = [(r.depth, r.service, r.name) for r in wf.rows]
    assert names == [
        (0, "front", "op"),
        (1, "front → back", "serve"),
        (2, "back", "work"),
        (1, "front", "early"),
        (1, "front", "late"),
    ]
    merged = wf.rows[1]
    assert len(merged.spans) == 2 and merged.duration == 600
    critical = {r.name for r in wf.rows if r.critical}
    assert critical == {"op", "serve", "work", "late"}  # "early" overlaps the RPC the root waited on
    assert wf.rows[0].descendants == 4


def test_big_trace_opens_with_deep_levels_collapsed():
    spans = [_span("0000000000000001", dur=10_000)]
    for i in range(2, 1500):
        parent = f"{max(1, i // 3):016x}"
        spans.append(_span(f"{i:016x}", parent, ts=i, dur=10))
    wf = waterfall.build("00000000000000aa", spans)
    visible = [r for r in wf.rows if not r.hidden]
    assert 0 < len(visible) <= waterfall.VISIBLE_ROWS
    assert any(r.collapsed for r in visible)


def test_summary_counts_llm_cost(loaded):
    _, traces = loaded
    trace = next(t for t in traces if t[0]["traceId"] == _llm_trace(traces))
    summary = summarize(trace)
    assert summary.llm_calls >= 2 and summary.llm_cost and summary.llm_cost > 0


# -- real browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}") or dialog.dismiss())
    page.on(
        "console", lambda msg: errors.append(msg.text) if msg.type == "error" and "CSP" in msg.text else None
    )
    yield page
    context.close()
    assert not errors, errors


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def test_browser_search_by_service_and_open_a_trace(loaded, page):
    server, _ = loaded
    page.goto(server.url + "/")
    page.fill("input[name=serviceName]", "llm-router")
    page.select_option("select[name=lookback]", "1d")
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r"serviceName=llm-router"))
    results = page.locator(".result")
    assert results.count() > 0
    for i in range(results.count()):
        assert "llm-router" in results.nth(i).locator(".services").inner_text()
    assert page.locator(".scatter circle").count() == results.count()
    _shot(page, "search-by-service")

    results.first.locator("a.result-link").click()
    page.wait_for_url(re.compile(r"/traces/[0-9a-f]+$"))
    rows = page.locator("#rows .row")
    assert rows.count() > 5
    assert page.locator("#rows .row.crit").count() >= 2
    # collapse the root's subtree, then expand it again
    visible_before = page.locator("#rows .row:visible").count()
    page.locator("#rows .row").first.locator("button.tg").click()
    assert page.locator("#rows .row:visible").count() == 1
    page.locator("#rows .row").first.locator("button.tg").click()
    assert page.locator("#rows .row:visible").count() == visible_before
    _shot(page, "trace-waterfall")


def test_browser_search_by_tag_with_autocomplete(loaded, page):
    server, _ = loaded
    page.goto(server.url + "/?lookback=1d")
    page.focus("input[name=annotationQuery]")
    page.locator("#dl-tags option").first.wait_for(state="attached")
    options = page.eval_on_selector_all("#dl-tags option", "os => os.map(o => o.value)")
    assert "gen_ai.provider.name=anthropic" in options
    page.fill("input[name=annotationQuery]", "gen_ai.provider.name=anthropic")
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r"annotationQuery=gen_ai.provider.name%3Danthropic"))
    assert page.locator(".result").count() > 0
    _shot(page, "search-by-tag")
    page.locator(".result a.result-link").first.click()
    page.wait_for_url(re.compile(r"/traces/"))
    assert "anthropic" in page.locator("#rows").inner_text() or page.locator(".llm-tag").count() > 0


def test_browser_llm_span_shows_tokens_and_cost(loaded, page):
    server, traces = loaded
    trace_id = _llm_trace(traces)
    page.goto(f"{server.url}/traces/{trace_id}")
    total = page.locator("[data-testid=trace-llm-cost]").inner_text()
    assert re.fullmatch(r"\$\d[\d.e-]*", total), total
    llm_rows = page.locator("#rows .row:has(.llm-tag)")
    assert llm_rows.count() >= 2
    llm_rows.last.locator(".nm").click()
    detail = page.locator("[data-testid=llm-detail]")
    detail.wait_for()
    text = detail.inner_text()
    assert re.search(r"Input tokens\s+[\d,]+", text), text
    assert re.search(r"Output tokens\s+[\d,]+", text), text
    assert re.search(r"Cost\s+\$[\d.e-]+", text), text
    assert re.search(r"Finish reason\s+\w+", text), text
    assert re.search(r"Time to first token\s+[\d.]+m?s", text), text
    assert "gen_ai.request.model" in page.locator("#detail").inner_text()
    assert re.search(r"#span-[0-9a-f]{16}$", page.url)
    _shot(page, "trace-llm-span")
    # the span is in the URL: reloading selects it again
    page.reload()
    page.locator("[data-testid=llm-detail]").wait_for()


def test_browser_dependency_graph(loaded, page):
    server, _ = loaded
    page.goto(server.url + "/dependencies?lookback=1d")
    names = set(page.eval_on_selector_all("svg .node text", "ts => ts.map(t => t.textContent)"))
    assert {"api-gateway", "chat", "llm-router", "postgres"} <= names
    edge = page.locator('svg .edge[data-parent="api-gateway"][data-child="chat"] .edge-label')
    assert re.match(r"\d+", edge.text_content())
    assert page.locator("svg .edge.err").count() > 0
    _shot(page, "dependencies")


def test_browser_llm_usage_page(loaded, page):
    server, _ = loaded
    page.goto(server.url + "/llm?lookback=1d")
    spend = page.locator("[data-testid=llm-spend]").inner_text()
    assert re.fullmatch(r"\$\d[\d.,e-]*", spend) and spend != "$0", spend
    assert page.locator(".llm-chart rect.stack").count() > 0
    usage = page.locator("table.grid").first.inner_text()
    assert "gpt-4o" in usage or "claude" in usage
    top = page.locator("table.grid:has(caption:text('Most expensive traces')) a").first
    href = top.get_attribute("href")
    assert href and re.fullmatch(r"/traces/[0-9a-f]+", href)
    _shot(page, "llm-usage")
    page.goto(server.url + "/llm?lookback=1d&groupBy=service&metric=tokens")
    assert "llm-router" in page.locator("table.grid").first.inner_text()


def test_browser_alerts_pages(loaded, page):
    server, _ = loaded
    page.goto(server.url + "/alerts")
    assert page.locator("h1, .empty, .alerts-table").count() > 0
    _shot(page, "alerts")
    response = page.goto(server.url + "/alerts/0123456789abcdef")
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text()


def test_browser_compare_two_traces(loaded, page):
    server, traces = loaded
    roots = [next(s for s in t if "parentId" not in s) for t in traces]
    chats = [r["traceId"] for r in roots if r["localEndpoint"]["serviceName"] == "api-gateway"]
    a, b = chats[0], chats[1]
    page.goto(f"{server.url}/compare?a={a}&b={b}")
    assert page.locator(".compare-table tbody tr").count() > 3
    assert page.locator(".compare-head .side").count() == 2
    _shot(page, "compare")
    page.goto(f"{server.url}/compare?a={a}")  # against the typical trace of its root operation
    assert "median of" in page.locator(".compare-head").inner_text()
    _shot(page, "compare-typical")


def test_browser_xss_payload_stays_text(loaded, page):
    server, _ = loaded
    page.goto(f"{server.url}/traces/{XSS_TRACE}")
    assert XSS in page.locator("#rows").inner_text()
    page.locator("#rows .row").first.locator(".nm").click()
    assert XSS in page.locator("#detail").inner_text()
    assert page.locator("img[src=x]").count() == 0
    _shot(page, "xss-escaped")


def test_browser_pages_fit_a_narrow_screen(loaded, browser):
    server, traces = loaded
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        for name, path in [
            ("narrow-search", "/?lookback=1d"),
            ("narrow-trace", f"/traces/{_llm_trace(traces)}"),
            ("narrow-dependencies", "/dependencies?lookback=1d"),
            ("narrow-alerts", "/alerts"),
            ("narrow-llm", "/llm"),
        ]:
            page.goto(server.url + path)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{path} scrolls sideways by {overflow}px"
            _shot(page, name)
    finally:
        context.close()


# -- trace insights -------------------------------------------------------------------------------


def _n_plus_one_trace(traces: list[list[dict]]) -> tuple[str, list[str]]:
    """A demo trace with an N+1 (computed here, independently of the server) and its span ids."""
    from tracebox.appliance.insights import N_PLUS_ONE, analyse

    for trace in traces:
        for finding in analyse(trace):
            if finding.kind == N_PLUS_ONE:
                return trace[0]["traceId"], finding.span_ids
    raise AssertionError("demo traffic has no N+1 trace")


def test_search_marks_and_filters_traces_by_pattern(loaded):
    server, traces = loaded
    trace_id, _ = _n_plus_one_trace(traces)
    body = server.get("/", lookback="1d", limit="200").text
    assert 'data-pattern="n_plus_one"' in body
    filtered = server.get("/", lookback="1d", limit="200", pattern="n_plus_one").text
    ids = set(re.findall(r'href="/traces/([0-9a-f]+)"', filtered))
    assert trace_id in ids
    from tracebox.appliance.insights import N_PLUS_ONE, analyse

    by_id = {t[0]["traceId"]: t for t in traces}
    for found in ids:  # every result has the pattern, by the analyser run here
        assert any(f.kind == N_PLUS_ONE for f in analyse(by_id[found]))
    assert len(ids) < len(set(re.findall(r'href="/traces/([0-9a-f]+)"', body)))
    assert server.get("/", pattern="bogus").status_code == 400


def test_browser_trace_page_shows_findings_and_highlights_their_spans(loaded, page):
    server, traces = loaded
    trace_id, span_ids = _n_plus_one_trace(traces)
    page.goto(f"{server.url}/traces/{trace_id}")
    panel = page.locator("[data-testid=insights]")
    assert panel.is_visible()
    finding = panel.locator(".finding[data-kind=n_plus_one]")
    assert finding.count() == 1
    assert f"{len(span_ids)} times" in finding.inner_text()
    assert panel.locator(".finding[data-kind=critical_path]").count() == 1
    assert page.locator("#rows .row.ins .ins-mark", has_text="N+1").count() == len(span_ids)
    finding.locator("button").click()
    highlighted = page.locator("#rows .row.hl")
    assert highlighted.count() == len(span_ids)
    ids = set(
        page.evaluate(
            "Array.from(document.querySelectorAll('#rows .row.hl')).map((r) =>"
            " JSON.parse(document.getElementById('trace-data').textContent).rows[+r.dataset.i].spans[0].id)"
        )
    )
    assert ids == set(span_ids)
    assert highlighted.first.is_visible()
    _shot(page, "trace-insights")
    finding.locator("button").click()  # a second click clears the highlight
    assert page.locator("#rows .row.hl").count() == 0
