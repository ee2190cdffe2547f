"""Dependency links, after the cases of Zipkin's DependencyLinkerTest, plus the linker's speed."""

from __future__ import annotations

import random
import time

import pytest

from tracebox.appliance.linker import DependencyLinker, merge_links
from tracebox.appliance.model import Span


def span(
    parent: str | None,
    id_: str,
    kind: str | None,
    local: str | None,
    remote: str | None,
    error: bool = False,
    shared: bool = False,
    trace: str = "a",
) -> Span:
    """A span trimmed to the fields the linker reads, as the store passes them."""
    out: Span = {"traceId": trace.rjust(16, "0"), "id": id_.rjust(16, "0")}
    if parent is not None:
        out["parentId"] = parent.rjust(16, "0")
    if kind:
        out["kind"] = kind
    if local:
        out["localEndpoint"] = {"serviceName": local}
    if remote:
        out["remoteEndpoint"] = {"serviceName": remote}
    if error:
        out["tags"] = {"error": ""}
    if shared and kind != "CLIENT":
        out["shared"] = True
    return out


def link(parent: str, child: str, calls: int = 1, errors: int = 0) -> dict[str, str | int]:
    out: dict[str, str | int] = {"parent": parent, "child": child, "callCount": calls}
    if errors:
        out["errorCount"] = errors
    return out


def links(*traces: list[Span]) -> list[dict[str, str | int]]:
    linker = DependencyLinker()
    for trace in traces:
        linker.put_trace(trace)
    return linker.links()


# reported in reverse, as it usually arrives
TRACE = [
    span("b", "c", "CLIENT", "app", "db", error=True),
    span("a", "b", "SERVER", "app", "web", shared=True),
    span("a", "b", "CLIENT", "web", "app"),
    span(None, "a", "SERVER", "web", None),
]


def test_base_case() -> None:
    assert DependencyLinker().links() == []
    assert links([]) == []


def test_instrumented_client_and_server() -> None:
    assert links(TRACE) == [link("app", "db", errors=1), link("web", "app")]


def test_trace_id_is_opaque() -> None:
    assert links([{**s, "traceId": "0000000000000123"} for s in TRACE]) == links(TRACE)


def test_shared_server_missing_parent_id() -> None:
    trace = [
        span(None, "a", "SERVER", "arn", None),
        span("a", "b", "CLIENT", "arn", "link"),
        span(None, "b", "SERVER", "link", "arn", shared=True),
    ]
    assert links(list(reversed(trace))) == [link("arn", "link")]


def test_late_parent_id_in_shared_span() -> None:
    trace = list(TRACE)
    trace[1] = {k: v for k, v in TRACE[1].items() if k != "parentId"}
    assert links(trace) == [link("app", "db", errors=1), link("web", "app")]


def test_lost_client_and_no_parent_id_in_shared_span() -> None:
    trace = list(TRACE)
    trace[1] = {k: v for k, v in TRACE[1].items() if k != "parentId"}
    del trace[2]  # the client span never arrived
    assert links(trace) == [link("app", "db", errors=1), link("web", "app")]


@pytest.mark.parametrize(
    ("producer_remote", "consumer_remote", "expected"),
    [
        (None, "kafka", [link("kafka", "consumer")]),
        ("kafka", None, [link("producer", "kafka")]),
        ("kafka", "kafka", [link("kafka", "consumer"), link("producer", "kafka")]),
        ("kafka1", "kafka2", [link("kafka2", "consumer"), link("producer", "kafka1")]),
        (None, None, []),  # no direct link from producer to consumer without the broker
    ],
)
def test_messaging_links_through_the_broker(
    producer_remote: str | None, consumer_remote: str | None, expected: list[dict[str, str | int]]
) -> None:
    trace = [
        span(None, "a", "PRODUCER", "producer", producer_remote),
        span("a", "b", "CONSUMER", "consumer", consumer_remote),
    ]
    assert links(trace) == expected


def test_producer_links_to_server_child() -> None:
    trace = [span(None, "a", "PRODUCER", "producer", None), span("a", "b", "SERVER", "server", None)]
    assert links(trace) == [link("producer", "server")]


def test_producer_links_to_server_sharing_its_id() -> None:
    trace = [
        span(None, "a", "PRODUCER", "producer", None),
        span(None, "a", "SERVER", "server", None, shared=True),
    ]
    assert links(trace) == [link("producer", "server")]


def test_client_doesnt_link_to_consumer() -> None:
    trace = [span(None, "a", "CLIENT", "client", None), span("a", "b", "CONSUMER", "consumer", None)]
    assert links(trace) == []


@pytest.mark.parametrize(
    "root",
    [span(None, "a", "SERVER", "server", "client"), span(None, "a", "CLIENT", "client", "server")],
)
def test_root_span_knowing_its_peer_links_by_kind(root: Span) -> None:
    assert links([root]) == [link("client", "server")]


def test_uninstrumented_server_counts_each_call() -> None:
    trace = [
        span(None, "a", "SERVER", "client", None),
        span("a", "b", "CLIENT", None, "server"),
        span("a", "c", "CLIENT", None, "server"),
    ]
    assert links(trace) == [link("client", "server", 2)]
    assert links(trace[:2], trace[:2]) == [link("client", "server", 2)]


def test_uninstrumented_database_client_with_remote() -> None:
    trace = [span(None, "a", "SERVER", "api", None), span("a", "b", "CLIENT", "api", "mysql", error=True)]
    assert links(trace) == [link("api", "mysql", errors=1)]


def test_uninstrumented_client_server_only_with_remote() -> None:
    assert links([span(None, "a", "SERVER", "backend", "curl")]) == [link("curl", "backend")]


def test_single_host_spans_count_once() -> None:
    trace = [span(None, "a", "CLIENT", "client", None), span("a", "b", "SERVER", "server", None)]
    assert links(trace) == [link("client", "server")]


def test_error_on_both_halves_counts_once() -> None:
    trace = [
        span(None, "a", "CLIENT", "client", None, error=True),
        span("a", "b", "SERVER", "server", None, error=True),
    ]
    assert links(trace) == [link("client", "server", errors=1)]


def test_error_on_both_halves_sharing_id_counts_once() -> None:
    trace = [
        span(None, "a", "CLIENT", "client", None, error=True),
        span(None, "a", "SERVER", "server", None, error=True, shared=True),
    ]
    assert links(trace) == [link("client", "server", errors=1)]


def test_client_error_counts_for_its_child_server() -> None:
    trace = [span(None, "a", "CLIENT", "web", None, error=True), span("a", "b", "SERVER", "app", None)]
    assert links(trace) == [link("web", "app", errors=1)]


def test_client_error_not_counted_for_shared_server() -> None:
    """Zipkin only inherits the client's error when the server is its child, not its other half."""
    trace = [
        span(None, "a", "SERVER", "web", None),
        span("a", "b", "CLIENT", "web", "app", error=True),
        span("a", "b", "SERVER", "app", None, shared=True),
    ]
    assert links(trace) == [link("web", "app")]


def test_server_error_counts() -> None:
    trace = [
        span(None, "a", "SERVER", "web", None),
        span("a", "b", "CLIENT", "web", "app"),
        span("a", "b", "SERVER", "app", None, error=True, shared=True),
    ]
    assert links(trace) == [link("web", "app", errors=1)]


def test_client_name_defers_to_server() -> None:
    trace = [
        span(None, "a", "CLIENT", "client", "server"),
        span("a", "b", "SERVER", "server", None),
        span("a", "c", "SERVER", "server", None),
    ]
    assert links(trace) == [link("client", "server", 2)]
    trace = [
        span(None, "a", "CLIENT", "client", None),
        span("a", "b", "SERVER", "server", "client", error=True),
        span("a", "c", "SERVER", "server", "client"),
    ]
    assert links(trace) == [link("client", "server", 2, errors=1)]


def test_local_spans_between_remote_spans_link_to_nearest_server() -> None:
    trace = [
        span(None, "a", "SERVER", "client", None),
        span("a", "b", None, None, None),  # a local fan-out span
        span("b", "c", "CLIENT", "server", None, error=True),
        span("b", "d", "CLIENT", "server", None, error=True),
    ]
    # no remote side on the clients, so no error can be attributed to the backfilled hop
    assert links(trace) == [link("client", "server", 2)]


def test_errors_on_instrumented_links_under_local_span() -> None:
    trace = [
        span(None, "a", "SERVER", "foo", None),
        span("a", "b", None, None, None),
        span("b", "c", "CLIENT", "bar", "baz", error=True),
        span("b", "d", "CLIENT", "bar", "baz"),
    ]
    assert links(trace) == [link("bar", "baz", 2, errors=1), link("foo", "bar", 2)]


def test_annotation_named_error_is_not_an_error() -> None:
    trace = [{**span("b", "c", "CLIENT", "foo", "bar"), "annotations": [{"timestamp": 1, "value": "error"}]}]
    assert links(trace) == [link("foo", "bar")]


def test_error_tag_with_any_value_is_an_error() -> None:
    trace = [{**span("b", "c", "CLIENT", "foo", "bar"), "tags": {"error": "false"}}]
    assert links(trace) == [link("foo", "bar", errors=1)]


@pytest.mark.parametrize("kind", ["SERVER", "CLIENT"])
def test_loopback(kind: str) -> None:
    assert links([span(None, "a", kind, "service", "service")]) == [link("service", "service")]


def test_no_kind_with_both_sides_acts_as_client() -> None:
    trace = [
        span(None, "a", None, "some-client", "web"),
        span("a", "b", None, "web", "app", error=True),
        span("b", "c", None, "app", "db"),
    ]
    assert links(trace) == [link("app", "db"), link("some-client", "web"), link("web", "app", errors=1)]


@pytest.mark.parametrize(
    ("kind", "local", "remote"),
    [
        ("SERVER", None, None),
        ("SERVER", "server", None),
        ("SERVER", None, "client"),
        ("CLIENT", None, None),
        ("CLIENT", "client", None),
        ("CLIENT", None, "server"),
    ],
)
def test_cannot_link_without_both_service_names(kind: str, local: str | None, remote: str | None) -> None:
    assert links([span(None, "a", kind, local, remote)]) == []


def test_doesnt_link_unrelated_spans_when_missing_root() -> None:
    trace = [span("a", "b", "SERVER", "service1", None), span("a", "c", "SERVER", "service2", None)]
    assert links(trace) == []


def test_links_related_spans_when_missing_root() -> None:
    trace = [span("a", "b", "SERVER", "service1", None), span("b", "c", "SERVER", "service2", None)]
    assert links(trace) == [link("service1", "service2")]


def test_missing_server_span_backfills_link_to_client() -> None:
    trace = [span(None, "a", "SERVER", "web", None), span("a", "b", "CLIENT", "app", None)]
    assert links(trace) == [link("web", "app")]


def test_uninstrumented_hop_backfilled_and_called() -> None:
    trace = [span(None, "a", "SERVER", "web", None), span("a", "b", "CLIENT", "app", "db", error=True)]
    assert links(trace) == [link("app", "db", errors=1), link("web", "app")]


def test_fragments_merge_before_linking() -> None:
    trace = [*TRACE, span("b", "c", "CLIENT", "app", None), dict(TRACE[0])]
    assert links(trace) == links(TRACE)


def test_merge_links() -> None:
    assert merge_links(
        [
            [link("foo", "bar", 2, errors=1), link("foo", "foo")],
            [link("foo", "bar", 2, errors=2)],
            [],
        ]
    ) == [link("foo", "bar", 4, errors=3), link("foo", "foo")]
    assert merge_links([[link("client", "server", 2)], [link("client", "server", 2)]]) == [
        link("client", "server", 4)
    ]


# --- speed ------------------------------------------------------------------------------------

SERVICES = ["frontend", "auth", "catalog", "cart", "checkout", "payments", "shipping", "search"]


def demo_trace(rng: random.Random, n: int) -> list[Span]:
    """~19 spans: a frontend fanning out over RPCs, local spans, a database and a broker."""
    trace = f"{n:016x}"
    spans: list[Span] = []
    counter = iter(range(1, 100))

    def new_id() -> str:
        return f"{n:08x}{next(counter):08x}"

    root = new_id()
    spans.append(span(None, root, "SERVER", "frontend", None, trace=trace))
    for callee in rng.sample(SERVICES[1:], 4):
        local = new_id()
        spans.append(span(root, local, None, "frontend", None, trace=trace))
        rpc = new_id()
        failed = rng.random() < 0.02
        spans.append(span(local, rpc, "CLIENT", "frontend", callee, error=failed, trace=trace))
        spans.append(span(local, rpc, "SERVER", callee, "frontend", error=failed, shared=True, trace=trace))
        spans.append(span(rpc, new_id(), "CLIENT", callee, "postgres", trace=trace))
    produce = new_id()
    spans.append(span(root, produce, "PRODUCER", "frontend", "kafka", trace=trace))
    spans.append(span(produce, new_id(), "CONSUMER", "shipping", "kafka", trace=trace))
    rng.shuffle(spans)
    return spans


def test_demo_traces_link_as_expected() -> None:
    result = links(*(demo_trace(random.Random(i), i) for i in range(50)))
    calls = {(entry["parent"], entry["child"]): entry["callCount"] for entry in result}
    assert calls[("frontend", "kafka")] == calls[("kafka", "shipping")] == 50
    assert sum(calls[("frontend", s)] for s in SERVICES[1:]) == 200
    assert sum(calls[(s, "postgres")] for s in SERVICES[1:]) == 200


@pytest.mark.slow
def test_linker_throughput() -> None:
    rng = random.Random(7)
    traces = [demo_trace(rng, i) for i in range(100_000)]
    spans = sum(map(len, traces))
    linker = DependencyLinker()
    started = time.perf_counter()
    for trace in traces:
        linker.put_trace(trace)
    elapsed = time.perf_counter() - started
    print(f"\n{len(traces) / elapsed:,.0f} traces/s, {spans / elapsed:,.0f} spans/s ({spans} spans)")
    assert linker.links()
