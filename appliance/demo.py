"""Realistic demo traffic: whole traces, deterministic from a seed, in every wire format tracebox reads.

Most traces are the 8-service AI-chat request of the field's standard walkthrough::

    api-gateway ─> auth (redis, sometimes postgres)
                └> chat ─> postgres (history; sometimes N+1 SELECTs)
                        ├> context ─> openai embeddings
                        │          └> vector-store (qdrant search)
                        ├> llm-orchestrator ─> llm-router ─> openai / anthropic (gen_ai.* CLIENT spans)
                        └> kafka ─> chat-worker ─> postgres

with a web-shop checkout and a periodic background job for variety (~19 spans per trace overall).

Span ids follow OpenTelemetry and W3C ``traceparent``: a call between two services is a CLIENT span
in the caller and a SERVER span with its own id whose parent is the CLIENT span (no B3 shared ids),
so the same traffic is valid both as Zipkin v2 JSON and as OTLP. Trace ids are 128-bit. Spans of a
trace are listed in the order they end, as SDK batch processors export them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip as gzip_lib
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import partial
from itertools import accumulate

import aiohttp
import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from tracebox.appliance.codecs.zipkin_json import encode_spans
from tracebox.appliance.codecs.zipkin_proto import encode_proto
from tracebox.appliance.model import Span, local_service, normalize_span

AI_CHAT_SERVICES = (
    "api-gateway",
    "auth",
    "chat",
    "context",
    "vector-store",
    "llm-orchestrator",
    "llm-router",
    "chat-worker",
)

# Instrumented services and the uninstrumented peers they call: (ipv4, port); peers without an
# address are reached by host name (the LLM providers, Stripe, S3).
_ADDRESSES: dict[str, tuple[str | None, int]] = {
    "api-gateway": ("10.0.1.10", 8080),
    "auth": ("10.0.1.21", 8000),
    "chat": ("10.0.1.32", 8000),
    "context": ("10.0.1.43", 8000),
    "vector-store": ("10.0.2.11", 6333),
    "llm-orchestrator": ("10.0.1.54", 8000),
    "llm-router": ("10.0.1.65", 4000),
    "chat-worker": ("10.0.1.76", 8000),
    "web-frontend": ("10.0.3.10", 3000),
    "cart": ("10.0.3.21", 8080),
    "inventory": ("10.0.3.32", 8080),
    "payment": ("10.0.3.43", 8080),
    "notification-worker": ("10.0.3.54", 8080),
    "billing-job": ("10.0.4.10", 0),
    "postgres": ("10.0.2.21", 5432),
    "redis": ("10.0.2.31", 6379),
    "kafka": ("10.0.2.41", 9092),
    "smtp": ("10.0.2.51", 587),
    "openai": (None, 443),
    "anthropic": (None, 443),
    "stripe": (None, 443),
    "s3": (None, 443),
}
_ENDPOINTS = {
    name: {"serviceName": name, **({"ipv4": ip} if ip else {}), **({"port": port} if port else {})}
    for name, (ip, port) in _ADDRESSES.items()
}

_TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell", "cyberdyne")
_USERS = 240
_USER_WEIGHTS = list(accumulate(1 / (n + 1) for n in range(_USERS)))  # a few heavy users, a long tail


@dataclass(frozen=True)
class _Model:
    provider: str  # gen_ai.provider.name, and the remote service name
    request: str
    response: str
    host: str
    ttft_ms: float  # median time to first chunk
    tokens_per_s: float
    finish: tuple[str, str, str]  # the provider's words for stop, length, tool calls
    response_id: str
    error: tuple[int, str, str]  # status code, error.type, message when the provider refuses


_OPENAI = dict(
    provider="openai",
    host="api.openai.com",
    finish=("stop", "length", "tool_calls"),
    response_id="chatcmpl-",
    error=(429, "RateLimitError", "Error code: 429 - Rate limit reached for requests"),
)
_ANTHROPIC = dict(
    provider="anthropic",
    host="api.anthropic.com",
    finish=("end_turn", "max_tokens", "tool_use"),
    response_id="msg_",
    error=(529, "OverloadedError", "Error code: 529 - Overloaded"),
)
_CHAT_MODELS = (
    _Model(
        request="gpt-4o-mini", response="gpt-4o-mini-2024-07-18", ttft_ms=320, tokens_per_s=110, **_OPENAI
    ),
    _Model(request="gpt-4o", response="gpt-4o-2024-08-06", ttft_ms=480, tokens_per_s=75, **_OPENAI),
    _Model(
        request="claude-sonnet-4",
        response="claude-sonnet-4-20250514",
        ttft_ms=650,
        tokens_per_s=60,
        **_ANTHROPIC,
    ),
)
_MODEL_WEIGHTS = (5, 3, 2)
_TOOLS = ("web_search", "lookup_order", "get_weather", "search_docs")

_SELECT_USER = "SELECT id, tenant_id, plan FROM users WHERE id = $1"
_SELECT_HISTORY = "SELECT * FROM messages WHERE conversation_id = $1 ORDER BY created_at DESC LIMIT 20"
_INSERT_MESSAGES = "INSERT INTO messages (conversation_id, role, content, tokens) VALUES ($1, $2, $3, $4)"
_RESERVE_STOCK = (
    "UPDATE products SET stock = stock - v.qty FROM (VALUES ($1, $2)) AS v(sku, qty) WHERE sku = v.sku"
)
_INSERT_PAYMENT = "INSERT INTO payments (order_id, amount, status) VALUES ($1, $2, $3)"
_SELECT_USAGE = "SELECT sum(tokens) FROM usage_events WHERE tenant_id = $1 AND day = $2"
_INSERT_INVOICE = "INSERT INTO invoices (tenant_id, day, amount) VALUES ($1, $2, $3)"

Handler = Callable[[str, int], tuple[int, int]]
"""Runs a request inside a service: (server span id, start µs) -> (end µs, HTTP status)."""


class _Trace:
    """One trace under construction; times are microseconds from the trace's start."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.trace_id = f"{rng.getrandbits(128):032x}"
        self.spans: list[Span] = []
        user = rng.choices(range(_USERS), cum_weights=_USER_WEIGHTS)[0]
        self.user = f"user-{user:04d}"
        self.tenant = _TENANTS[user % len(_TENANTS)]
        self.client_ip = f"203.0.113.{user % 250 + 1}"

    def new_id(self) -> str:
        return f"{self.rng.getrandbits(64) or 1:016x}"

    def us(self, median_ms: float, sigma: float = 0.5) -> int:
        """A log-normal latency in microseconds around ``median_ms``."""
        return max(1, round(self.rng.lognormvariate(math.log(median_ms * 1000), sigma)))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def add(
        self,
        span_id: str,
        service: str,
        name: str,
        kind: str | None,
        parent: str | None,
        start: int,
        end: int,
        tags: dict[str, object],
        remote: dict | None = None,
        annotations: Sequence[tuple[int, str]] = (),
    ) -> None:
        span: Span = {"traceId": self.trace_id, "id": span_id, "name": name, "timestamp": start}
        span["duration"] = max(1, end - start)
        span["localEndpoint"] = _ENDPOINTS[service]
        if parent:
            span["parentId"] = parent
        if kind:
            span["kind"] = kind
        if remote:
            span["remoteEndpoint"] = remote
        if annotations:
            span["annotations"] = [{"timestamp": ts, "value": value} for ts, value in annotations]
        span["tags"] = tags
        self.spans.append(span)

    def http(
        self,
        parent: str,
        start: int,
        caller: str,
        callee: str,
        route: str,
        handler: Handler,
        *,
        method: str = "POST",
        path: str | None = None,
        server_tags: dict[str, object] | None = None,
        timeout_ms: float | None = None,
    ) -> tuple[int, int]:
        """A call between instrumented services: a CLIENT span in the caller, a SERVER span below it."""
        client_id, server_id = self.new_id(), self.new_id()
        server_start = start + self.us(0.3, 0.6)
        server_end, status = handler(server_id, server_start)
        end = server_end + self.us(0.2, 0.6)
        path = path or route
        name = f"{method} {route}"
        tags = _http_tags(method, path, status, route=route, error_from=500) | (server_tags or {})
        self.add(server_id, callee, name, "SERVER", client_id, server_start, server_end, tags)
        tags = _http_tags(method, path, status, error_from=400)
        if timeout_ms is not None and end - start > timeout_ms * 1000:
            end, status = start + int(timeout_ms * 1000), 504
            tags = {"http.method": method, "http.path": path, "error": "TimeoutError: request timed out"}
        self.add(client_id, caller, name, "CLIENT", parent, start, end, tags, _ENDPOINTS[callee])
        return end, status

    def db(self, parent: str, start: int, service: str, system: str, statement: str, median_ms: float) -> int:
        """A database CLIENT span, named like OpenTelemetry's ``{operation} {table}``."""
        end = start + self.us(median_ms, 0.6)
        tags: dict[str, object] = {"db.system.name": system}
        if system == "redis":
            operation, key = statement.split(" ", 1)
            name, remote = operation.lower(), "redis"
        else:
            operation, key = _sql_target(statement)
            name, remote = f"{operation} {key}", "postgres"
            tags |= {"db.namespace": "app", "db.collection.name": key}
        tags |= {"db.operation.name": operation, "db.query.text": statement}
        self.add(self.new_id(), service, name, "CLIENT", parent, start, end, tags, _ENDPOINTS[remote])
        return end

    def queue(self, parent: str, start: int, producer: str, topic: str, consumer: str, work: Handler) -> int:
        """A message through Kafka: PRODUCER span in ``producer``, CONSUMER span running ``work`` later."""
        producer_id, consumer_id = self.new_id(), self.new_id()
        sent = start + self.us(1.5, 0.5)
        received = sent + self.us(12, 1.0)
        done, _ = work(consumer_id, received)
        tags: dict[str, object] = {"messaging.system": "kafka", "messaging.destination.name": topic}
        kafka = _ENDPOINTS["kafka"]
        send = tags | {"messaging.operation.type": "send"}
        self.add(producer_id, producer, f"send {topic}", "PRODUCER", parent, start, sent, send, kafka)
        process = tags | {"messaging.operation.type": "process", "messaging.consumer.group.name": consumer}
        self.add(
            consumer_id, consumer, f"process {topic}", "CONSUMER", producer_id, received, done, process, kafka
        )
        return sent

    def call(
        self, parent: str, start: int, service: str, name: str, remote: str, median_ms: float, tags: dict
    ) -> int:
        """A CLIENT span to an uninstrumented peer (a SaaS API, a mail server)."""
        end = start + self.us(median_ms, 0.5)
        self.add(self.new_id(), service, name, "CLIENT", parent, start, end, tags, _ENDPOINTS[remote])
        return end

    def local(self, parent: str, start: int, service: str, name: str, median_ms: float, tags: dict) -> int:
        """An in-process span (no kind)."""
        end = start + self.us(median_ms, 0.6)
        self.add(self.new_id(), service, name, None, parent, start, end, tags)
        return end


def _sql_target(statement: str) -> tuple[str, str]:
    words = statement.split()
    operation = words[0].upper()
    marker = {"SELECT": "FROM", "DELETE": "FROM", "INSERT": "INTO", "UPDATE": "UPDATE"}[operation]
    return operation, words[words.index(marker) + 1]


def _http_tags(
    method: str, path: str, status: int, *, error_from: int, route: str | None = None
) -> dict[str, object]:
    tags: dict[str, object] = {"http.method": method, "http.path": path}
    if route:
        tags["http.route"] = route
    tags["http.status_code"] = status
    if status >= error_from:
        tags["error"] = str(status)
    return tags


# --- the AI-chat request --------------------------------------------------------------------------


def _ai_chat(t: _Trace) -> None:
    root, conversation = t.new_id(), f"conv_{t.rng.getrandbits(48):012x}"
    user_tags = {"user.id": t.user, "tenant.id": t.tenant}
    cur, status = t.http(root, t.us(0.4), "api-gateway", "auth", "/auth/verify", partial(_auth, t))
    if status == 200:
        cur, status = t.http(
            root,
            cur + t.us(0.1),
            "api-gateway",
            "chat",
            "/chat/{conversation_id}/messages",
            partial(_chat, t, conversation=conversation),
            path=f"/chat/{conversation}/messages",
            server_tags=user_tags,
        )
    tags = _http_tags("POST", "/api/chat", status, route="/api/chat", error_from=500) | user_tags
    t.add(
        root, "api-gateway", "POST /api/chat", "SERVER", None, 0, cur + t.us(0.3), tags, {"ipv4": t.client_ip}
    )


def _auth(t: _Trace, span_id: str, start: int) -> tuple[int, int]:
    cur = start + t.us(0.1)
    if t.chance(0.4):  # not in the in-process token cache: ask redis, and postgres if redis misses too
        cur = t.db(span_id, cur, "auth", "redis", "GET session:*", 0.4)
        if t.chance(0.2):
            cur = t.db(span_id, cur, "auth", "postgresql", _SELECT_USER, 1.2)
    return cur + t.us(0.2), 401 if t.chance(0.01) else 200


def _chat(t: _Trace, span_id: str, start: int, conversation: str) -> tuple[int, int]:
    cur = start + t.us(0.2)
    if t.chance(0.08):  # the N+1: one SELECT per earlier message
        for _ in range(t.rng.randint(4, 12)):
            cur = t.db(span_id, cur, "chat", "postgresql", "SELECT * FROM messages WHERE id = $1", 0.5)
    else:
        cur = t.db(span_id, cur, "chat", "postgresql", _SELECT_HISTORY, 1.8)
    cur, context = t.http(
        span_id, cur, "chat", "context", "/context/retrieve", partial(_context, t), timeout_ms=2000
    )
    chunks = 5 if context == 200 else 0  # a failed retrieval degrades the answer, not the request
    prompt_tokens = 900 + 180 * chunks + round(t.rng.lognormvariate(math.log(500), 0.9))
    orchestrate = partial(_orchestrate, t, conversation=conversation, prompt_tokens=prompt_tokens)
    cur, status = t.http(span_id, cur, "chat", "llm-orchestrator", "/orchestrate", orchestrate)
    if status == 200:
        cur = t.queue(span_id, cur, "chat", "chat-history", "chat-worker", partial(_save_turn, t))
    return cur + t.us(0.3), status


def _save_turn(t: _Trace, span_id: str, start: int) -> tuple[int, int]:
    return t.db(span_id, start + t.us(0.2), "chat-worker", "postgresql", _INSERT_MESSAGES, 2.0), 200


def _context(t: _Trace, span_id: str, start: int) -> tuple[int, int]:
    cur = _embeddings(t, span_id, start + t.us(0.2))
    collection = f"docs_{t.tenant}"
    slow = t.chance(0.015)  # the vector store stalls past the caller's timeout now and then
    cur, status = t.http(
        span_id,
        cur,
        "context",
        "vector-store",
        "/collections/{collection_name}/points/search",
        lambda sid, s: (s + t.us(1500 if slow else 9, 0.4), 200),
        path=f"/collections/{collection}/points/search",
        server_tags={
            "db.system.name": "qdrant",
            "db.operation.name": "search",
            "db.collection.name": collection,
            "db.vector.query.top_k": 5,
        },
        timeout_ms=800,
    )
    return cur + t.us(0.5), 200 if status == 200 else 503


def _embeddings(t: _Trace, parent: str, start: int) -> int:
    tags = {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "text-embedding-3-small",
        "gen_ai.response.model": "text-embedding-3-small",
        "gen_ai.usage.input_tokens": round(t.rng.lognormvariate(math.log(40), 0.6)) + 1,
        "server.address": "api.openai.com",
    }
    return t.call(parent, start, "context", "embeddings text-embedding-3-small", "openai", 90, tags)


def _orchestrate(
    t: _Trace, span_id: str, start: int, conversation: str, prompt_tokens: int
) -> tuple[int, int]:
    cur = start + t.us(0.5)
    tool = t.chance(0.15)  # the model asks for a tool first, then answers with its result
    for round_ in range(2 if tool else 1):
        wants_tool = tool and round_ == 0
        route = partial(
            _route, t, conversation=conversation, prompt_tokens=prompt_tokens, wants_tool=wants_tool
        )
        cur, status = t.http(span_id, cur, "llm-orchestrator", "llm-router", "/v1/chat/completions", route)
        if status != 200:
            return cur + t.us(0.3), 502
        if wants_tool:
            name = t.rng.choice(_TOOLS)
            tags = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
            cur = t.local(span_id, cur + t.us(0.1), "llm-orchestrator", f"execute_tool {name}", 240, tags)
            prompt_tokens += 60 + round(t.rng.lognormvariate(math.log(400), 0.6))
    return cur + t.us(0.3), 200


def _route(
    t: _Trace, span_id: str, start: int, conversation: str, prompt_tokens: int, wants_tool: bool
) -> tuple[int, int]:
    # Each tenant has a preferred model; the router sends a fifth of requests elsewhere.
    preferred = _TENANTS.index(t.tenant) % len(_CHAT_MODELS)
    if t.chance(0.2):
        preferred = t.rng.choices(range(len(_CHAT_MODELS)), weights=_MODEL_WEIGHTS)[0]
    model = _CHAT_MODELS[preferred]
    cur = start + t.us(0.4)
    for attempt in range(2):  # on a provider error, fall back once to the other provider
        fails = t.chance(0.04 if attempt == 0 else 0.12)
        cur = _llm_chat(t, span_id, cur, model, conversation, prompt_tokens, wants_tool, fails)
        if not fails:
            return cur + t.us(0.3), 200
        model = _CHAT_MODELS[2] if model.provider == "openai" else _CHAT_MODELS[0]
    return cur + t.us(0.3), 502


def _llm_chat(
    t: _Trace,
    parent: str,
    start: int,
    model: _Model,
    conversation: str,
    input_tokens: int,
    wants_tool: bool,
    fails: bool,
) -> int:
    """One LLM call as OpenTelemetry's GenAI conventions describe it: a CLIENT span to the provider."""
    max_tokens = 1024
    tags: dict[str, object] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": model.provider,
        "gen_ai.request.model": model.request,
        "gen_ai.request.max_tokens": max_tokens,
        "gen_ai.request.temperature": 0.7,
        "gen_ai.conversation.id": conversation,
        "server.address": model.host,
    }
    remote = _ENDPOINTS[model.provider]
    name = f"chat {model.request}"
    if fails:
        status, error_type, message = model.error
        end = start + t.us(180, 0.5)
        tags |= {"error.type": error_type, "http.status_code": status, "error": message}
        t.add(t.new_id(), "llm-router", name, "CLIENT", parent, start, end, tags, remote)
        return end
    ttft = t.us(model.ttft_ms * (1 + input_tokens / 8000), 0.45)
    output = 20 + round(t.rng.lognormvariate(math.log(25 if wants_tool else 180), 0.8))
    finish = model.finish[2] if wants_tool else model.finish[0]
    if output >= max_tokens:
        output, finish = max_tokens, model.finish[1]
    end = start + ttft + round(output / (model.tokens_per_s * t.rng.lognormvariate(0, 0.25)) * 1e6)
    tags |= {
        "gen_ai.response.model": model.response,
        "gen_ai.response.id": f"{model.response_id}{t.rng.getrandbits(96):024x}",
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output,
    }
    if input_tokens >= 1024 and t.chance(0.45):  # prompt caching hit on the shared prefix
        tags["gen_ai.usage.cache_read.input_tokens"] = t.rng.randint(1024, input_tokens) // 128 * 128
    tags["gen_ai.response.finish_reasons"] = orjson.dumps([finish]).decode()
    tags["gen_ai.response.time_to_first_chunk"] = round(ttft / 1e6, 4)
    t.add(
        t.new_id(),
        "llm-router",
        name,
        "CLIENT",
        parent,
        start,
        end,
        tags,
        remote,
        [(start + ttft, "first chunk")],
    )
    return end


# --- a web-shop checkout --------------------------------------------------------------------------


def _checkout(t: _Trace) -> None:
    root, cart = t.new_id(), f"{t.rng.getrandbits(32):08x}"
    items = t.rng.randint(1, 4)
    load = partial(_load_cart, t, cart=cart)
    cur, _ = t.http(
        root, t.us(0.5), "web-frontend", "cart", "/cart/{cart_id}", load, method="GET", path=f"/cart/{cart}"
    )
    reserve = partial(_reserve, t, items=items)
    cur, status = t.http(root, cur, "web-frontend", "inventory", "/inventory/reserve", reserve)
    if status == 200:
        cur, status = t.http(root, cur, "web-frontend", "payment", "/payments", partial(_pay, t))
    if status == 200:
        cur = t.queue(root, cur, "web-frontend", "orders", "notification-worker", partial(_email, t))
    tags = _http_tags("POST", "/checkout", status, route="/checkout", error_from=500)
    tags |= {"user.id": t.user, "tenant.id": t.tenant}
    t.add(
        root, "web-frontend", "POST /checkout", "SERVER", None, 0, cur + t.us(1), tags, {"ipv4": t.client_ip}
    )


def _load_cart(t: _Trace, span_id: str, start: int, cart: str) -> tuple[int, int]:
    return t.db(span_id, start + t.us(0.1), "cart", "redis", f"HGETALL cart:{cart}", 0.5), 200


def _reserve(t: _Trace, span_id: str, start: int, items: int) -> tuple[int, int]:
    cur = start + t.us(0.2)
    for _ in range(items):  # one round trip per item, as ORMs like to do
        cur = t.db(span_id, cur, "inventory", "postgresql", "SELECT stock FROM products WHERE sku = $1", 0.7)
    cur = t.db(span_id, cur, "inventory", "postgresql", _RESERVE_STOCK, 1.6)
    return cur + t.us(0.2), 409 if t.chance(0.02) else 200


def _pay(t: _Trace, span_id: str, start: int) -> tuple[int, int]:
    status = 402 if t.chance(0.03) else 200  # card declined
    tags = _http_tags("POST", "/v1/payment_intents", status, error_from=400)
    cur = t.call(span_id, start + t.us(0.3), "payment", "POST /v1/payment_intents", "stripe", 320, tags)
    return t.db(span_id, cur, "payment", "postgresql", _INSERT_PAYMENT, 1.5), status


def _email(t: _Trace, span_id: str, start: int) -> tuple[int, int]:
    tags = {"smtp.command": "DATA", "server.address": "smtp.mail.local"}
    return t.call(span_id, start + t.us(0.3), "notification-worker", "send email", "smtp", 140, tags), 200


# --- a periodic background job ---------------------------------------------------------------------


def _billing_job(t: _Trace) -> None:
    root = t.new_id()
    cur = t.db(root, t.us(2), "billing-job", "postgresql", "SELECT id, plan FROM tenants WHERE active", 2.0)
    for _ in range(t.rng.randint(3, 8)):
        cur = t.db(root, cur, "billing-job", "postgresql", _SELECT_USAGE, 25.0)
    cur = t.db(root, cur, "billing-job", "postgresql", _INSERT_INVOICE, 4.0)
    for attempt in range(2):  # S3 asks for a retry now and then
        status = 503 if attempt == 0 and t.chance(0.05) else 200
        tags = _http_tags("PUT", "/reports/usage.csv", status, error_from=400) | {
            "aws.s3.bucket": "billing-reports"
        }
        cur = t.call(root, cur, "billing-job", "PUT /reports/usage.csv", "s3", 60, tags)
        if status == 200:
            break
    tags = {"job.name": "usage-rollup", "job.schedule": "*/10 * * * *"}
    t.add(root, "billing-job", "usage-rollup", None, None, 0, cur + t.us(1), tags)


_SHAPES: tuple[tuple[Callable[[_Trace], None], float], ...] = (
    (_ai_chat, 0.80),
    (_checkout, 0.12),
    (_billing_job, 0.08),
)


# --- public API -----------------------------------------------------------------------------------


def generate_traces(
    count: int, *, seed: int = 0, end_us: int | None = None, spread_s: float = 3600, daily: bool = False
) -> list[list[Span]]:
    """``count`` whole traces of normalised spans, the same for the same seed and ``end_us``.

    Traces start spread over the ``spread_s`` seconds before ``end_us`` (default: now) and end by it;
    ``daily`` makes starts follow a day's rhythm (busiest at 14:00 UTC). Listed in start order.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    rng = random.Random(seed)
    end_us = time.time_ns() // 1000 if end_us is None else end_us
    spread_us = max(1, int(spread_s * 1_000_000))
    starts = sorted(_start(rng, end_us, spread_us, daily) for _ in range(count))
    shapes = [shape for shape, _ in _SHAPES]
    weights = list(accumulate(weight for _, weight in _SHAPES))
    traces = []
    for start in starts:
        trace = _Trace(rng)
        rng.choices(shapes, cum_weights=weights)[0](trace)
        last_end = max(span["timestamp"] + span["duration"] for span in trace.spans)
        base = max(1, min(start, end_us - last_end))
        trace.spans.sort(key=lambda span: span["timestamp"] + span["duration"])  # the order they end in
        traces.append([normalize_span(_shifted(span, base)) for span in trace.spans])
    return traces


def _start(rng: random.Random, end_us: int, spread_us: int, daily: bool) -> int:
    for _ in range(16):  # rejection sampling against the daily curve; bounded, last draw wins
        start = end_us - int(rng.random() * spread_us)
        hour = start / 3_600_000_000 % 24
        if not daily or rng.random() < (1 + 0.8 * math.cos((hour - 14) / 12 * math.pi)) / 1.8:
            break
    return start


def _shifted(span: Span, base: int) -> Span:
    span["timestamp"] += base
    for annotation in span.get("annotations", ()):
        annotation["timestamp"] += base
    return span


def iter_batches(traces: Iterable[Sequence[Span]], batch_size: int = 512) -> Iterator[list[Span]]:
    """Spans in export order, ``batch_size`` per request as SDK batch processors send them.

    A trace may straddle two batches, as it does with a real exporter.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    batch: list[Span] = []
    for trace in traces:
        for span in trace:
            batch.append(span)
            if len(batch) == batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


# --- wire formats ---------------------------------------------------------------------------------

_OTLP_KINDS = {
    "SERVER": trace_pb2.Span.SPAN_KIND_SERVER,
    "CLIENT": trace_pb2.Span.SPAN_KIND_CLIENT,
    "PRODUCER": trace_pb2.Span.SPAN_KIND_PRODUCER,
    "CONSUMER": trace_pb2.Span.SPAN_KIND_CONSUMER,
}
# Zipkin tags are strings; OTLP attributes carry their type, as the SDKs would have sent them.
_INT_ATTRIBUTES = frozenset(
    (
        "http.status_code",
        "gen_ai.request.max_tokens",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "db.vector.query.top_k",
        "network.peer.port",
    )
)
_DOUBLE_ATTRIBUTES = frozenset(("gen_ai.request.temperature", "gen_ai.response.time_to_first_chunk"))
_ARRAY_ATTRIBUTES = frozenset(("gen_ai.response.finish_reasons",))
_SDK_ATTRIBUTES = {"telemetry.sdk.language": "python", "telemetry.sdk.name": "opentelemetry"}


def to_otlp(spans: Iterable[Span]) -> ExportTraceServiceRequest:
    """An OTLP export request as an SDK would build it: one resource per service (``service.name``),
    one scope per instrumentation, typed attributes, ``error`` as status, annotations as events,
    the remote endpoint as ``peer.service`` / ``network.peer.*`` (``client.address`` on servers).
    """
    request = ExportTraceServiceRequest()
    resources: dict[str, trace_pb2.ResourceSpans] = {}
    scopes: dict[tuple[str, str], trace_pb2.ScopeSpans] = {}
    for span in spans:
        service = local_service(span) or "unknown_service"
        key = (service, _scope_name(span))
        scope = scopes.get(key)
        if scope is None:
            resource = resources.get(service)
            if resource is None:
                resource = resources[service] = request.resource_spans.add()
                resource.resource.attributes.extend(_attributes({"service.name": service, **_SDK_ATTRIBUTES}))
            scope = scopes[key] = resource.scope_spans.add()
            scope.scope.name = key[1]
        _fill(scope.spans.add(), span)
    return request


def _scope_name(span: Span) -> str:
    tags = span.get("tags", {})
    if "gen_ai.operation.name" in tags:
        return "opentelemetry.instrumentation.genai"
    if "messaging.system" in tags:
        return "opentelemetry.instrumentation.kafka"
    if "db.system.name" in tags and span.get("kind") == "CLIENT":
        return "opentelemetry.instrumentation.dbapi"
    if "http.method" in tags:
        return "opentelemetry.instrumentation.http"
    return "tracebox.demo"


def _fill(out: trace_pb2.Span, span: Span) -> None:
    out.trace_id = bytes.fromhex(span["traceId"].rjust(32, "0"))
    out.span_id = bytes.fromhex(span["id"])
    if "parentId" in span:
        out.parent_span_id = bytes.fromhex(span["parentId"])
    out.name = span.get("name", "")
    out.kind = _OTLP_KINDS.get(span.get("kind", ""), trace_pb2.Span.SPAN_KIND_INTERNAL)
    out.start_time_unix_nano = span.get("timestamp", 0) * 1000
    out.end_time_unix_nano = (span.get("timestamp", 0) + span.get("duration", 0)) * 1000
    tags: dict[str, object] = dict(span.get("tags", {}))
    error = tags.pop("error", None)
    remote = span.get("remoteEndpoint", {})
    if "serviceName" in remote:
        tags["peer.service"] = remote["serviceName"]
    address = remote.get("ipv4") or remote.get("ipv6")
    if address:
        tags["client.address" if span.get("kind") == "SERVER" else "network.peer.address"] = address
    if "port" in remote:
        tags["network.peer.port"] = remote["port"]
    out.attributes.extend(_attributes(tags))
    for annotation in span.get("annotations", ()):
        out.events.add(time_unix_nano=annotation["timestamp"] * 1000, name=annotation["value"])
    if error is not None:
        out.status.code = trace_pb2.Status.STATUS_CODE_ERROR
        out.status.message = str(error)


def _attributes(values: dict[str, object]) -> list[KeyValue]:
    return [KeyValue(key=key, value=_any_value(key, value)) for key, value in values.items()]


def _any_value(key: str, value: object) -> AnyValue:
    try:
        if key in _INT_ATTRIBUTES:
            return AnyValue(int_value=int(value))  # type: ignore[call-overload]
        if key in _DOUBLE_ATTRIBUTES:
            return AnyValue(double_value=float(value))  # type: ignore[arg-type]
        if key in _ARRAY_ATTRIBUTES:
            items = orjson.loads(value)  # type: ignore[arg-type]
            return AnyValue(
                array_value=ArrayValue(values=[AnyValue(string_value=str(item)) for item in items])
            )
    except (TypeError, ValueError):
        pass  # not what the convention says: keep the text
    return AnyValue(string_value=str(value))


def encode_zipkin_json(spans: Sequence[Span]) -> bytes:
    return encode_spans(spans)


def encode_zipkin_proto(spans: Sequence[Span]) -> bytes:
    return encode_proto(spans)


def encode_otlp_proto(spans: Sequence[Span]) -> bytes:
    return to_otlp(spans).SerializeToString()


def encode_otlp_json(spans: Sequence[Span]) -> bytes:
    """OTLP/JSON: protobuf's JSON mapping with hex ids and integer enums, as the OTLP spec requires."""
    data = json_format.MessageToDict(to_otlp(spans), use_integers_for_enums=True)
    for resource in data.get("resourceSpans", ()):
        for scope in resource.get("scopeSpans", ()):
            for span in scope.get("spans", ()):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return orjson.dumps(data)


@dataclass(frozen=True)
class WireFormat:
    path: str
    content_type: str
    encode: Callable[[Sequence[Span]], bytes]


FORMATS: dict[str, WireFormat] = {
    "zipkin-json": WireFormat("/api/v2/spans", "application/json", encode_zipkin_json),
    "zipkin-proto": WireFormat("/api/v2/spans", "application/x-protobuf", encode_zipkin_proto),
    "otlp-proto": WireFormat("/v1/traces", "application/x-protobuf", encode_otlp_proto),
    "otlp-json": WireFormat("/v1/traces", "application/json", encode_otlp_json),
}


@dataclass(frozen=True)
class Payload:
    """One request body, ready to post."""

    body: bytes
    spans: int
    gzipped: bool = False


def encode_batches(
    traces: Iterable[Sequence[Span]], fmt: str = "zipkin-json", *, batch_size: int = 512, gzip: bool = False
) -> Iterator[Payload]:
    """Request bodies for ``traces`` in one wire format (lazily; ``list()`` it to pre-encode)."""
    encode = _format(fmt).encode
    for batch in iter_batches(traces, batch_size):
        body = encode(batch)
        yield Payload(gzip_lib.compress(body, 6) if gzip else body, len(batch), gzip)


def _format(fmt: str) -> WireFormat:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}") from None


# --- sending --------------------------------------------------------------------------------------

_RETRYABLE = frozenset((0, 429, 502, 503, 504))  # 0: no answer (connection refused, reset, timed out)
_MAX_RETRY_WAIT_S = 30.0


@dataclass
class SendReport:
    """What a server made of the traffic; ``spans_sent == spans_acknowledged + spans_failed``."""

    endpoint: str
    spans_sent: int = 0
    spans_acknowledged: int = 0
    spans_failed: int = 0
    requests: int = 0  # HTTP attempts, retries included
    retries: int = 0
    bytes_sent: int = 0
    elapsed_s: float = 0.0
    deadline_hit: bool = False  # stopped before every payload was sent
    statuses: Counter[int] = field(default_factory=Counter)  # 0 counts requests that got no answer
    errors: list[str] = field(default_factory=list)  # the first few distinct failures

    @property
    def ok(self) -> bool:
        return self.spans_failed == 0 and not self.deadline_hit

    def _note(self, message: str) -> None:
        if len(self.errors) < 5 and message not in self.errors:
            self.errors.append(message)


async def send(
    url: str,
    traces: Iterable[Sequence[Span]],
    *,
    fmt: str = "zipkin-json",
    batch_size: int = 512,
    concurrency: int = 4,
    gzip: bool = False,
    progress: Callable[[int], None] | None = None,
    rate: float | None = None,
    max_retries: int = 5,
    timeout_s: float = 30.0,
    deadline_s: float = 3600.0,
) -> SendReport:
    """Post ``traces`` to a running server (``{url}/api/v2/spans`` or ``{url}/v1/traces``).

    See ``send_payloads`` for the retry and pacing rules.
    """
    payloads = encode_batches(traces, fmt, batch_size=batch_size, gzip=gzip)
    return await send_payloads(
        url,
        payloads,
        fmt=fmt,
        concurrency=concurrency,
        progress=progress,
        rate=rate,
        max_retries=max_retries,
        timeout_s=timeout_s,
        deadline_s=deadline_s,
    )


async def send_payloads(
    url: str,
    payloads: Iterable[Payload],
    *,
    fmt: str = "zipkin-json",
    concurrency: int = 4,
    progress: Callable[[int], None] | None = None,
    rate: float | None = None,
    max_retries: int = 5,
    timeout_s: float = 30.0,
    deadline_s: float = 3600.0,
) -> SendReport:
    """Post encoded bodies over ``concurrency`` connections.

    429, 503 (and 502/504, no answer) are retried up to ``max_retries`` times after the server's
    ``Retry-After`` (capped at 30 s) or an exponential backoff; any other non-2xx fails the batch.
    ``rate`` paces sending to that many spans per second. Each request times out after ``timeout_s``;
    nothing new starts after ``deadline_s`` (``deadline_hit``). ``progress`` gets the running count of
    spans done (acknowledged or failed) after each batch.
    """
    wire = _format(fmt)
    endpoint = url.rstrip("/") + wire.path
    report = SendReport(endpoint)
    queue = iter(payloads)
    started = time.monotonic()
    stop_at = started + deadline_s
    paced = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal paced
        for payload in queue:  # shared by the workers; each takes the next body
            if rate:
                paced += payload.spans  # a batch leaves when the time its spans stand for is up
                due = started + paced / rate
                await asyncio.sleep(max(0.0, min(due, stop_at) - time.monotonic()))
            if time.monotonic() >= stop_at:
                report.deadline_hit = True
                return
            await _post(session, endpoint, wire.content_type, payload, report, max_retries, stop_at)
            if progress:
                progress(report.spans_acknowledged + report.spans_failed)

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session, asyncio.TaskGroup() as group:
        for _ in range(max(1, concurrency)):
            group.create_task(worker(session))
    report.elapsed_s = time.monotonic() - started
    return report


async def _post(
    session: aiohttp.ClientSession,
    endpoint: str,
    content_type: str,
    payload: Payload,
    report: SendReport,
    max_retries: int,
    stop_at: float,
) -> None:
    headers = {"Content-Type": content_type}
    if payload.gzipped:
        headers["Content-Encoding"] = "gzip"
    report.spans_sent += payload.spans
    for attempt in range(max_retries + 1):
        report.requests += 1
        report.bytes_sent += len(payload.body)
        retry_after = None
        try:
            async with session.post(endpoint, data=payload.body, headers=headers) as response:
                status, text = response.status, await response.text(errors="replace")
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, text = 0, f"{type(exc).__name__}: {exc}"
        report.statuses[status] += 1
        if 200 <= status < 300:
            report.spans_acknowledged += payload.spans
            return
        report._note(f"{status or 'no answer'}: {text.strip()[:200]}")
        delay = _retry_delay(retry_after, attempt)
        if status not in _RETRYABLE or attempt == max_retries or time.monotonic() + delay > stop_at:
            break
        report.retries += 1
        await asyncio.sleep(delay)
    report.spans_failed += payload.spans


def _retry_delay(retry_after: str | None, attempt: int) -> float:
    """Seconds to wait: the server's Retry-After (seconds or an HTTP date), else 0.1 s doubling."""
    delay = 0.1 * 2**attempt
    if retry_after:
        try:
            delay = float(retry_after)
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):  # unreadable: keep the backoff
                delay = parsedate_to_datetime(retry_after).timestamp() - time.time()
    return min(max(delay, 0.0), _MAX_RETRY_WAIT_S)


# --- the `tracebox demo` command ------------------------------------------------------------------


def example_traces(traces: Iterable[Sequence[Span]]) -> list[tuple[str, str]]:
    """A few traces worth opening first, as (what it shows, trace id), most interesting first."""
    labels = (
        "AI chat where the LLM router fell back after a provider error",
        "AI chat with a tool call (two LLM rounds)",
        "AI chat with N+1 SELECTs",
        "AI chat",
        "web-shop checkout",
    )
    found: dict[str, str] = {}
    for trace in traces:
        label = _describe(trace)
        if label:
            found.setdefault(label, trace[0]["traceId"])
        if len(found) == len(labels):
            break
    return [(label, found[label]) for label in labels if label in found]


def _describe(trace: Sequence[Span]) -> str | None:
    root = next((span for span in trace if "parentId" not in span), None)
    service = local_service(root) if root else None
    if service == "web-frontend":
        return "web-shop checkout"
    if service != "api-gateway" or root is None or "error" in root.get("tags", {}):
        return None
    names = Counter(span.get("name") for span in trace)
    if any("gen_ai.provider.name" in span.get("tags", {}) and "error" in span["tags"] for span in trace):
        return "AI chat where the LLM router fell back after a provider error"
    if any(name and name.startswith("execute_tool") for name in names):
        return "AI chat with a tool call (two LLM rounds)"
    if names["select messages"] > 3:
        return "AI chat with N+1 SELECTs"
    return "AI chat"


def run_demo(
    url: str,
    *,
    traces: int = 200,
    fmt: str = "zipkin-json",
    seed: int | None = None,
    rate: float | None = None,
) -> SendReport:
    """Send ``traces`` demo traces to a running tracebox, printing progress and where to look.

    ``rate`` limits sending to that many traces per second; ``seed`` defaults to a fresh one (printed)
    so that two runs do not reuse trace ids.
    """
    url = url.rstrip("/")
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    generated = generate_traces(traces, seed=seed)
    total = sum(map(len, generated))
    span_rate = rate * total / max(1, traces) if rate else None
    batch_size = min(512, max(1, round(span_rate))) if span_rate else 512  # about a request a second
    print(
        f"tracebox demo: {traces:,} traces ({total:,} spans) as {fmt} to {url}{_format(fmt).path} (seed {seed})"
    )
    step, shown = max(1, total // 10), 0

    def progress(done: int) -> None:  # a line per tenth of the traffic
        nonlocal shown
        if done - shown >= step or done == total:
            shown = done
            print(f"  {done:,}/{total:,} spans posted ({100 * done // total}%)", flush=True)

    report = asyncio.run(
        send(url, generated, fmt=fmt, batch_size=batch_size, progress=progress, rate=span_rate)
    )
    speed = report.spans_acknowledged / report.elapsed_s if report.elapsed_s else 0.0
    print(
        f"tracebox demo: {report.spans_acknowledged:,} of {total:,} spans acknowledged in {report.elapsed_s:.2f} s "
        f"({speed:,.0f} spans/s), {report.spans_failed} failed, {report.retries} retries"
    )
    for error in report.errors:
        print(f"  error: {error}")
    if report.spans_acknowledged == 0 and report.statuses[0]:
        print(f"  is `tracebox serve` running at {url}?")
    if report.spans_acknowledged:
        for label, trace_id in example_traces(generated):
            print(f"  {label}: {url}/traces/{trace_id}")
    return report
