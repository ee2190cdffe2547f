"""Trace insights: the patterns of the debugging playbook, read off a whole trace.

``analyse(spans)`` returns ``Finding`` values (N+1, sequential fan-out, queuing gaps, retry storms,
oversized LLM context and the critical path); ``critical_path`` is the walk the waterfall marks.
"""

from tracebox.appliance.insights.analyse import (
    CRITICAL_PATH,
    DEFAULT_CONFIG,
    KINDS,
    LABELS,
    N_PLUS_ONE,
    OVERSIZED_LLM_CONTEXT,
    PATTERNS,
    QUEUING_GAP,
    RETRY_STORM,
    SEQUENTIAL_FANOUT,
    Finding,
    InsightConfig,
    LlmBaseline,
    analyse,
    kinds_of,
)
from tracebox.appliance.insights.critical import critical_path
from tracebox.appliance.insights.normalise import normalise_statement

__all__ = [
    "CRITICAL_PATH",
    "DEFAULT_CONFIG",
    "KINDS",
    "LABELS",
    "N_PLUS_ONE",
    "OVERSIZED_LLM_CONTEXT",
    "PATTERNS",
    "QUEUING_GAP",
    "RETRY_STORM",
    "SEQUENTIAL_FANOUT",
    "Finding",
    "InsightConfig",
    "LlmBaseline",
    "analyse",
    "critical_path",
    "kinds_of",
    "normalise_statement",
]
