"""Labelled synthetic traffic for the evaluation harness: a small shop plus an LLM chat service,
with a daily load curve, lognormal latency, background errors, rare outliers and short blips, and
faults injected at known times. Spans come out in commit order (their end time plus a flush delay),
the order a live store would hand them to the engine.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

US = 1_000_000
DAY = 86_400

# (service, operation) -> (median self time ms, downstream calls); a call to "db" has no server span.
SHOP: dict[tuple[str, str], tuple[float, list[tuple[str, str]]]] = {
    ("frontend", "get /home"): (8, [("cart", "get /cart"), ("recommender", "get /recs")]),
    ("frontend", "post /checkout"): (12, [("payments", "post /charge"), ("inventory", "post /reserve")]),
    ("frontend", "get /product"): (6, [("inventory", "get /stock")]),
    ("cart", "get /cart"): (4, [("db", "select cart")]),
    ("recommender", "get /recs"): (25, []),
    ("payments", "post /charge"): (40, [("db", "insert payment")]),
    ("inventory", "post /reserve"): (6, [("db", "update stock")]),
    ("inventory", "get /stock"): (3, [("db", "select stock")]),
}
DB_MS = {"select cart": 3, "insert payment": 5, "update stock": 4, "select stock": 2}
_ENTRY_NAMES, _ENTRY_WEIGHTS = ("get /home", "post /checkout", "get /product"), (0.45, 0.2, 0.35)
ERROR_RATE = {"payments": 0.004, "inventory": 0.002, "cart": 0.001, "recommender": 0.01}

# route -> (calls per second, LLM calls per request, model, median input tokens, median output tokens)
CHAT = {
    "post /chat": (1.0, 1, "gpt-4o-mini", 1200, 250),
    "post /summarize": (0.5, 1, "gpt-4o-mini", 3000, 300),
    "post /agent": (0.5, 2, "gpt-4o-mini", 2000, 150),
}
PRICES = {"gpt-4o-mini": (0.15e-6, 0.6e-6), "gpt-4o": (2.5e-6, 10e-6)}  # $ per input, output token
FINISH = {"stop": 0.93, "tool_calls": 0.04, "length": 0.025, "content_filter": 0.005}
USERS = [f"u-{i}" for i in range(200)]
RUNAWAY_USER = "u-3"


@dataclass(frozen=True)
class Fault:
    name: str
    kinds: frozenset[str]
    service: str
    start: int  # epoch seconds
    end: int


FAULT_TYPES: dict[str, tuple[str, str]] = {
    # name -> (alert kind expected, service to blame)
    "slow_dependency": ("latency", "db"),
    "cpu_starved": ("latency", "inventory"),
    "error_burst": ("error", "payments"),
    "context_accumulation": ("token_cost", "chat"),
    "model_swap": ("token_cost", "chat"),
    "max_tokens_low": ("finish_reason", "chat"),
    "content_filter_storm": ("finish_reason", "chat"),
    "runaway_caller": ("token_cost", "chat"),
}


def schedule(start: int, hours: float, warmup_s: int, length_s: int, gap_s: int) -> list[Fault]:
    """Every fault type in turn, one at a time, from the end of the warm-up to the end of the run."""
    faults, t, end = [], start + warmup_s, start + int(hours * 3600)
    names = list(FAULT_TYPES)
    i = 0
    while t + length_s <= end:
        name = names[i % len(names)]
        kind, service = FAULT_TYPES[name]
        faults.append(Fault(name, frozenset((kind,)), service, t, t + length_s))
        t += length_s + gap_s
        i += 1
    return faults


class Traffic:
    def __init__(
        self, start: int, hours: float, faults: list[Fault], seed: int = 7, scale: float = 1.0
    ) -> None:
        self.start, self.end = start, start + int(hours * 3600)
        self.faults = faults
        self.rng = random.Random(seed)
        self.scale = scale
        self._active: set[str] = set()
        self._fault_start: dict[str, int] = {}
        self._blip_until = 0
        self._blip_service = ""

    def spans(self) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        """(span, llm) pairs in commit order."""
        heap: list[tuple[int, int, dict[str, Any], dict[str, Any] | None]] = []
        seq = 0
        rng = self.rng
        for second in range(self.start, self.end):
            self._update_faults(second)
            load = 1 + 0.5 * math.sin(2 * math.pi * ((second % DAY) / DAY - 0.3))
            out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
            for _ in range(_poisson(rng, 6 * load * self.scale)):
                self._shop_trace(second * US + rng.randrange(US), load, out)
            for route, (rate, *_rest) in CHAT.items():
                for _ in range(_poisson(rng, rate * load * self.scale)):
                    self._chat_trace(route, second * US + rng.randrange(US), rng.choice(_USER_POOL), out)
            if "runaway_caller" in self._active:
                for _ in range(_poisson(rng, 4 * self.scale)):
                    self._chat_trace("post /chat", second * US + rng.randrange(US), RUNAWAY_USER, out)
            for span, llm in out:
                seq += 1
                commit = span["timestamp"] + span["duration"] + rng.randrange(2 * US)
                heapq.heappush(heap, (commit, seq, span, llm))
            horizon = (second - 60) * US
            while heap and heap[0][0] < horizon:
                _, _, span, llm = heapq.heappop(heap)
                yield span, llm
        while heap:
            _, _, span, llm = heapq.heappop(heap)
            yield span, llm

    def _update_faults(self, second: int) -> None:
        self._active = {f.name for f in self.faults if f.start <= second < f.end}
        for f in self.faults:
            if f.start == second:
                self._fault_start[f.name] = second
        if second >= self._blip_until and self.rng.random() < 1 / 1800:  # a GC pause or noisy neighbour
            self._blip_until = second + self.rng.randrange(3, 8)
            self._blip_service = self.rng.choice(["cart", "recommender", "payments", "inventory"])

    # -- the shop -------------------------------------------------------------------------------

    def _shop_trace(self, ts: int, load: float, out: list) -> None:
        name = self.rng.choices(_ENTRY_NAMES, _ENTRY_WEIGHTS)[0]
        trace = _hex(self.rng, 16)
        self._server(trace, None, "frontend", name, ts, load, out)

    def _server(
        self, trace: str, parent: str | None, service: str, name: str, ts: int, load: float, out: list
    ) -> tuple[int, bool]:
        rng = self.rng
        median_ms, calls = SHOP[(service, name)]
        slow = 1 + 0.15 * (load - 1)
        if service == "inventory" and "cpu_starved" in self._active:
            slow *= 4
        if service == self._blip_service and ts // US < self._blip_until:
            slow *= 2.5
        self_us = int(
            median_ms * 1000 * slow * rng.lognormvariate(0, 0.35) * (8 if rng.random() < 0.005 else 1)
        )
        span_id = _hex(rng, 16)
        t = ts + self_us // 2
        failed = False
        for callee, op in calls:
            duration, child_failed = self._client(trace, span_id, service, callee, op, t, load, out)
            t += duration
            failed |= child_failed and rng.random() < 0.7
        rate = ERROR_RATE.get(service, 0.001)
        if service == "payments" and "error_burst" in self._active:
            rate = 0.35
        failed |= rng.random() < rate
        duration = t - ts + self_us - self_us // 2
        out.append((_span(trace, span_id, parent, "SERVER", name, ts, duration, service, None, failed), None))
        return duration, failed

    def _client(
        self, trace: str, parent: str, service: str, callee: str, op: str, ts: int, load: float, out: list
    ) -> tuple[int, bool]:
        rng = self.rng
        span_id = _hex(rng, 16)
        net = int(rng.lognormvariate(math.log(600), 0.3))
        if callee == "db":
            slow = 5 if "slow_dependency" in self._active else 1
            duration = (
                int(DB_MS[op] * 1000 * slow * (1 + 0.1 * (load - 1)) * rng.lognormvariate(0, 0.4)) + net
            )
            failed = rng.random() < 0.0005
        else:
            inner, failed = self._server(trace, span_id, callee, op, ts + net // 2, load, out)
            duration = inner + net
        out.append((_span(trace, span_id, parent, "CLIENT", op, ts, duration, service, callee, failed), None))
        return duration, failed

    # -- the LLM service ------------------------------------------------------------------------

    def _chat_trace(self, route: str, ts: int, user: str, out: list) -> None:
        rng = self.rng
        _, calls, model, input_median, output_median = CHAT[route]
        if route == "post /summarize" and "model_swap" in self._active:
            model = "gpt-4o"
        trace, server_id = _hex(rng, 16), _hex(rng, 16)
        t = ts + int(rng.lognormvariate(math.log(15_000), 0.3))
        for _ in range(calls):
            inputs = input_median * rng.lognormvariate(0, 0.3)
            if route == "post /agent" and "context_accumulation" in self._active:
                inputs *= 1 + min((ts // US - self._fault_start["context_accumulation"]) / 60, 8)
            if user == RUNAWAY_USER and "runaway_caller" in self._active:
                inputs *= 3
            reason = self._finish(route)
            outputs = 0 if reason == "content_filter" else int(output_median * rng.lognormvariate(0, 0.5))
            if reason == "length":
                outputs = 256
            price_in, price_out = PRICES[model]
            llm = {
                "provider": "openai",
                "request_model": model,
                "response_model": model,
                "input_tokens": int(inputs),
                "output_tokens": outputs,
                "finish_reasons": [reason],
                "cost_usd": int(inputs) * price_in + outputs * price_out,
                "cost_source": "price_table",
            }
            duration = int(300_000 + outputs * 12_000 * rng.lognormvariate(0, 0.2))
            span = _span(
                trace,
                _hex(rng, 16),
                server_id,
                "CLIENT",
                f"chat {model}",
                t,
                duration,
                "chat",
                "openai",
                False,
            )
            # the same call as OpenTelemetry GenAI attributes, so the server extracts what ``llm`` says
            span["tags"] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": llm["provider"],
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "gen_ai.usage.input_tokens": str(llm["input_tokens"]),
                "gen_ai.usage.output_tokens": str(outputs),
                "gen_ai.usage.cost": repr(llm["cost_usd"]),
                "gen_ai.response.finish_reasons": f'["{reason}"]',
                "user.id": user,
            }
            out.append((span, llm))
            t += duration
        duration = t - ts + 5_000
        out.append((_span(trace, server_id, None, "SERVER", route, ts, duration, "chat", None, False), None))

    def _finish(self, route: str) -> str:
        mix = dict(FINISH)
        if route == "post /chat" and "max_tokens_low" in self._active:
            mix["length"] = 0.45
        if route == "post /chat" and "content_filter_storm" in self._active:
            mix["content_filter"] = 0.3
        r = self.rng.random() * sum(mix.values())
        for reason, weight in mix.items():
            r -= weight
            if r < 0:
                return reason
        return "stop"


_USER_POOL = [u for i, u in enumerate(USERS) for _ in range(max(1, 40 // (i + 1)))]  # a few heavy users


def _span(
    trace: str,
    span_id: str,
    parent: str | None,
    kind: str,
    name: str,
    ts: int,
    duration: int,
    service: str,
    remote: str | None,
    failed: bool,
) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": trace,
        "id": span_id,
        "kind": kind,
        "name": name,
        "timestamp": ts,
        "duration": max(duration, 1),
        "localEndpoint": {"serviceName": service},
    }
    if parent:
        span["parentId"] = parent
    if remote:
        span["remoteEndpoint"] = {"serviceName": remote}
    if failed:
        span["tags"] = {"error": "true"}
    return span


def _hex(rng: random.Random, chars: int) -> str:
    return f"{rng.getrandbits(chars * 4):0{chars}x}"


def _poisson(rng: random.Random, mu: float) -> int:
    """Knuth's method: fine for the small rates used here."""
    limit, k, p = math.exp(-mu), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
