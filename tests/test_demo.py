"""The demo traffic generator: shapes, attributes, wire encodings and the sender."""

from __future__ import annotations

import asyncio
import base64
import gzip
import statistics
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from tracebox.appliance import demo
from tracebox.appliance.codecs.zipkin_json import decode_v2
from tracebox.appliance.model import local_service, normalize_span, remote_service

END_US = 1_760_000_000_000_000


@pytest.fixture(scope="module")
def traces() -> list[list[dict]]:
    return demo.generate_traces(600, seed=11, end_us=END_US)


def _root(trace: list[dict]) -> dict:
    (root,) = [span for span in trace if "parentId" not in span]
    return root


def _chat_traces(traces: list[list[dict]]) -> list[list[dict]]:
    """The AI-chat requests that went all the way through (not refused by auth, not failed)."""
    return [
        t
        for t in traces
        if local_service(_root(t)) == "api-gateway" and _root(t)["tags"]["http.status_code"] == "200"
    ]


def test_same_seed_same_traffic_and_another_seed_differs() -> None:
    first = demo.generate_traces(40, seed=5, end_us=END_US)
    assert first == demo.generate_traces(40, seed=5, end_us=END_US)
    other = demo.generate_traces(40, seed=6, end_us=END_US)
    assert {t[0]["traceId"] for t in first}.isdisjoint(t[0]["traceId"] for t in other)


def test_every_span_is_normalised_and_survives_zipkin_json(traces: list[list[dict]]) -> None:
    spans = [span for trace in traces for span in trace]
    assert all(normalize_span(span) == span for span in spans)
    assert decode_v2(demo.encode_zipkin_json(spans)) == spans
    assert all(len(span["traceId"]) == 32 for span in spans)
    for trace in traces:
        assert len({span["id"] for span in trace}) == len(trace)
        assert len({span["traceId"] for span in trace}) == 1


def test_traces_fall_in_the_window_and_are_exported_in_end_order(traces: list[list[dict]]) -> None:
    for trace in traces:
        ends = [span["timestamp"] + span["duration"] for span in trace]
        assert ends == sorted(ends)
        assert max(ends) <= END_US
        assert _root(trace)["timestamp"] >= END_US - 3600 * 1_000_000 - 60 * 1_000_000


def test_spans_per_trace_average_near_19() -> None:
    sizes = [len(t) for t in demo.generate_traces(3000, seed=2, end_us=END_US)]
    assert 18.0 <= statistics.mean(sizes) <= 20.5
    assert min(sizes) < 12 < max(sizes)  # the simpler shapes are there too


def test_ai_chat_trace_spans_eight_services_with_correct_links(traces: list[list[dict]]) -> None:
    calls = {
        ("api-gateway", "auth"),
        ("api-gateway", "chat"),
        ("chat", "context"),
        ("context", "vector-store"),
        ("chat", "llm-orchestrator"),
        ("llm-orchestrator", "llm-router"),
    }
    chats = _chat_traces(traces)
    assert len(chats) > 300
    for trace in chats:
        by_id = {span["id"]: span for span in trace}
        root = _root(trace)
        assert root["kind"] == "SERVER" and root["name"] == "post /api/chat"
        assert {"user.id", "tenant.id"} <= root["tags"].keys()
        assert {local_service(span) for span in trace} == set(demo.AI_CHAT_SERVICES)
        seen = set()
        for span in trace:
            if span is root:
                continue
            parent = by_id[span["parentId"]]
            if span.get("kind") == "SERVER":  # every cross-service call: a CLIENT parent in the caller
                assert parent["kind"] == "CLIENT" and remote_service(parent) == local_service(span)
                assert parent["name"] == span["name"]
                seen.add((local_service(parent), local_service(span)))
            elif span.get("kind") == "CONSUMER":
                assert parent["kind"] == "PRODUCER" and remote_service(parent) == "kafka"
                assert (local_service(parent), local_service(span)) == ("chat", "chat-worker")
                assert span["timestamp"] >= parent["timestamp"]
            else:  # CLIENT, PRODUCER and in-process spans stay in their parent's service
                assert local_service(parent) == local_service(span)
                assert span["timestamp"] >= parent["timestamp"]
                assert span["timestamp"] + span["duration"] <= parent["timestamp"] + parent["duration"]
        assert seen == calls
        llm = [s for s in trace if s["tags"].get("gen_ai.operation.name") == "chat"]
        assert llm and all(by_id[s["parentId"]]["kind"] == "SERVER" for s in llm)
        assert all(local_service(s) == "llm-router" and s["kind"] == "CLIENT" for s in llm)
        (search,) = [s for s in trace if local_service(s) == "vector-store"]
        assert search["tags"]["db.system.name"] == "qdrant"


def test_llm_spans_carry_gen_ai_attributes(traces: list[list[dict]]) -> None:
    llm = [s for t in traces for s in t if s["tags"].get("gen_ai.operation.name") == "chat"]
    ok = [s for s in llm if "error" not in s["tags"]]
    assert len(ok) > 400 and len(llm) > len(ok)  # a few provider errors too
    for span in ok:
        tags = span["tags"]
        assert span["name"] == f"chat {tags['gen_ai.request.model']}"
        assert tags["gen_ai.response.model"].startswith(tags["gen_ai.request.model"])
        assert remote_service(span) == tags["gen_ai.provider.name"]
        assert int(tags["gen_ai.usage.input_tokens"]) > 0 and int(tags["gen_ai.usage.output_tokens"]) > 0
        reasons = orjson.loads(tags["gen_ai.response.finish_reasons"])
        assert isinstance(reasons, list) and len(reasons) == 1
        assert 0 < float(tags["gen_ai.response.time_to_first_chunk"]) * 1e6 < span["duration"]
        if "gen_ai.usage.cache_read.input_tokens" in tags:
            assert (
                0
                < int(tags["gen_ai.usage.cache_read.input_tokens"])
                <= int(tags["gen_ai.usage.input_tokens"])
            )
    pairs = {(s["tags"]["gen_ai.provider.name"], s["tags"]["gen_ai.request.model"]) for s in ok}
    assert pairs == {("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4")}
    cached = sum("gen_ai.usage.cache_read.input_tokens" in s["tags"] for s in ok)
    assert 0.1 * len(ok) < cached < 0.9 * len(ok)
    reasons = {s["tags"]["gen_ai.response.finish_reasons"] for s in ok}
    assert {'["stop"]', '["tool_calls"]', '["end_turn"]'} <= reasons
    for span in llm:
        if "error" in span["tags"]:
            assert span["tags"]["http.status_code"] in {"429", "529"}


def test_variety_errors_and_n_plus_one(traces: list[list[dict]]) -> None:
    roots = [local_service(_root(t)) for t in traces]
    assert {"api-gateway", "web-frontend", "billing-job"} == set(roots)
    with_error = sum(any("error" in s["tags"] for s in t) for t in traces)
    assert 0.01 * len(traces) < with_error < 0.2 * len(traces)
    repeated = [t for t in traces if sum(s["name"] == "select messages" for s in t) >= 4]
    assert repeated
    labels = dict(demo.example_traces(traces))
    assert "AI chat" in labels and "web-shop checkout" in labels


def test_daily_pattern_favours_the_afternoon() -> None:
    day = demo.generate_traces(1500, seed=3, end_us=END_US, spread_s=86_400, daily=True)
    hours = [_root(t)["timestamp"] // 3_600_000_000 % 24 for t in day]
    afternoon = sum(12 <= h < 16 for h in hours)
    night = sum(0 <= h < 4 for h in hours)
    assert afternoon > 2 * night


def test_iter_batches_keeps_order_and_sizes(traces: list[list[dict]]) -> None:
    spans = [span for trace in traces for span in trace]
    batches = list(demo.iter_batches(traces, batch_size=512))
    assert [s for b in batches for s in b] == spans
    assert all(len(b) == 512 for b in batches[:-1]) and 0 < len(batches[-1]) <= 512


def _otlp_spans(request: ExportTraceServiceRequest) -> Iterator[tuple[str, str, trace_pb2.Span]]:
    for resource in request.resource_spans:
        (service,) = [a.value.string_value for a in resource.resource.attributes if a.key == "service.name"]
        for scope in resource.scope_spans:
            for span in scope.spans:
                yield service, scope.scope.name, span


def test_otlp_protobuf_round_trips_with_ids_and_typed_attributes(traces: list[list[dict]]) -> None:
    batch = next(demo.iter_batches(traces, 512))
    request = ExportTraceServiceRequest.FromString(demo.encode_otlp_proto(batch))
    by_id = {span["id"]: span for span in batch}
    seen = 0
    kinds = {v: k for k, v in demo._OTLP_KINDS.items()}
    for service, _, out in _otlp_spans(request):
        span = by_id[out.span_id.hex()]
        seen += 1
        assert out.trace_id.hex() == span["traceId"]
        assert (out.parent_span_id.hex() or None) == span.get("parentId")
        assert service == local_service(span)
        assert out.name == span["name"]
        assert kinds.get(out.kind) == span.get("kind")
        assert out.start_time_unix_nano == span["timestamp"] * 1000
        assert out.end_time_unix_nano - out.start_time_unix_nano == span["duration"] * 1000
        attrs = {a.key: a.value for a in out.attributes}
        assert (out.status.code == trace_pb2.Status.STATUS_CODE_ERROR) == ("error" in span["tags"])
        if "peer.service" in attrs:
            assert attrs["peer.service"].string_value == remote_service(span)
        if span["tags"].get("gen_ai.operation.name") == "chat" and "error" not in span["tags"]:
            assert attrs["gen_ai.usage.input_tokens"].WhichOneof("value") == "int_value"
            assert attrs["gen_ai.usage.input_tokens"].int_value == int(
                span["tags"]["gen_ai.usage.input_tokens"]
            )
            assert attrs["gen_ai.usage.output_tokens"].WhichOneof("value") == "int_value"
            assert attrs["gen_ai.response.time_to_first_chunk"].WhichOneof("value") == "double_value"
            reasons = [v.string_value for v in attrs["gen_ai.response.finish_reasons"].array_value.values]
            assert reasons == orjson.loads(span["tags"]["gen_ai.response.finish_reasons"])
            assert [e.name for e in out.events] == ["first chunk"]
    assert seen == len(batch)


def test_otlp_json_has_hex_ids_and_parses_back_to_the_same_request(traces: list[list[dict]]) -> None:
    batch = next(demo.iter_batches(traces, 300))
    data = orjson.loads(demo.encode_otlp_json(batch))
    ids = set()
    for resource in data["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                assert isinstance(span["kind"], int)
                ids.add(span["spanId"])
                for key in ("traceId", "spanId", "parentSpanId"):  # back to protobuf's JSON bytes
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    assert ids == {span["id"] for span in batch}
    parsed = json_format.ParseDict(data, ExportTraceServiceRequest())
    assert parsed == demo.to_otlp(batch)


def test_encode_batches_gzip_and_unknown_format(traces: list[list[dict]]) -> None:
    plain = list(demo.encode_batches(traces[:50], "zipkin-json", batch_size=100))
    zipped = list(demo.encode_batches(traces[:50], "zipkin-json", batch_size=100, gzip=True))
    assert [gzip.decompress(p.body) for p in zipped] == [p.body for p in plain]
    assert sum(p.spans for p in plain) == sum(map(len, traces[:50]))
    with pytest.raises(ValueError, match="unknown format"):
        list(demo.encode_batches(traces, "thrift"))


class Collector:
    """A stand-in server on 127.0.0.1: answers from ``script`` first, then 202, counting spans it kept."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.spans = 0
        self.requests: list[tuple[str, str, str | None]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp has gunzipped it (and answered 400 were it not gzip)
        encoding = request.headers.get("Content-Encoding")
        self.requests.append((request.path, request.content_type, encoding))
        if self.script:
            status, headers = self.script.pop(0)
            return web.Response(status=status, headers=headers, text="busy")
        if request.path == "/api/v2/spans":
            self.spans += len(decode_v2(body))
        elif request.content_type == "application/x-protobuf":
            self.spans += sum(1 for _ in _otlp_spans(ExportTraceServiceRequest.FromString(body)))
        else:
            data = orjson.loads(body)
            self.spans += sum(len(s["spans"]) for r in data["resourceSpans"] for s in r["scopeSpans"])
        return web.Response(status=202 if request.path == "/api/v2/spans" else 200)


@pytest.fixture
def collector() -> Iterator[Collector]:
    """The server runs on its own loop in a thread, so ``asyncio.run`` in the test can drive it."""
    server = Collector()
    app = web.Application()
    app.router.add_post("/api/v2/spans", server.handle)
    app.router.add_post("/v1/traces", server.handle)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_send_retries_after_429_and_counts(collector: Collector, traces: list[list[dict]]) -> None:
    collector.script = [(429, {"Retry-After": "0"})]
    done: list[int] = []
    report = asyncio.run(demo.send(collector.url, traces[:100], batch_size=200, progress=done.append))
    total = sum(map(len, traces[:100]))
    assert collector.spans == total
    assert report.spans_sent == report.spans_acknowledged == total and report.spans_failed == 0
    assert report.retries == 1 and report.statuses[429] == 1
    assert report.requests == len(collector.requests) == -(-total // 200) + 1
    assert report.ok and done[-1] == total and done == sorted(done)
    assert {r[:2] for r in collector.requests} == {("/api/v2/spans", "application/json")}


@pytest.mark.parametrize("fmt", ["otlp-proto", "otlp-json"])
def test_send_otlp_gzipped(collector: Collector, traces: list[list[dict]], fmt: str) -> None:
    collector.script = [(503, {"Retry-After": "0"}), (503, {})]
    report = asyncio.run(
        demo.send(collector.url, traces[:40], fmt=fmt, gzip=True, batch_size=128, concurrency=2)
    )
    total = sum(map(len, traces[:40]))
    assert collector.spans == report.spans_acknowledged == total
    assert report.retries == 2 and report.statuses[503] == 2
    content_type = demo.FORMATS[fmt].content_type
    assert {r for r in collector.requests} == {("/v1/traces", content_type, "gzip")}


def test_send_gives_up_on_client_errors_and_after_bounded_retries(
    collector: Collector, traces: list[list[dict]]
) -> None:
    collector.script = [(400, {})] + [(429, {"Retry-After": "0"})] * 3
    report = asyncio.run(demo.send(collector.url, traces[:20], batch_size=10_000, max_retries=2))
    total = sum(map(len, traces[:20]))
    assert report.spans_failed == total and report.spans_acknowledged == 0 and not report.ok
    assert report.requests == 1 and report.errors == ["400: busy"]
    report = asyncio.run(demo.send(collector.url, traces[:20], batch_size=10_000, max_retries=2))
    assert report.spans_failed == total and report.requests == 3 and report.retries == 2
    assert collector.spans == 0


def test_send_to_a_closed_port_fails_quickly(traces: list[list[dict]]) -> None:
    url = _closed_port_url()
    started = time.monotonic()
    report = asyncio.run(demo.send(url, traces[:5], max_retries=2))
    assert time.monotonic() - started < 5
    assert report.spans_failed == sum(map(len, traces[:5])) and report.statuses[0] == 3


def _closed_port_url() -> str:
    async def grab() -> int:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return port

    return f"http://127.0.0.1:{asyncio.run(grab())}"


def test_send_paces_to_the_rate(collector: Collector, traces: list[list[dict]]) -> None:
    spans = sum(map(len, traces[:10]))
    report = asyncio.run(demo.send(collector.url, traces[:10], batch_size=spans // 4 + 1, rate=spans / 0.3))
    assert report.elapsed_s >= 0.29 and report.spans_acknowledged == spans


def test_retry_delay_reads_seconds_and_dates_and_is_capped() -> None:
    assert demo._retry_delay("2", 0) == 2.0
    assert demo._retry_delay(None, 3) == pytest.approx(0.8)
    assert demo._retry_delay("3600", 0) == 30.0
    assert demo._retry_delay("Wed, 21 Oct 2015 07:28:00 GMT", 1) == 0.0  # in the past
    assert demo._retry_delay("soon", 1) == pytest.approx(0.2)


def test_run_demo_prints_progress_and_links(collector: Collector, capsys: pytest.CaptureFixture[str]) -> None:
    report = demo.run_demo(collector.url, traces=60, seed=4)
    out = capsys.readouterr().out
    assert report.ok and collector.spans == report.spans_acknowledged > 0
    assert "seed 4" in out and f"{report.spans_acknowledged:,} of {report.spans_acknowledged:,} spans" in out
    links = [line for line in out.splitlines() if "/traces/" in line]
    trace_ids = {t[0]["traceId"] for t in demo.generate_traces(60, seed=4, end_us=END_US)}
    assert links and all(line.rsplit("/", 1)[1] in trace_ids for line in links)
    assert all(line.split(": ", 1)[1].startswith(collector.url.rstrip("/") + "/traces/") for line in links)


def test_the_cli_offers_every_demo_format() -> None:
    from tracebox.appliance.cli import DEMO_FORMATS

    assert set(DEMO_FORMATS) == set(demo.FORMATS)
