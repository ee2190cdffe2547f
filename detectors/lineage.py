"""Who calls whom, learned from parent/child span links, and the route an LLM call sits under.

Spans arrive in commit order, so a child often comes before its parent (it ends first). Both
directions are handled with bounded caches: ``recent`` remembers spans already seen, ``waiting``
remembers children whose parent has not arrived yet. Each cache has two generations that rotate
when full, which bounds memory and keeps every operation O(1). The caches hold ~100,000 spans at
full rate, so an entry is kept small: ids as integers, and one shared tuple per operation.
"""

from __future__ import annotations

from typing import Any

from .accumulators import LlmCall
from .finding import Node

_MAX_NODES = 100_000


class _TwoGen:
    __slots__ = ("cap", "new", "old")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.new: dict[int, Any] = {}
        self.old: dict[int, Any] = {}

    def get(self, key: int) -> Any:
        value = self.new.get(key)
        return self.old.get(key) if value is None else value

    def pop(self, key: int) -> Any:
        value = self.new.pop(key, None)
        return self.old.pop(key, None) if value is None else value

    def put(self, key: int, value: Any) -> None:
        if len(self.new) >= self.cap:
            self.old, self.new = self.new, {}
        self.new[key] = value


class Lineage:
    def __init__(self, cap: int = 50_000) -> None:
        self.recent = _TwoGen(cap)  # span id -> (node, parent id or 0)
        self.waiting = _TwoGen(cap)  # parent id -> child node
        self.llm_waiting = _TwoGen(cap)  # ancestor id -> [LlmCall]
        self.children: dict[Node, set[Node]] = {}
        self._nodes: dict[Node, Node] = {}  # one tuple per operation, shared by its spans' entries

    def see(self, span_id: str, parent_id: str | None, node: Node) -> None:
        nodes = self._nodes
        shared = nodes.get(node)
        if shared is None:
            if len(nodes) >= _MAX_NODES:  # span names with ids in them: stop sharing, stay bounded
                nodes.clear()
            shared = nodes[node] = node
        node = shared
        own = int(span_id, 16)
        recent = self.recent
        if parent_id:
            parent_key = int(parent_id, 16)
            recent.put(own, (node, parent_key))
            parent = recent.get(parent_key)
            if parent is None:
                self.waiting.put(parent_key, node)
            elif parent[0] != node:
                self._link(parent[0], node)
        else:
            parent_key = 0
            recent.put(own, (node, 0))
        child = self.waiting.pop(own)
        if child is not None and child != node:
            self._link(node, child)
        llm_waiting = self.llm_waiting
        if llm_waiting.new or llm_waiting.old:
            records = llm_waiting.pop(own)
            if records:
                for record in records:
                    self._climb(record, node, parent_key)

    def _link(self, parent: Node, child: Node) -> None:
        kids = self.children.get(parent)
        if kids is None:
            self.children[parent] = {child}
        elif child not in kids:
            kids.add(child)

    def place_llm(self, record: LlmCall, parent_id: str | None) -> None:
        """Set ``record.route``: the nearest server span above it, else the trace's root."""
        if not parent_id:
            record.route = record.name
            return
        parent_key = int(parent_id, 16)
        parent = self.recent.get(parent_key)
        if parent is None:
            self._wait(parent_key, record)
        else:
            self._climb(record, parent[0], parent[1])

    def _climb(self, record: LlmCall, node: Node, parent_id: int) -> None:
        while record.route is None:
            if node[2] == "server" or not parent_id:
                record.route = node[1]
                return
            above = self.recent.get(parent_id)
            if above is None:
                self._wait(parent_id, record)
                return
            node, parent_id = above

    def _wait(self, parent_id: int, record: LlmCall) -> None:
        records = self.llm_waiting.get(parent_id)
        if records is None:
            self.llm_waiting.put(parent_id, [record])
        else:
            records.append(record)

    def descendants(self, node: Node) -> set[Node]:
        seen: set[Node] = set()
        stack = [node]
        while stack:
            for child in self.children.get(stack.pop(), ()):
                if child not in seen and child != node:
                    seen.add(child)
                    stack.append(child)
        return seen
