"""Service dependency links from traces, by the rules of Zipkin's ``DependencyLinker``.

Links are counted between the services on either side of each remote call, preferring the
server's own view: a client span with children is skipped because its server (or the spans
under it) will report the call. The store runs this over every trace of a window, so spans may
be trimmed to the fields read here (see ``DependencyLinker.put_trace``).
"""

from __future__ import annotations

from collections.abc import Iterable

from tracebox.appliance.model import Span
from tracebox.appliance.trace import SpanNode, build_tree

Link = dict[str, str | int]


class DependencyLinker:
    """Accumulates call and error counts per (parent, child) service pair over many traces."""

    __slots__ = ("_calls", "_errors")

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], int] = {}
        self._errors: dict[tuple[str, str], int] = {}

    def put_trace(self, spans: list[Span]) -> DependencyLinker:
        """Count the links of one trace; all spans must belong to it.

        Only ``traceId``, ``id``, ``parentId``, ``kind``, ``shared``, ``localEndpoint`` and
        ``remoteEndpoint`` (``serviceName`` is enough) and ``tags`` (only whether ``error`` is a
        key matters) are read, so the store may pass spans trimmed to those and share endpoint
        and tag dicts between them.
        """
        if not spans:
            return self
        tree = build_tree(spans, sort=False)
        for node in tree.traverse():
            self._link(node, node is tree)
        return self

    def _link(self, node: SpanNode, is_root: bool) -> None:
        span: Span = node.span  # type: ignore[assignment]  # traverse yields real spans only
        kind = span.get("kind")
        if kind == "CLIENT" and node.children:
            return  # the server side (or what is below it) names the callee better
        local_ep = span.get("localEndpoint")
        remote_ep = span.get("remoteEndpoint")
        local = local_ep.get("serviceName") if local_ep else None
        remote = remote_ep.get("serviceName") if remote_ep else None
        if kind is None:
            if local is None or remote is None:
                return  # a local span
            kind = "CLIENT"  # an unknown kind that knows both sides reads as a client

        if kind == "SERVER" or kind == "CONSUMER":
            child, parent = local, remote
            if is_root and parent is None:
                return  # the root's caller is unknown
        else:
            parent, child = local, remote
        tags = span.get("tags")
        is_error = bool(tags) and "error" in tags
        if kind == "PRODUCER" or kind == "CONSUMER":
            if parent is not None and child is not None:  # messaging links go through the broker
                self._add(parent, child, is_error)
            return

        ancestor = _first_remote_ancestor(node)
        if ancestor is not None:
            ancestor_ep = ancestor.get("localEndpoint")
            ancestor_name = ancestor_ep.get("serviceName") if ancestor_ep else None
            if ancestor_name is not None:
                if kind == "CLIENT" and local is not None and ancestor_name != local:
                    # a caller whose server span is missing: backfill the hop into it, error unknown
                    self._add(ancestor_name, local, False)
                if kind == "SERVER" or parent is None:
                    parent = ancestor_name
                if (
                    not is_error
                    and ancestor.get("kind") == "CLIENT"
                    and span.get("parentId") is not None
                    and span.get("parentId") == ancestor["id"]
                ):
                    # an RPC split across spans: the client's error counts for the call
                    ancestor_tags = ancestor.get("tags")
                    is_error = bool(ancestor_tags) and "error" in ancestor_tags
        if parent is not None and child is not None:
            self._add(parent, child, is_error)

    def _add(self, parent: str, child: str, is_error: bool) -> None:
        key = (parent, child)
        self._calls[key] = self._calls.get(key, 0) + 1
        if is_error:
            self._errors[key] = self._errors.get(key, 0) + 1

    def links(self) -> list[Link]:
        """Zipkin's JSON links, sorted by (parent, child); ``errorCount`` only when non-zero."""
        return _as_links(self._calls, self._errors)


def _first_remote_ancestor(node: SpanNode) -> Span | None:
    """The nearest ancestor with a kind, skipping local spans and a synthetic root."""
    ancestor = node.parent
    while ancestor is not None:
        span = ancestor.span
        if span is not None and span.get("kind") is not None:
            return span
        ancestor = ancestor.parent
    return None


def merge_links(link_lists: Iterable[Iterable[Link]]) -> list[Link]:
    """Sum links computed separately (e.g. per time bucket) into one sorted list."""
    calls: dict[tuple[str, str], int] = {}
    errors: dict[tuple[str, str], int] = {}
    for links in link_lists:
        for link in links:
            key = (str(link["parent"]), str(link["child"]))
            calls[key] = calls.get(key, 0) + int(link["callCount"])
            error_count = int(link.get("errorCount", 0))
            if error_count:
                errors[key] = errors.get(key, 0) + error_count
    return _as_links(calls, errors)


def _as_links(calls: dict[tuple[str, str], int], errors: dict[tuple[str, str], int]) -> list[Link]:
    result: list[Link] = []
    for (parent, child), count in sorted(calls.items()):
        link: Link = {"parent": parent, "child": child, "callCount": count}
        if errors.get((parent, child)):
            link["errorCount"] = errors[(parent, child)]
        result.append(link)
    return result
