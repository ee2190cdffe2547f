"""The UI's pages: thin aiohttp handlers that read through the store and render Jinja2 templates.

Every page has a stable URL whose query string holds all its state. Pages never contain SQL: they
call the read functions of ``appliance.store.queries`` and ``appliance.store.views`` (and of
``appliance.store.llm`` when it is there) through ``Store.read``. User data reaches the browser
only through autoescaped templates and JSON islands (``<script type="application/json">``).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from statistics import median
from typing import Any

import jinja2
import orjson
from aiohttp import web

from tracebox.appliance import __version__, insights
from tracebox.appliance.appkeys import SETTINGS, STORE
from tracebox.appliance.linker import DependencyLinker
from tracebox.appliance.model import SpanError, normalize_trace_id
from tracebox.appliance.query import QueryError, QueryRequest
from tracebox.appliance.store import queries, views
from tracebox.web import format as fmt
from tracebox.web import graph, waterfall

HERE = Path(__file__).parent
STATIC = HERE / "static"
JINJA = web.AppKey("tracebox.web.jinja", jinja2.Environment)

#: Paths whose responses are the UI's (the API, collector and ops paths keep their own headers).
UI_PREFIXES = ("/static/", "/traces", "/compare", "/dependencies", "/llm", "/alerts", "/sampling-report")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
DEFAULT_LOOKBACK = "1h"
DEFAULT_LIMIT = 20
MAX_UI_LIMIT = 1000
SORTS = {
    "newest": ("Newest first", lambda s: -s.start_us),
    "oldest": ("Oldest first", lambda s: s.start_us),
    "longest": ("Longest first", lambda s: -s.duration_us),
    "shortest": ("Shortest first", lambda s: s.duration_us),
    "spans": ("Most spans", lambda s: -s.span_count),
    "cost": ("Highest LLM cost", lambda s: -(s.llm_cost or 0)),
}

#: Short names of the insight patterns, for markers and the search filter.
INSIGHT_SHORT = {
    insights.N_PLUS_ONE: "N+1",
    insights.SEQUENTIAL_FANOUT: "Sequential",
    insights.QUEUING_GAP: "Gap",
    insights.RETRY_STORM: "Retries",
    insights.OVERSIZED_LLM_CONTEXT: "Big prompt",
    insights.CRITICAL_PATH: "Critical path",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PageError(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def add_routes(app: web.Application) -> None:
    """Register the UI's pages and static files on the server's application."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.policies["json.dumps_function"] = lambda obj, **_: orjson.dumps(
        obj, option=orjson.OPT_NON_STR_KEYS
    ).decode()
    fmt.register(env)
    env.globals["static_version"] = _static_version()
    env.globals["version"] = __version__
    env.globals["lookbacks"] = fmt.LOOKBACKS
    app[JINJA] = env
    app.on_response_prepare.append(_security_headers)
    pages: list[tuple[str, Handler]] = [
        ("/", search),
        ("/traces", find_trace),
        ("/traces/{traceId}", trace_page),
        ("/compare", compare),
        ("/dependencies", dependencies),
        ("/llm", llm),
        ("/alerts", alerts),
        ("/alerts/{id}", alert),
    ]
    for path, handler in pages:
        app.router.add_get(path, _page(handler))
    app.router.add_static("/static/", STATIC, name="static")


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    path = request.path
    if path == "/" or path.startswith(UI_PREFIXES):
        response.headers.update(SECURITY_HEADERS)
        if path.startswith("/static/"):
            response.headers["Cache-Control"] = (
                "public, max-age=31536000, immutable" if "v" in request.query else "no-cache"
            )


def _page(handler: Handler) -> Handler:
    """Answer a bad query string or unknown id with a friendly HTML page, never a 500."""

    async def page(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PageError as exc:
            return await render(
                request, "error.html", status=exc.status, title=exc.title, message=exc.message
            )
        except (fmt.ParamError, QueryError) as exc:
            return await render(request, "error.html", status=400, title="Bad request", message=str(exc))

    return page


async def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    template = request.app[JINJA].get_template(name)
    context.setdefault("title", "")
    context["path"] = request.path
    context["query"] = request.query
    loop = asyncio.get_running_loop()
    html = await loop.run_in_executor(None, lambda: template.render(**context))
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def _trace_id(raw: str) -> str:
    try:
        return normalize_trace_id(raw.strip())
    except SpanError:
        raise PageError(
            400,
            "Not a trace id",
            f"{raw[:64]!r} is not a trace id: trace ids are 1 to 32 hex characters.",
        ) from None


def _text(params: Mapping[str, str], key: str, limit: int = 500) -> str:
    value = params.get(key, "").strip()
    if len(value) > limit:
        raise fmt.ParamError(f"{key} is longer than {limit} characters")
    return value


# -- search --------------------------------------------------------------------------------------


def parse_search(params: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The search form's values (to echo back) and the Zipkin query parameters they mean."""
    form: dict[str, Any] = {
        key: _text(params, key)
        for key in ("serviceName", "spanName", "remoteServiceName", "minDuration", "maxDuration", "endTs")
    }
    form["annotationQuery"] = _text(params, "annotationQuery", 2000) or _text(params, "tags", 2000)
    form["errors"] = params.get("errors", "") not in ("", "0", "false", "off")
    form["lookback"] = _text(params, "lookback") or DEFAULT_LOOKBACK
    form["limit"] = _text(params, "limit") or str(DEFAULT_LIMIT)
    form["pattern"] = params.get("pattern", "")
    if form["pattern"] and form["pattern"] not in insights.PATTERNS:
        raise fmt.ParamError(f"pattern must be one of {', '.join(insights.PATTERNS)}")
    form["sort"] = params.get("sort", "newest")
    if form["sort"] not in SORTS:
        raise fmt.ParamError(f"sort must be one of {', '.join(SORTS)}")
    zipkin: dict[str, str] = {}
    for key in ("serviceName", "spanName", "remoteServiceName"):
        if form[key]:
            zipkin[key] = form[key]
    terms = form["annotationQuery"]
    if form["errors"]:
        terms = f"{terms} and error" if terms else "error"
    if terms:
        zipkin["annotationQuery"] = terms
    min_us = fmt.parse_duration_us(form["minDuration"], "minDuration") if form["minDuration"] else None
    max_us = fmt.parse_duration_us(form["maxDuration"], "maxDuration") if form["maxDuration"] else None
    if max_us is not None and min_us is None:
        min_us = 1
    if min_us is not None:
        zipkin["minDuration"] = str(max(1, min_us))
    if max_us is not None:
        zipkin["maxDuration"] = str(max_us)
    zipkin["lookback"] = str(fmt.parse_lookback_ms(form["lookback"]))
    if form["endTs"]:
        zipkin["endTs"] = str(fmt.parse_end_ts_ms(form["endTs"]))
    try:
        limit = int(form["limit"])
    except ValueError:
        raise fmt.ParamError(f"limit should be a whole number, got {form['limit'][:20]!r}") from None
    if not 1 <= limit <= MAX_UI_LIMIT:
        raise fmt.ParamError(f"limit must be between 1 and {MAX_UI_LIMIT}")
    zipkin["limit"] = str(limit)
    return form, zipkin


async def search(request: web.Request) -> web.Response:
    settings, store = request.app[SETTINGS], request.app[STORE]
    started = time.perf_counter()
    form, params = parse_search(request.query)
    query = QueryRequest.from_params(params, settings.lookback)
    services: list[str] = []
    results: list[views.TraceSummary] = []
    if settings.search_enabled:
        services = await store.read(queries.service_names)
        results = await store.read(
            views.search_summaries, query, settings.strict_trace_id, form["pattern"] or None
        )
    results.sort(key=SORTS[form["sort"]][1])
    lo_us, hi_us = query.window_us
    return await render(
        request,
        "search.html",
        title="Search",
        form=form,
        services=services,
        results=results,
        sorts={key: label for key, (label, _) in SORTS.items()},
        patterns={kind: insights.LABELS[kind] for kind in insights.PATTERNS},
        pattern_short=INSIGHT_SHORT,
        max_duration=max((r.duration_us for r in results), default=0),
        scatter=_scatter(results),
        window=(lo_us, hi_us),
        search_enabled=settings.search_enabled,
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )


def _scatter(results: list[views.TraceSummary]) -> dict[str, Any] | None:
    """Points for the duration-over-time chart, in a 1000 by 160 viewBox."""
    if len(results) < 2:
        return None
    width, height, left, bottom = 1000, 160, 56, 20
    t0 = min(r.start_us for r in results)
    t1 = max(r.start_us for r in results)
    top = max(r.duration_us for r in results) or 1
    span = (t1 - t0) or 1
    points = [
        {
            "x": round(left + 8 + (r.start_us - t0) / span * (width - left - 16), 1),
            "y": round(height - bottom - r.duration_us / top * (height - bottom - 10), 1),
            "r": min(9, 3 + r.span_count**0.5 / 3),
            "summary": r,
        }
        for r in results
    ]
    ticks = [
        {"y": round(height - bottom - f * (height - bottom - 10), 1), "label": fmt.duration(top * f)}
        for f in (0, 0.5, 1)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "bottom": bottom,
        "points": points,
        "ticks": ticks,
        "from": fmt.timestamp(t0),
        "to": fmt.timestamp(t1),
    }


# -- one trace -----------------------------------------------------------------------------------


async def find_trace(request: web.Request) -> web.StreamResponse:
    raw = request.query.get("id", "").strip()
    if not raw:
        raise PageError(400, "No trace id", "Enter a trace id (1 to 32 hex characters) to open a trace.")
    raise web.HTTPFound(f"/traces/{_trace_id(raw)}")


def _load_waterfall(conn, trace_id: str, strict: bool) -> tuple[waterfall.Waterfall | None, list]:
    spans, otel = views.trace_with_otel(conn, trace_id, strict)
    if not spans:
        return None, []
    wf = waterfall.build(trace_id, spans, otel, strict_trace_id=strict)
    return wf, views.trace_findings(conn, spans)


def _insight_panel(wf: waterfall.Waterfall, findings: list) -> tuple[list[dict[str, Any]], dict[int, list]]:
    """Each finding with the waterfall rows it involves, and per row the patterns that mark it."""
    row_of = {span["id"]: row.index for row in wf.rows for span in row.spans}
    panel, marks = [], {}
    for n, finding in enumerate(findings):
        rows = sorted({row_of[i] for i in finding.span_ids if i in row_of})
        panel.append({"n": n, "finding": finding, "rows": rows, "short": INSIGHT_SHORT[finding.kind]})
        if finding.kind != insights.CRITICAL_PATH:
            for index in rows:
                marks.setdefault(index, []).append(INSIGHT_SHORT[finding.kind])
    return panel, {i: sorted(set(m)) for i, m in marks.items()}


async def trace_page(request: web.Request) -> web.Response:
    raw = request.match_info["traceId"]
    trace_id = _trace_id(raw)
    settings, store = request.app[SETTINGS], request.app[STORE]
    started = time.perf_counter()
    wf, findings = await store.read(_load_waterfall, trace_id, settings.strict_trace_id)
    if wf is None:
        raise PageError(404, "Trace not found", f"No trace with id {trace_id} is stored.")
    panel, marks = _insight_panel(wf, findings)
    return await render(
        request,
        "trace.html",
        title=f"{wf.root.service}: {wf.root.name}" if wf.root else trace_id,
        wf=wf,
        insights=panel,
        marks=marks,
        ticks=[(f * 100, fmt.duration(wf.duration_us * f)) for f in (0, 0.25, 0.5, 0.75, 1)],
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )


# -- compare -------------------------------------------------------------------------------------


def _load_compare(conn, a: str, b: str | None, strict: bool) -> dict[str, Any]:
    trace_a = queries.get_trace(conn, a, strict)
    if not trace_a:
        return {"missing": a}
    if b:
        trace_b = queries.get_trace(conn, b, strict)
        if not trace_b:
            return {"missing": b}
        return {
            "a": views.summarize(trace_a),
            "b": views.summarize(trace_b),
            "ops_a": waterfall.operations(trace_a),
            "ops_b": waterfall.operations(trace_b),
            "typical": 0,
        }
    # no second trace: compare against the median of recent traces with the same root operation
    summary = views.summarize(trace_a)
    request = QueryRequest(
        end_ts=summary.start_us // 1000 + 60 * 60 * 1000,
        lookback=24 * 60 * 60 * 1000,
        limit=30,
        service_name=summary.root_service,
        span_name=summary.root_name,
    )
    others = [
        t for t in queries.get_traces(conn, request, strict) if t[0]["traceId"] != trace_a[0]["traceId"]
    ]
    typical: dict[tuple[str, str], dict[str, float]] = {}
    per_trace = [waterfall.operations(t) for t in others]
    for key in {k for ops in per_trace for k in ops}:
        present = [ops[key] for ops in per_trace if key in ops]
        typical[key] = {
            "count": median(o["count"] for o in present),
            "total": median(o["total"] for o in present),
            "max": median(o["max"] for o in present),
        }
    durations = [views.summarize(t).duration_us for t in others]
    return {
        "a": summary,
        "b": None,
        "ops_a": waterfall.operations(trace_a),
        "ops_b": typical,
        "typical": len(others),
        "typical_duration": median(durations) if durations else None,
    }


async def compare(request: web.Request) -> web.Response:
    raw_a, raw_b = request.query.get("a", "").strip(), request.query.get("b", "").strip()
    if not raw_a:
        return await render(request, "compare.html", title="Compare", data=None, form={"a": "", "b": raw_b})
    a = _trace_id(raw_a)
    b = _trace_id(raw_b) if raw_b else None
    settings, store = request.app[SETTINGS], request.app[STORE]
    data = await store.read(_load_compare, a, b, settings.strict_trace_id)
    if "missing" in data:
        raise PageError(404, "Trace not found", f"No trace with id {data['missing']} is stored.")
    rows = []
    for key in sorted(set(data["ops_a"]) | set(data["ops_b"])):
        op_a, op_b = data["ops_a"].get(key), data["ops_b"].get(key)
        total_a = op_a["total"] if op_a else 0
        total_b = op_b["total"] if op_b else 0
        rows.append(
            {
                "service": key[0],
                "name": key[1],
                "a": op_a,
                "b": op_b,
                "delta": total_a - total_b,
                "ratio": (total_a / total_b) if total_b else None,
            }
        )
    rows.sort(key=lambda r: -abs(r["delta"]))
    top = max((abs(r["delta"]) for r in rows), default=0) or 1
    return await render(
        request,
        "compare.html",
        title="Compare",
        data=data,
        rows=rows,
        top=top,
        form={"a": a, "b": b or ""},
    )


# -- dependencies --------------------------------------------------------------------------------


def _window(params: Mapping[str, str], default_lookback: str) -> tuple[dict[str, str], QueryRequest]:
    form = {"lookback": _text(params, "lookback") or default_lookback, "endTs": _text(params, "endTs")}
    zipkin = {"lookback": str(fmt.parse_lookback_ms(form["lookback"]))}
    if form["endTs"]:
        zipkin["endTs"] = str(fmt.parse_end_ts_ms(form["endTs"]))
    return form, QueryRequest.from_params(zipkin)


def _links(conn, lo_us: int, hi_us: int) -> list[dict]:
    linker = DependencyLinker()
    for spans in queries.dependency_spans(conn, lo_us, hi_us):
        linker.put_trace(spans)
    return linker.links()


async def dependencies(request: web.Request) -> web.Response:
    form, window = _window(request.query, DEFAULT_LOOKBACK)
    lo_us, hi_us = window.window_us
    links = await request.app[STORE].read(_links, lo_us, hi_us)
    return await render(
        request,
        "dependencies.html",
        title="Dependencies",
        form=form,
        graph=graph.layout(links),
        graph_node_w=graph.NODE_W,
        links=sorted(links, key=lambda link: (-int(link["callCount"]), link["parent"], link["child"])),
        window=(lo_us, hi_us),
    )


# -- LLM usage --------------------------------------------------------------------------------------

LLM_GROUPS = {
    "model": "Model",
    "provider": "Provider",
    "service": "Service",
    "operation": "Operation",
    "user": "User",
    "tenant": "Tenant",
}
CHART_GROUPS = 6


def _llm_module() -> Any | None:
    try:
        return importlib.import_module("tracebox.appliance.store.llm")
    except ImportError:
        return None


def _load_llm(conn, module, window, group_by: str, bucket_us: int) -> dict[str, Any]:
    return {
        "usage": module.usage(conn, window, group_by),
        "series": module.usage_over_time(conn, window, bucket_us, group_by),
        "finish": module.finish_reasons(conn, window),
        "ttft": module.ttft(conn, window),
        "top": module.top_traces(conn, window, 15),
    }


def _bucket_us(lo_us: int, hi_us: int) -> int:
    """A round bucket size giving at most about 60 bars over the window."""
    for minutes in (1, 5, 10, 15, 30, 60, 120, 360, 720, 1440, 10080):
        if (hi_us - lo_us) / (minutes * 60_000_000) <= 60:
            return minutes * 60_000_000
    return 10080 * 60_000_000


def _stacked(series: list[dict], groups: list[str], lo_us: int, hi_us: int, bucket: int, metric: str):
    """Bars for the spend (or tokens) chart, in a 1000 by 180 viewBox, one stack per bucket."""
    width, height, left, bottom = 1000, 180, 56, 18

    def value(item: dict) -> float:
        if metric == "tokens":
            return item["inputTokens"] + item["outputTokens"]
        return float(item["costUsd"] or 0)

    buckets: dict[int, dict[str, float]] = {}
    for item in series:
        key = str(item["key"]) if item["key"] in groups else "other"
        per = buckets.setdefault(item["bucket"], {})
        per[key] = per.get(key, 0) + value(item)
    top = max((sum(v.values()) for v in buckets.values()), default=0) or 1
    first = lo_us // bucket * bucket
    count = max(1, (hi_us - first) // bucket + 1)
    bar_w = (width - left - 8) / count
    bars = []
    for bucket_start, per in sorted(buckets.items()):
        x = left + 4 + (bucket_start - first) / bucket * bar_w
        y = height - bottom
        for name in [*groups, "other"]:
            if not per.get(name):
                continue
            h = per[name] / top * (height - bottom - 10)
            y -= h
            label = fmt.usd(per[name]) if metric == "cost" else f"{per[name]:,.0f} tokens"
            bars.append(
                {
                    "x": round(x, 1),
                    "y": round(y, 1),
                    "w": round(max(1.0, bar_w - 2), 1),
                    "h": round(h, 1),
                    "group": name,
                    "color": groups.index(name) if name in groups else None,
                    "title": f"{fmt.timestamp(bucket_start)} {name}: {label}",
                }
            )
    ticks = []
    for f in (0, 0.5, 1):
        label = fmt.usd(top * f) if metric == "cost" else f"{top * f:,.0f}"
        ticks.append({"y": round(height - bottom - f * (height - bottom - 10), 1), "label": label})
    return {"width": width, "height": height, "left": left, "bars": bars, "ticks": ticks}


async def llm(request: web.Request) -> web.Response:
    form, window = _window(request.query, "1d")
    form["groupBy"] = request.query.get("groupBy", "model")
    form["serviceName"] = _text(request.query, "serviceName").lower()
    form["model"] = _text(request.query, "model")
    form["metric"] = request.query.get("metric", "cost")
    group_by = form["groupBy"]
    if group_by not in LLM_GROUPS and not (group_by.startswith("tag:") and len(group_by) > 4):
        raise fmt.ParamError(f"groupBy should be one of {', '.join(LLM_GROUPS)} or tag:<key>")
    if form["metric"] not in ("cost", "tokens"):
        raise fmt.ParamError("metric should be cost or tokens")
    module = _llm_module()
    lo_us, hi_us = window.window_us
    context: dict[str, Any] = {"form": form, "window": (lo_us, hi_us), "groups": LLM_GROUPS}
    if module is None:
        return await render(request, "llm.html", title="LLM usage", available=False, **context)
    llm_window = module.LlmWindow(lo_us, hi_us, form["serviceName"] or None, form["model"] or None)
    bucket = _bucket_us(lo_us, hi_us)
    data = await request.app[STORE].read(_load_llm, module, llm_window, group_by, bucket)
    names = [str(u["key"]) for u in data["usage"][:CHART_GROUPS]]
    totals = {
        key: sum(u[key] or 0 for u in data["usage"])
        for key in ("calls", "inputTokens", "outputTokens", "cacheReadTokens", "costUsd")
    }
    finish_by_model: dict[str, list[dict]] = {}
    for item in data["finish"]:
        finish_by_model.setdefault(str(item["model"]), []).append(item)
    return await render(
        request,
        "llm.html",
        title="LLM usage",
        available=True,
        data=data,
        totals=totals,
        chart=_stacked(data["series"], names, lo_us, hi_us, bucket, form["metric"]),
        chart_groups=names,
        bucket=bucket,
        finish_by_model=finish_by_model,
        **context,
    )


# -- alerts ---------------------------------------------------------------------------------------


def _alert_store() -> Any | None:
    try:
        return importlib.import_module("tracebox.detectors.alert_store")
    except ImportError:
        return None


def _missing_table(exc: Exception) -> bool:
    return "no such table" in str(exc)


def _load_alerts(conn, module, status: str | None, service: str | None) -> list[dict] | None:
    try:
        return module.list_alerts(conn, status=status, service=service, limit=200)
    except Exception as exc:
        if _missing_table(exc):
            return None
        raise


def _load_alert(conn, module, alert_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {"alert": None, "deliveries": None, "silences": None}
    try:
        out["alert"] = module.get_alert(conn, alert_id)
    except Exception as exc:
        if _missing_table(exc):
            out["missing"] = True
            return out
        raise
    outbox = _optional("tracebox.detectors.notify.outbox")
    if outbox is not None and out["alert"] is not None:
        try:
            out["deliveries"] = outbox.list_deliveries(conn, alert_id=alert_id, limit=20)
        except Exception as exc:
            if not _missing_table(exc):
                raise
    silences = _optional("tracebox.detectors.notify.silences")
    if silences is not None:
        try:
            out["silences"] = silences.list_silences(conn, int(time.time() * 1e6))
        except Exception as exc:
            if not _missing_table(exc):
                raise
    return out


def _optional(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


async def alerts(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status not in (None, "firing", "resolved"):
        raise fmt.ParamError("status should be firing or resolved")
    service = _text(request.query, "serviceName").lower() or None
    module = _alert_store()
    found = None
    if module is not None:
        found = await request.app[STORE].read(_load_alerts, module, status, service)
    return await render(
        request,
        "alerts.html",
        title="Alerts",
        alerts=found or [],
        available=found is not None,
        form={"status": status or "", "serviceName": service or ""},
    )


#: Counts describe the sample, not the signal: they are listed in the tables, not charted.
_COUNT_KEYS = frozenset(("calls", "count", "errors", "n", "traces", "windows", "spans"))


def _mark(key: str, value: Any, x: float) -> dict[str, Any]:
    """An observed dot; its label sits on whichever side of the dot has room."""
    right = x < 600
    return {
        "key": key,
        "value": value,
        "x": round(x, 1),
        "label_x": round(x + (64 if right else 36), 1),
        "anchor": "start" if right else "end",
    }


def _evidence(alert: dict[str, Any]) -> dict[str, Any] | None:
    """A band chart of the alert's signal: from the expected value to the threshold, and the observed dot.

    The signal is the first measure both sides report (errorRatio, medianUs, input tokens...), so
    one scale serves the band and the dot; counts and p-values stay in the tables.
    """
    expected, observed = alert.get("expected") or {}, alert.get("observed") or {}
    signal = next(
        (
            key
            for key, value in observed.items()
            if key in expected
            and key not in _COUNT_KEYS
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and isinstance(expected[key], int | float)
        ),
        None,
    )
    if signal is None:
        return None
    upper_key = next(
        (k for k in expected if k.startswith("threshold") or k in ("upper", "p90Us", "p99Us")), None
    )
    low = float(expected[signal])
    high = float(expected[upper_key]) if upper_key and isinstance(expected[upper_key], int | float) else low
    seen = float(observed[signal])
    top = max(low, high, seen) * 1.1 or 1.0
    scale = 900 / top
    band_label = f"expected {signal} {low:g}" + (f" to {upper_key} {high:g}" if upper_key else "")
    return {
        "band": (min(low, high) * scale, max(low, high) * scale),
        "band_label": band_label,
        "marks": [_mark(signal, observed[signal], seen * scale)],
        "top": top,
    }


async def alert(request: web.Request) -> web.Response:
    alert_id = request.match_info["id"]
    if len(alert_id) > 64:
        raise fmt.ParamError("alert ids are at most 64 characters")
    module = _alert_store()
    data = await request.app[STORE].read(_load_alert, module, alert_id) if module else {"missing": True}
    if data.get("missing"):
        raise PageError(404, "Alerts are not available", "The anomaly engine's alert store is not set up.")
    if data["alert"] is None:
        raise PageError(404, "Alert not found", f"No alert with id {alert_id!r} is known.")
    return await render(
        request,
        "alert.html",
        title="Alert",
        alert=data["alert"],
        evidence=_evidence(data["alert"]),
        deliveries=data["deliveries"],
        silences=data["silences"],
    )
