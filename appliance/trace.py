"""One trace's spans as Zipkin sees them: fragments merged, a span tree, clock skew corrected.

These follow Zipkin's own rules (``zipkin2.internal.Trace``, ``SpanNode`` and the UI's
``clock-skew.js``) so that tracebox shows and links a trace exactly as a Zipkin server would.
Inputs are never mutated: a span that changes is replaced by a new dict, so callers may pass
spans (and endpoint dicts) that are shared with a cache.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator
from typing import Any

from tracebox.appliance.model import Span

_ENDPOINT_FIELDS = ("serviceName", "ipv4", "ipv6", "port")


def merge_trace(spans: list[Span], *, strict_trace_id: bool = True) -> list[Span]:
    """Merge fragments of the same span and order the trace root first, then by timestamp.

    Fragments merge when they share an id, the same shared-ness and a compatible local endpoint
    (no field set on both sides with different values); a client and the shared server with its
    id stay apart. A server reusing its client's id gets the ``shared`` flag it lacks, and the
    parent id its client has. With ``strict_trace_id`` false a 64-bit trace id takes the 128-bit
    id that ends with it. When there is nothing to merge and the spans are already in order the
    input list itself is returned: the read path then pays for two linear passes, no copies.
    """
    return _in_order(_merge(spans, strict_trace_id))


def _merge(spans: list[Span], strict_trace_id: bool) -> list[Span]:
    """Merged spans in Zipkin's cleanup order, or the input itself when there is nothing to merge."""
    if len(spans) < 2:
        return spans
    widen = {} if strict_trace_id else _widened_trace_ids(spans)
    if widen or not _nothing_to_merge(spans):
        return _merge_fragments(spans, widen, strict_trace_id)
    return spans


def _in_order(spans: list[Span]) -> list[Span]:
    keys = _order_keys(spans)
    if all(keys[i] < keys[i + 1] for i in range(len(keys) - 1)):
        return spans
    return [spans[i] for i in sorted(range(len(spans)), key=keys.__getitem__)]


def _nothing_to_merge(spans: list[Span]) -> bool:
    """True when each id is unique, or held by one unshared span and one shared server span that
    already has its partner's parent id: the common shape of a trace, checked in one pass."""
    first: dict[str, Span] = {}
    paired: set[str] = set()
    for span in spans:
        span_id = span["id"]
        other = first.get(span_id)
        if other is None:
            first[span_id] = span
            continue
        if span_id in paired or other["traceId"] != span["traceId"]:
            return False
        shared, unshared = (span, other) if span.get("shared") else (other, span)
        if unshared.get("shared") or not shared.get("shared"):
            return False
        if "parentId" in unshared and "parentId" not in shared:
            return False
        paired.add(span_id)
    return True


def _widened_trace_ids(spans: list[Span]) -> dict[str, str]:
    """Map each 64-bit trace id to the 128-bit id sharing its low half (Zipkin's non-strict mode)."""
    long_ids = sorted({span["traceId"] for span in spans if len(span["traceId"]) == 32})
    if not long_ids:
        return {}
    by_low: dict[str, str] = {}
    for long_id in long_ids:
        by_low.setdefault(long_id[16:], long_id)
    return {
        span["traceId"]: by_low[span["traceId"]]
        for span in spans
        if len(span["traceId"]) == 16 and span["traceId"] in by_low
    }


def _shared_rank(span: Span) -> int:
    """Zipkin's cleanup order within one id: the client, then other unshared spans, then shared."""
    if span.get("shared"):
        return 2
    return 0 if span.get("kind") == "CLIENT" else 1


def _endpoint_order(endpoint: dict[str, Any] | None) -> tuple[Any, ...]:
    """No endpoint first, so its data lands on the first span with an endpoint; missing fields last."""
    if not endpoint:
        return (0,)
    key: list[Any] = [1]
    for field in ("serviceName", "ipv4", "ipv6"):
        value = endpoint.get(field)
        key += (value is None, value or "")
    return tuple(key)


def _merge_fragments(spans: list[Span], widen: dict[str, str], strict: bool) -> list[Span]:
    def group(span: Span) -> Hashable:
        return (span["traceId"], span["id"]) if strict else span["id"]

    ordered = sorted(
        spans, key=lambda s: (group(s), _shared_rank(s), _endpoint_order(s.get("localEndpoint")))
    )
    result: list[Span] = []
    last: Span | None = None
    i, length = 0, len(ordered)
    while i < length:
        span = ordered[i]
        if span["traceId"] in widen:
            span = {**span, "traceId": widen[span["traceId"]]}
        shared = bool(span.get("shared"))
        tracker: _EndpointTracker | None = None
        while i + 1 < length and group(ordered[i + 1]) == group(ordered[i]):
            following = ordered[i + 1]
            if tracker is None:
                tracker = _EndpointTracker(span.get("localEndpoint"))
            if shared != bool(following.get("shared")) or not tracker.try_merge(
                following.get("localEndpoint")
            ):
                break
            if following is not span and following != span:
                span = _merge_pair(span, following)
            i += 1
        if last is not None and last["id"] == span["id"] and last["traceId"] == span["traceId"]:
            if last.get("kind") == "CLIENT" and span.get("kind") == "SERVER" and not shared:
                shared = True
                span = {**span, "shared": True}
            if shared and "parentId" not in span and "parentId" in last:
                span = {**span, "parentId": last["parentId"]}
        result.append(span)
        last = span
        i += 1
    return result


class _EndpointTracker:
    """Accumulates a local endpoint sent in pieces; refuses a piece that contradicts it."""

    __slots__ = ("fields",)

    def __init__(self, endpoint: dict[str, Any] | None) -> None:
        self.fields: dict[str, Any] = dict(endpoint) if endpoint else {}

    def try_merge(self, endpoint: dict[str, Any] | None) -> bool:
        if not endpoint:
            return True
        fields = self.fields
        for key, value in endpoint.items():
            known = fields.get(key)
            if known is not None and value is not None and known != value:
                return False
        for key, value in endpoint.items():
            fields.setdefault(key, value)
        return True


def _merge_pair(left: Span, right: Span) -> Span:
    """Zipkin's ``Span.Builder.merge``: the left side's values win, tags and annotations union."""
    merged = {**right, **left}
    for key in ("localEndpoint", "remoteEndpoint"):
        if key in left and key in right:
            merged[key] = _merge_endpoint(left[key], right[key])
    if "annotations" in left and "annotations" in right:
        pairs = {(a["timestamp"], a["value"]) for a in left["annotations"]}
        pairs.update((a["timestamp"], a["value"]) for a in right["annotations"])
        merged["annotations"] = [{"timestamp": t, "value": v} for t, v in sorted(pairs)]
    for key in ("tags", "otel"):
        if key in left and key in right:
            merged[key] = {**left[key], **right[key]}
    if merged.get("kind") == "CLIENT":
        merged.pop("shared", None)
    return merged


def _merge_endpoint(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """Fill the left endpoint's missing fields from the right, keeping the model's field order."""
    merged = {}
    for field in _ENDPOINT_FIELDS:
        value = left.get(field, right.get(field))
        if value is not None:
            merged[field] = value
    return merged


def _order_keys(spans: list[Span]) -> list[tuple[Any, ...]]:
    """Sort keys for the UI's order: roots first, then by timestamp and name.

    Spans sharing an id sort by their lead's (the client's) timestamp, then client first, so the
    two halves of an RPC stay together even when the server's clock runs behind. The position
    breaks the remaining ties, keeping Zipkin's merge order and making every key unique.
    """
    lead: dict[tuple[str, str], tuple[int, int, str]] = {}
    ranks: list[int] = []
    for span in spans:
        rank = _shared_rank(span)
        ranks.append(rank)
        group = (span["traceId"], span["id"])
        current = lead.get(group)
        if current is None or rank < current[0]:
            lead[group] = (rank, span.get("timestamp", 0), span.get("name", ""))
    keys = []
    for n, span in enumerate(spans):
        _, timestamp, name = lead[(span["traceId"], span["id"])]
        keys.append(("parentId" in span, timestamp, name, span["id"], ranks[n], n))
    return keys


class SpanNode:
    """A span in the trace tree; ``span`` is None only on a synthetic root holding orphans."""

    __slots__ = ("children", "parent", "span")

    def __init__(self, span: Span | None) -> None:
        self.span = span
        self.parent: SpanNode | None = None
        self.children: list[SpanNode] = []

    def add_child(self, child: SpanNode) -> None:
        if child is self:
            raise ValueError(f"circular dependency on span {self.span and self.span['id']}")
        self.children.append(child)
        child.parent = self

    def traverse(self) -> Iterator[SpanNode]:
        """Breadth-first over real spans; a synthetic root is skipped, its children come first."""
        queue = deque(self.children if self.span is None else (self,))
        while queue:
            node = queue.popleft()
            yield node
            queue.extend(node.children)

    def __repr__(self) -> str:
        return f"SpanNode({self.span!r}, children={len(self.children)})"


def _endpoint_key(endpoint: dict[str, Any] | None) -> Hashable:
    return frozenset(endpoint.items()) if endpoint else None


def build_tree(spans: list[Span], *, strict_trace_id: bool = True, sort: bool = True) -> SpanNode:
    """Zipkin's ``SpanNode.Builder``: merge the trace, then link each span under its parent.

    A shared server span is the child of the client with its id; a span whose parent id names a
    shared server on its own endpoint goes under that server (several servers may answer one
    client id). The first root wins; spans without a known parent, and spans left out of the
    tree by an id cycle or an unmergeable duplicate id, hang under the root (a synthetic one if
    the trace has none) rather than disappear. Children are ordered by timestamp unless
    ``sort`` is false (the linker does not need it).
    """
    if not spans:
        raise ValueError("a trace tree needs at least one span")
    cleaned = _merge(spans, strict_trace_id)
    if sort or sum("parentId" not in span and not span.get("shared") for span in cleaned) > 1:
        cleaned = _in_order(cleaned)  # the first root in Zipkin's order is the real one
    shared = [span for span in cleaned if span.get("shared")]
    shared_ids = {span["id"] for span in shared}
    shared_keys = {(span["id"], _endpoint_key(span.get("localEndpoint"))) for span in shared}

    root: SpanNode | None = None
    key_to_node: dict[Hashable, SpanNode] = {}
    parent_of: dict[Hashable, Hashable] = {}
    nodes: list[SpanNode] = []
    for span in cleaned:
        node = SpanNode(span)
        nodes.append(node)
        span_id = span["id"]
        if shared_ids and span.get("shared"):
            key = (span_id, _endpoint_key(span.get("localEndpoint")))
            key_to_node[key] = key_to_node[(span_id, None)] = node
            parent_of[key] = span_id  # the client with the same id, unambiguous by id alone
            continue
        parent_id = span.get("parentId")
        if parent_id is None:
            if root is None:
                root = node
                continue
        elif parent_id in shared_ids:
            # most specific first: a child of a shared server span on this span's own endpoint
            shared_parent = (parent_id, _endpoint_key(span.get("localEndpoint")))
            if shared_parent in shared_keys:
                parent_id = shared_parent
        key_to_node[span_id] = node
        parent_of[span_id] = parent_id

    if root is None:
        root = SpanNode(None)
    for key, parent_key in parent_of.items():
        child = key_to_node.get(key)
        if child is None or child.parent is not None:
            continue
        parent = key_to_node.get(parent_key) if parent_key is not None else None
        (parent or root).add_child(child)

    reached = _settle(root, nodes, sort)
    if reached < len(nodes):
        _adopt_unreachable(root, nodes)
        _settle(root, nodes, sort)
    return root


def _settle(root: SpanNode, nodes: list[SpanNode], sort: bool) -> int:
    """Sort children by timestamp (missing first, like Zipkin) and count the spans reached."""
    reached = 0 if root.span is None else 1
    queue = [root]
    while queue:
        node = queue.pop()
        children = node.children
        if children:
            if sort and len(children) > 1:
                children.sort(key=lambda child: child.span.get("timestamp", 0))  # type: ignore[union-attr]
            reached += len(children)
            queue.extend(children)
    return reached


def _adopt_unreachable(root: SpanNode, nodes: list[SpanNode]) -> None:
    """Hang spans that a parent-id cycle or a lost duplicate cut off from the root under it."""
    reachable = {id(node) for node in root.traverse()}
    reachable.add(id(root))
    for node in nodes:
        if id(node) in reachable:
            continue
        seen = {id(node)}
        top = node
        while top.parent is not None and id(top.parent) not in seen:
            top = top.parent
            seen.add(id(top))
        if top.parent is not None:  # a cycle: cut it where we came back round
            top.parent.children.remove(top)
            top.parent = None
        root.add_child(top)
        reachable.update(id(n) for n in top.traverse())


def correct_clock_skew(spans: list[Span], *, strict_trace_id: bool = True) -> SpanNode:
    """The trace tree with each server shifted into its client where their clocks disagree.

    Zipkin's UI adjustment: skew is only seen from a CLIENT to its SERVER child on another host
    (by IP); the shift applies to that server's spans and is carried down to descendants on the
    same host. A trace without a real root, or with a second root, is left as it is.
    """
    tree = build_tree(spans, strict_trace_id=strict_trace_id)
    if tree.span is None:
        return tree
    for child in tree.children:
        if "parentId" not in child.span and not child.span.get("shared"):  # type: ignore[operator]
            return tree
    stack: list[tuple[SpanNode, _Skew | None]] = [(tree, None)]
    while stack:
        node, inherited = stack.pop()
        if inherited is not None:
            node.span = _shift(node.span, inherited)  # type: ignore[arg-type]
        skew = _clock_skew(node)
        if skew is not None:
            node.span = _shift(node.span, skew)  # type: ignore[arg-type]
        else:
            skew = inherited
        stack.extend((child, skew) for child in node.children)
    return tree


class _Skew:
    __slots__ = ("endpoint", "skew")

    def __init__(self, endpoint: dict[str, Any], skew: int) -> None:
        self.endpoint = endpoint
        self.skew = skew


def ips_match(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Same host when an IPv6 or IPv4 address agrees; endpoints without addresses never match."""
    if not a or not b:
        return False
    if a.get("ipv6") and a.get("ipv6") == b.get("ipv6"):
        return True
    if not a.get("ipv4") and not b.get("ipv4"):
        return False
    return a.get("ipv4") == b.get("ipv4")


def _clock_skew(node: SpanNode) -> _Skew | None:
    if node.parent is None or node.parent.span is None or node.span is None:
        return None
    client, server = node.parent.span, node.span
    if client.get("kind") != "CLIENT" or server.get("kind") != "SERVER":
        return None
    client_ts, server_ts = client.get("timestamp"), server.get("timestamp")
    if not client_ts or not server_ts or server_ts > client_ts:
        return None  # no skew unless the server seems to start before its client
    server_ep, client_ep = server.get("localEndpoint"), client.get("localEndpoint")
    if not server_ep or not client_ep or ips_match(server_ep, client_ep):
        return None  # an RPC to the same host cannot be skewed: that is an instrumentation bug
    client_duration, server_duration = client.get("duration"), server.get("duration")
    if not client_duration or not server_duration:
        # one-way: push the server 1us after the client, the least latency possible
        return _Skew(server_ep, server_ts - client_ts - 1)
    if client_duration < server_duration:
        # the client finished first (async), yet the server still started after it
        return _Skew(server_ep, server_ts - client_ts - 1)
    latency = (client_duration - server_duration) // 2  # centre the server inside its client
    skew = server_ts - latency - client_ts
    return _Skew(server_ep, skew) if skew else None


def _shift(span: Span, skew: _Skew) -> Span:
    if not ips_match(skew.endpoint, span.get("localEndpoint")):
        return span
    shifted = dict(span)
    if "timestamp" in span:
        shifted["timestamp"] = span["timestamp"] - skew.skew
    if "annotations" in span:
        shifted["annotations"] = [
            {"timestamp": a["timestamp"] - skew.skew, "value": a["value"]} for a in span["annotations"]
        ]
    return shifted
