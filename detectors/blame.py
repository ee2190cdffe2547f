"""Blame the dependency, not its callers.

A caller's latency or error finding is explained when the root causes below it (off-normal
downstream operations with nothing off-normal below them) account for at least half its excess;
it then stays quiet and names them.
"""

from __future__ import annotations

from .finding import ANOMALOUS, ELEVATED, Finding, Node
from .lineage import Lineage

EXPLAINED_SHARE = 0.5


def blame_dependencies(findings: list[Finding], lineage: Lineage) -> None:
    off_normal: dict[tuple[str, Node], Finding] = {
        (f.kind, f.node): f for f in findings if f.node and f.state in (ANOMALOUS, ELEVATED)
    }
    for finding in findings:
        if finding.state != ANOMALOUS or finding.node is None:
            continue
        below = lineage.descendants(finding.node)
        culprits = sorted(
            node
            for node in below
            if (finding.kind, node) in off_normal
            and not any((finding.kind, d) in off_normal for d in lineage.descendants(node))
        )
        explained = sum(off_normal[(finding.kind, node)].excess for node in culprits)
        if culprits and explained >= EXPLAINED_SHARE * finding.excess:
            finding.state = ELEVATED
            finding.labels["explainedBy"] = [
                {"service": node[0], "operation": node[1], "view": node[2]} for node in culprits
            ]
