"""A layered drawing of the service graph, computed here and emitted as SVG by a template.

Services are placed in columns by the longest call path that reaches them (cycles broken at the
edges a depth-first walk finds going back), ordered within a column by their callers' positions,
and edges are cubic curves from a caller's right side to a callee's left side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

NODE_W = 150
NODE_H = 30
COL_GAP = 92
ROW_GAP = 26
MARGIN = 24


@dataclass(slots=True)
class Node:
    name: str
    x: float = 0
    y: float = 0
    layer: int = 0
    calls_in: int = 0
    calls_out: int = 0
    errors_in: int = 0
    label: str = ""


@dataclass(slots=True)
class Edge:
    parent: str
    child: str
    calls: int
    errors: int
    path: str = ""
    label_x: float = 0
    label_y: float = 0
    width: float = 1
    back: bool = False


@dataclass(slots=True)
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: float = 0
    height: float = 0


def layout(links: list[dict[str, Any]]) -> Graph:
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    for link in links:
        parent, child = str(link["parent"]), str(link["child"])
        edge = Edge(parent, child, int(link["callCount"]), int(link.get("errorCount", 0)))
        edges.append(edge)
        for name in (parent, child):
            if name not in nodes:
                nodes[name] = Node(name, label=name if len(name) <= 22 else name[:21] + "…")
        nodes[parent].calls_out += edge.calls
        nodes[child].calls_in += edge.calls
        nodes[child].errors_in += edge.errors
    if not nodes:
        return Graph()

    out: dict[str, list[str]] = {n: [] for n in nodes}
    for edge in edges:
        if edge.parent != edge.child:
            out[edge.parent].append(edge.child)
    back = _back_edges(list(nodes), out)
    for edge in edges:
        edge.back = (edge.parent, edge.child) in back or edge.parent == edge.child

    # longest-path layering over the acyclic rest, in topological order
    order = _topological([n for n in nodes], out, back)
    for name in order:
        for child in out[name]:
            if (name, child) not in back:
                nodes[child].layer = max(nodes[child].layer, nodes[name].layer + 1)

    columns: dict[int, list[Node]] = {}
    for name in order:
        columns.setdefault(nodes[name].layer, []).append(nodes[name])
    callers: dict[str, list[str]] = {n: [] for n in nodes}
    for edge in edges:
        if not edge.back:
            callers[edge.child].append(edge.parent)
    rows_used = 0
    for layer in sorted(columns):
        column = columns[layer]
        if layer > 0:  # barycentre of the callers' rows keeps edges short and straight

            def centre(node: Node) -> float:
                ys = [nodes[c].y for c in callers[node.name]]
                return sum(ys) / len(ys) if ys else 0.0

            column.sort(key=lambda n: (centre(n), n.name))
        else:
            column.sort(key=lambda n: n.name)
        for i, node in enumerate(column):
            node.x = MARGIN + layer * (NODE_W + COL_GAP)
            node.y = MARGIN + i * (NODE_H + ROW_GAP)
        rows_used = max(rows_used, len(column))

    top = max(e.calls for e in edges)
    for edge in edges:
        a, b = nodes[edge.parent], nodes[edge.child]
        edge.width = round(1 + 3 * math.log1p(edge.calls) / math.log1p(top), 2)
        if edge.parent == edge.child:
            x, y = a.x + NODE_W * 0.7, a.y
            edge.path = f"M{x:.0f},{y:.0f} c10,-26 40,-26 30,0"
            edge.label_x, edge.label_y = x + 20, y - 22
            continue
        x1, y1 = a.x + NODE_W, a.y + NODE_H / 2
        x2, y2 = b.x, b.y + NODE_H / 2
        if edge.back or x2 <= x1:  # loop round below
            x1, x2 = a.x + NODE_W / 2, b.x + NODE_W / 2
            y1, y2 = a.y + NODE_H, b.y + NODE_H
            dip = max(y1, y2) + 40
            edge.path = f"M{x1:.0f},{y1:.0f} C{x1:.0f},{dip:.0f} {x2:.0f},{dip:.0f} {x2:.0f},{y2:.0f}"
            edge.label_x, edge.label_y = (x1 + x2) / 2, dip - 6
            continue
        mid = (x1 + x2) / 2
        edge.path = f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2 - 6:.0f},{y2:.0f}"
        edge.label_x, edge.label_y = mid, (y1 + y2) / 2 - 5
    width = MARGIN * 2 + (max(columns) + 1) * NODE_W + max(columns) * COL_GAP
    height = MARGIN * 2 + rows_used * (NODE_H + ROW_GAP) + 10
    return Graph(list(nodes.values()), edges, width, height)


def _back_edges(names: list[str], out: dict[str, list[str]]) -> set[tuple[str, str]]:
    """Edges closing a cycle, found by an iterative depth-first walk from each unvisited node."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    back: set[tuple[str, str]] = set()
    for start in sorted(names):
        if start in state:
            continue
        state[start] = 1
        stack = [(start, iter(sorted(out[start])))]
        while stack:
            name, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[name] = 2
                stack.pop()
            elif state.get(child) == 1:
                back.add((name, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(sorted(out[child]))))
    return back


def _topological(names: list[str], out: dict[str, list[str]], back: set[tuple[str, str]]) -> list[str]:
    indegree = dict.fromkeys(names, 0)
    for name in names:
        for child in out[name]:
            if (name, child) not in back:
                indegree[child] += 1
    ready = sorted(n for n in names if indegree[n] == 0)
    order = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for child in sorted(out[name]):
            if (name, child) not in back:
                indegree[child] -= 1
                if indegree[child] == 0:
                    ready.append(child)
    return order
