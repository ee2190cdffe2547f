"""Trace merging, the span tree and clock skew, after Zipkin's TraceTest, SpanNodeTest and ClockSkewTest."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import orjson
import pytest

from tracebox.appliance.model import Span
from tracebox.appliance.trace import (
    SpanNode,
    build_tree,
    correct_clock_skew,
    ips_match,
    merge_trace,
)

TRACE_128 = "7180c278b62e8f6a216a2aea45d08fc9"
TRACE_64 = "216a2aea45d08fc9"


def sid(short: str) -> str:
    return short.rjust(16, "0")


def span(
    parent: str | None,
    id_: str,
    kind: str | None = None,
    service: str | None = None,
    ip: str | None = None,
    shared: bool = False,
    trace: str = "a",
    **extra: Any,
) -> Span:
    """A normalised span, the shape ``model.normalize_span`` produces."""
    out: Span = {"traceId": trace.rjust(16, "0")}
    if parent is not None:
        out["parentId"] = sid(parent)
    out["id"] = sid(id_)
    if kind:
        out["kind"] = kind
    endpoint = {k: v for k, v in (("serviceName", service), ("ipv4", ip)) if v}
    if endpoint:
        out["localEndpoint"] = endpoint
    if shared:
        out["shared"] = True
    out.update(extra)
    return out


def as_set(spans: list[Span]) -> list[bytes]:
    return sorted(orjson.dumps(s, option=orjson.OPT_SORT_KEYS) for s in spans)


# --- merge_trace ------------------------------------------------------------------------------


def test_no_op_returns_the_same_list() -> None:
    trace = [
        span(None, "a", "SERVER", "frontend", timestamp=1),
        span("a", "b", "CLIENT", "frontend", timestamp=2),
        span("b", "c", "SERVER", "backend", timestamp=3),
    ]
    assert merge_trace(trace) is trace


def test_no_op_out_of_order_is_sorted_without_copying_spans() -> None:
    trace = [
        span("b", "c", "SERVER", "backend", timestamp=3),
        span("a", "b", "CLIENT", "frontend", timestamp=2),
        span(None, "a", "SERVER", "frontend", timestamp=9),
    ]
    merged = merge_trace(trace)
    assert [s["id"] for s in merged] == [sid("a"), sid("b"), sid("c")]  # root first, then time
    assert all(any(m is s for s in trace) for m in merged)


def test_backfills_missing_parent_id_on_shared_span() -> None:
    trace = [
        span(None, "a", "SERVER", "frontend"),
        span("a", "b", "CLIENT", "frontend"),
        span(None, "b", "SERVER", "backend", shared=True),  # parent id not propagated
    ]
    assert as_set(merge_trace(trace)) == as_set(
        [
            span(None, "a", "SERVER", "frontend"),
            span("a", "b", "CLIENT", "frontend"),
            span("a", "b", "SERVER", "backend", shared=True),
        ]
    )


def test_backfills_missing_shared_flag_on_server_reusing_client_id() -> None:
    trace = [
        span(None, "a", "SERVER", "frontend"),
        span("a", "b", "CLIENT", "frontend"),
        span("a", "b", "SERVER", "backend"),
    ]
    merged = merge_trace(trace)
    assert len(merged) == 3
    assert [s.get("shared") for s in merged if s["id"] == sid("b")] == [None, True]


def test_client_and_shared_server_halves_stay_separate_client_first() -> None:
    trace = [
        span("a", "b", "SERVER", "backend", shared=True, timestamp=5),
        span("a", "b", "CLIENT", "frontend", timestamp=10),  # server clock behind
        span(None, "a", "SERVER", "frontend", timestamp=1),
    ]
    merged = merge_trace(trace)
    assert [(s["id"], s["kind"]) for s in merged] == [
        (sid("a"), "SERVER"),
        (sid("b"), "CLIENT"),
        (sid("b"), "SERVER"),
    ]


def test_merges_late_fragment_with_duration_and_tags() -> None:
    trace = [
        span(None, "a", "SERVER", "frontend", timestamp=1, name="get", tags={"http.path": "/"}),
        span(None, "a", duration=10, tags={"error": "boom"}),
        span(None, "a", "SERVER", "frontend", annotations=[{"timestamp": 2, "value": "ws"}]),
    ]
    assert merge_trace(trace) == [
        span(
            None,
            "a",
            "SERVER",
            "frontend",
            timestamp=1,
            duration=10,
            name="get",
            tags={"http.path": "/", "error": "boom"},
            annotations=[{"timestamp": 2, "value": "ws"}],
        )
    ]


def test_merge_does_not_mutate_input() -> None:
    first = span(None, "a", "SERVER", "frontend", tags={"a": "1"})
    second = span(None, "a", "SERVER", "frontend", tags={"b": "2"}, duration=3)
    snapshot = (repr(first), repr(second))
    merge_trace([first, second])
    assert (repr(first), repr(second)) == snapshot


def test_identical_duplicates_collapse() -> None:
    one = span(None, "a", "SERVER", "frontend", timestamp=1, duration=2)
    assert merge_trace([one, dict(one), dict(one)]) == [one]


def test_merges_when_missing_endpoints() -> None:
    trace = [
        span(None, "a", tags={"service": "frontend"}),
        span("a", "b", tags={"service": "frontend"}, timestamp=1),
        span("a", "b", "SERVER", "backend", shared=True),
        span("a", "b", duration=10),
    ]
    assert as_set(merge_trace(trace)) == as_set(
        [
            span(None, "a", tags={"service": "frontend"}),
            span("a", "b", tags={"service": "frontend"}, timestamp=1, duration=10),
            span("a", "b", "SERVER", "backend", shared=True),
        ]
    )


def test_doesnt_merge_shared_spans_on_different_ips() -> None:
    flush = [{"timestamp": 3, "value": "brave.flush"}]
    trace = [
        span(None, "a", "SERVER", "frontend"),
        span("a", "b", "CLIENT", "frontend", timestamp=1, annotations=flush),
        span("a", "b", "SERVER", "backend", "1.2.3.4", shared=True),
        span("a", "b", "SERVER", "backend", "1.2.3.5", shared=True),
        span("a", "b", "CLIENT", "frontend", duration=10),
    ]
    assert as_set(merge_trace(trace)) == as_set(
        [
            span(None, "a", "SERVER", "frontend"),
            span("a", "b", "CLIENT", "frontend", timestamp=1, duration=10, annotations=flush),
            span("a", "b", "SERVER", "backend", "1.2.3.4", shared=True),
            span("a", "b", "SERVER", "backend", "1.2.3.5", shared=True),
        ]
    )


def test_puts_random_data_on_first_span_with_endpoint() -> None:
    flush = [{"timestamp": 3, "value": "brave.flush"}]
    trace = [
        span(None, "a", "SERVER", "frontend"),
        span("a", "b", "CLIENT"),
        span("a", "b", None, "frontend", timestamp=1, annotations=flush),
        span("a", "b", "SERVER", "backend", "1.2.3.4", shared=True),
        span("a", "b", "SERVER", "backend", "1.2.3.5", shared=True),
        span("a", "b", None, "frontend", duration=10),
    ]
    assert as_set(merge_trace(trace)) == as_set(
        [
            span(None, "a", "SERVER", "frontend"),
            span("a", "b", "CLIENT", "frontend", timestamp=1, duration=10, annotations=flush),
            span("a", "b", "SERVER", "backend", "1.2.3.4", shared=True),
            span("a", "b", "SERVER", "backend", "1.2.3.5", shared=True),
        ]
    )


def test_merges_incomplete_endpoints() -> None:
    trace = [
        span(None, "a", "SERVER", "frontend"),
        span("a", "b", "CLIENT", "frontend"),
        span("a", "b", "CLIENT", None, "1.2.3.4"),
        span("a", "b", "SERVER", None, "1.2.3.5", shared=True),
        span("a", "b", "SERVER", "backend", shared=True),
    ]
    assert as_set(merge_trace(trace)) == as_set(
        [
            span(None, "a", "SERVER", "frontend"),
            span("a", "b", "CLIENT", "frontend", "1.2.3.4"),
            span("a", "b", "SERVER", "backend", "1.2.3.5", shared=True),
        ]
    )


def test_works_when_missing_parent_span() -> None:
    trace = [
        span("a", "b", "SERVER", "backend", "1.2.3.4", timestamp=1),
        span("a", "c", "SERVER", "backend", timestamp=2),
    ]
    assert merge_trace(trace) == trace


def test_chooses_128_bit_trace_id_when_not_strict() -> None:
    trace = [
        span(None, "a", "SERVER", "frontend", trace=TRACE_128),
        span("a", "b", "CLIENT", "frontend", trace=TRACE_128),
        span("a", "b", "SERVER", "backend", shared=True, trace=TRACE_64),
    ]
    merged = merge_trace(trace, strict_trace_id=False)
    assert [s["traceId"] for s in merged] == [TRACE_128] * 3
    assert len(merged) == 3


def test_64_and_128_bit_fragments_merge_when_not_strict() -> None:
    trace = [
        span(None, "a", "SERVER", "frontend", trace=TRACE_128, timestamp=1),
        span(None, "a", "SERVER", "frontend", trace=TRACE_64, duration=5),
    ]
    assert merge_trace(trace, strict_trace_id=False) == [
        span(None, "a", "SERVER", "frontend", trace=TRACE_128, timestamp=1, duration=5)
    ]


def test_64_bit_trace_id_with_unique_span_ids_is_widened_when_not_strict() -> None:
    trace = [
        span(None, "a", "SERVER", "frontend", trace=TRACE_128, timestamp=1),
        span("a", "b", "CLIENT", "frontend", trace=TRACE_64, timestamp=2),
    ]
    assert [s["traceId"] for s in merge_trace(trace, strict_trace_id=False)] == [TRACE_128] * 2


def test_strict_trace_id_keeps_64_and_128_bit_apart() -> None:
    trace = [
        span(None, "a", "SERVER", "frontend", trace=TRACE_128, timestamp=1),
        span(None, "a", "SERVER", "frontend", trace=TRACE_64, duration=5),
    ]
    merged = merge_trace(trace)
    assert sorted(s["traceId"] for s in merged) == sorted([TRACE_128, TRACE_64])


def test_different_128_bit_trace_ids_are_not_rewritten() -> None:
    other = "1111111111111111" + TRACE_64
    trace = [
        span(None, "a", "SERVER", "frontend", trace=TRACE_128, timestamp=1),
        span("a", "b", "SERVER", "frontend", trace=other, timestamp=2),
    ]
    assert merge_trace(trace, strict_trace_id=False) is trace


# --- build_tree -------------------------------------------------------------------------------


def ids(nodes: list[SpanNode]) -> list[str]:
    return [n.span["id"].lstrip("0") for n in nodes]  # type: ignore[index]


def test_traverses_breadth_first() -> None:
    trace = [
        span(None, "a", timestamp=1),
        span("a", "b", timestamp=2),
        span("a", "c", timestamp=3),
        span("a", "d", timestamp=4),
        span("b", "e", timestamp=5),
        span("b", "f", timestamp=6),
        span("b", "1", timestamp=7),
        span("1", "2", timestamp=8),
    ]
    tree = build_tree(list(reversed(trace)))
    assert ids(list(tree.traverse())) == ["a", "b", "c", "d", "e", "f", "1", "2"]


def assert_ancestry(trace: list[Span]) -> None:
    node = build_tree(list(reversed(trace)))
    assert node.span == trace[0]
    for expected, following in pairwise(trace[1:]):
        node = node.children[0]
        assert node.span == expected
        assert [c.span for c in node.children] == [following]


def test_constructs_tree_by_parent_not_input_order() -> None:
    assert_ancestry([span(None, "a"), span("a", "b"), span("b", "c"), span("c", "d")])


def test_shared_server_is_child_of_its_client() -> None:
    assert_ancestry(
        [span(None, "a"), span("a", "b", "CLIENT"), span("a", "b", "SERVER", shared=True), span("b", "c")]
    )


def test_shared_root_id() -> None:
    assert_ancestry([span(None, "a"), span(None, "a", shared=True), span("a", "b"), span("b", "c")])


def test_children_of_duplicate_server_spans_go_under_their_own_server() -> None:
    a, b_client = span(None, "a", timestamp=1), span("a", "b", timestamp=2)
    foo = span("a", "b", None, "foo", shared=True, timestamp=4)
    bar = span("a", "b", None, "bar", shared=True, timestamp=3)
    under_bar = span("b", "c", None, "bar", timestamp=5)
    under_foo = span("b", "d", None, "foo", timestamp=6)
    tree = build_tree([under_foo, under_bar, bar, foo, b_client, a])
    client = tree.children[0]
    assert client.span == b_client
    assert [n.span for n in client.children] == [bar, foo]
    assert [n.span for n in client.children[0].children] == [under_bar]
    assert [n.span for n in client.children[1].children] == [under_foo]


def test_children_of_shared_and_unshared_servers_with_one_id() -> None:
    a, b_client = span(None, "a", timestamp=1), span("a", "b", timestamp=2)
    c_foo = span("b", "c", None, "foo", timestamp=4)
    bar = span("a", "b", None, "bar", shared=True, timestamp=3)
    d_bar = span("b", "d", None, "bar", timestamp=5)
    e_foo = span("c", "e", None, "foo", timestamp=6)
    tree = build_tree([e_foo, d_bar, bar, c_foo, b_client, a])
    client = tree.children[0]
    assert [n.span for n in client.children] == [bar, c_foo]
    assert [n.span for n in client.children[0].children] == [d_bar]
    assert [n.span for n in client.children[1].children] == [e_foo]


def test_dedupes() -> None:
    root = build_tree([span(None, "a"), span(None, "a"), span(None, "a")])
    assert root.span == span(None, "a")
    assert root.children == []


def test_second_root_hangs_under_the_first() -> None:
    root = build_tree([span(None, "a", timestamp=1), span(None, "b", timestamp=2)])
    assert ids([root]) == ["a"]
    assert ids(root.children) == ["b"]


def test_no_child_left_behind() -> None:
    trace = [
        span(None, "b", name="root-0", timestamp=1),
        span("b", "c", name="child-0", timestamp=2),
        span("b", "d", name="child-1", timestamp=3),
        span(None, "e", name="lost-0", timestamp=4),
        span(None, "f", name="lost-1", timestamp=5),
    ]
    assert sorted(ids(list(build_tree(trace).traverse()))) == ["b", "c", "d", "e", "f"]


def test_headless_trace_gets_a_synthetic_root() -> None:
    trace = [span("a", "b", timestamp=1), span("a", "c", timestamp=2), span("a", "d", timestamp=3)]
    root = build_tree(trace)
    assert root.span is None
    assert [c.span for c in root.children] == trace
    assert ids(list(root.traverse())) == ["b", "c", "d"]


def test_orders_children_by_timestamp_missing_first() -> None:
    trace = [
        span(None, "1"),
        span("1", "a", name="a", timestamp=2),
        span("1", "b", name="b", timestamp=1),
        span("1", "c", name="c"),
    ]
    assert [c.span["name"] for c in build_tree(trace).children] == ["c", "b", "a"]  # type: ignore[index]


def test_cycle_is_broken_not_dropped() -> None:
    trace = [span(None, "a", timestamp=1), span("d", "b", timestamp=2), span("b", "d", timestamp=3)]
    root = build_tree(trace)
    assert sorted(ids(list(root.traverse()))) == ["a", "b", "d"]


def test_pure_cycle_without_root() -> None:
    root = build_tree([span("c", "b"), span("b", "c")])
    assert sorted(ids(list(root.traverse()))) == ["b", "c"]


def test_changing_ips_keeps_every_span() -> None:
    trace = [
        span("a", "c", "SERVER", "my-service", "10.2.3.4", shared=True, timestamp=1),
        span("c", "b", "CLIENT", "my-service", "169.2.3.4", timestamp=2),
        span("c", "a", None, "my-service", "10.2.3.4", timestamp=3),
    ]
    assert [n.span for n in build_tree(trace).traverse()] == trace


def test_unmergeable_duplicate_id_is_not_lost() -> None:
    trace = [
        span(None, "a", "SERVER", "web", timestamp=1),
        span("a", "b", None, "x", timestamp=2),
        span("a", "b", None, "y", timestamp=3),
    ]
    assert len(list(build_tree(trace).traverse())) == 3


def test_empty_trace_is_an_error() -> None:
    with pytest.raises(ValueError):
        build_tree([])


def test_add_child_refuses_itself() -> None:
    node = SpanNode(span(None, "a"))
    with pytest.raises(ValueError):
        node.add_child(node)


# --- clock skew -------------------------------------------------------------------------------

FRONTEND = {"serviceName": "frontend", "ipv4": "172.17.0.13"}
BACKEND = {"serviceName": "backend", "ipv4": "172.17.0.9"}


def rpc(client: dict[str, Any], server: dict[str, Any], server_ep: dict[str, Any] = BACKEND) -> SpanNode:
    """A root client span and its shared server, through the skew correction."""
    return correct_clock_skew(
        [
            {"traceId": sid("1"), "id": sid("3"), "kind": "CLIENT", "localEndpoint": FRONTEND, **client},
            {
                "traceId": sid("1"),
                "id": sid("3"),
                "kind": "SERVER",
                "localEndpoint": server_ep,
                "shared": True,
                **server,
            },
        ]
    )


def test_ips_match() -> None:
    v4, v6 = {"ipv4": "192.168.99.101"}, {"ipv6": "2001:db8::c001"}
    both = {**v4, **v6}
    assert not ips_match(None, v4)
    assert not ips_match({"serviceName": "foo"}, v4)
    assert not ips_match({"ipv4": "192.168.99.102"}, v4)
    assert not ips_match({"ipv6": "2001:db8::c002"}, v6)
    assert ips_match(v4, v4) and ips_match(both, v4) and ips_match(both, v6) and ips_match(v6, both)


def test_skew_centres_server_in_client() -> None:
    tree = rpc({"timestamp": 20, "duration": 20}, {"timestamp": 10, "duration": 10})
    server = tree.children[0].span
    # skew = 10 - 20 - (20 - 10) / 2 = -15, so the server starts 5us after its client
    assert server["timestamp"] == 25  # type: ignore[index]
    assert tree.span["timestamp"] == 20  # type: ignore[index]


def test_no_skew_on_same_host() -> None:
    tree = rpc({"timestamp": 20, "duration": 20}, {"timestamp": 10, "duration": 10}, FRONTEND)
    assert tree.children[0].span["timestamp"] == 10  # type: ignore[index]


def test_no_skew_when_server_after_client() -> None:
    tree = rpc({"timestamp": 20, "duration": 20}, {"timestamp": 30, "duration": 10})
    assert tree.children[0].span["timestamp"] == 30  # type: ignore[index]


def test_one_way_skew_assumes_1us_latency() -> None:
    tree = rpc({"timestamp": 20}, {"timestamp": 10})
    assert tree.children[0].span["timestamp"] == 21  # type: ignore[index]


def test_async_server_outliving_client_starts_1us_after() -> None:
    tree = rpc({"timestamp": 20, "duration": 5}, {"timestamp": 10, "duration": 10})
    assert tree.children[0].span["timestamp"] == 21  # type: ignore[index]


def test_skew_propagates_to_same_host_descendants_and_annotations() -> None:
    spans = [
        {"traceId": sid("1"), "id": sid("1"), "kind": "SERVER", "localEndpoint": FRONTEND, "timestamp": 10, "duration": 100},
        {"traceId": sid("1"), "parentId": sid("1"), "id": sid("2"), "kind": "CLIENT", "localEndpoint": FRONTEND, "timestamp": 20, "duration": 20},
        {"traceId": sid("1"), "parentId": sid("1"), "id": sid("2"), "kind": "SERVER", "shared": True, "localEndpoint": BACKEND, "timestamp": 10, "duration": 10, "annotations": [{"timestamp": 12, "value": "x"}]},
        {"traceId": sid("1"), "parentId": sid("2"), "id": sid("4"), "localEndpoint": BACKEND, "timestamp": 11, "duration": 2},
    ]  # fmt: skip
    snapshot = repr(spans)
    tree = correct_clock_skew(spans)
    by_id = {(n.span["id"], n.span.get("shared", False)): n.span for n in tree.traverse()}  # type: ignore[index,union-attr]
    server = by_id[(sid("2"), True)]
    assert server["timestamp"] == 25
    assert server["annotations"] == [{"timestamp": 27, "value": "x"}]
    assert by_id[(sid("4"), False)]["timestamp"] == 26
    assert by_id[(sid("2"), False)]["timestamp"] == 20
    assert repr(spans) == snapshot  # the input is left alone


def test_skew_skipped_when_headless_or_duplicate_root() -> None:
    client = {"traceId": sid("1"), "parentId": sid("9"), "id": sid("3"), "kind": "CLIENT", "localEndpoint": FRONTEND, "timestamp": 20, "duration": 20}  # fmt: skip
    server = {
        **client,
        "kind": "SERVER",
        "shared": True,
        "localEndpoint": BACKEND,
        "timestamp": 10,
        "duration": 10,
    }
    headless = correct_clock_skew([client, server])
    assert headless.span is None
    assert headless.children[0].children[0].span["timestamp"] == 10  # type: ignore[index]

    root = {"traceId": sid("1"), "id": sid("9"), "localEndpoint": FRONTEND, "timestamp": 1}
    other_root = {"traceId": sid("1"), "id": sid("8"), "name": "curtain", "timestamp": 2}
    tree = correct_clock_skew([root, client, server, other_root])
    skewed = [n.span for n in tree.traverse() if n.span.get("shared")]  # type: ignore[union-attr]
    assert skewed[0]["timestamp"] == 10  # type: ignore[index]
    assert correct_clock_skew([root, client, server]).children[0].children[0].span["timestamp"] == 25  # type: ignore[index]
