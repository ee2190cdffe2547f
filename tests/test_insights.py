"""Trace insights on constructed traces: each pattern, and the near-misses that must stay quiet."""

from __future__ import annotations

import json
import random
import time

import orjson
import pytest

from tests.conftest import Tracebox, start_tracebox, wait_until
from tracebox.appliance import demo
from tracebox.appliance.insights import (
    CRITICAL_PATH,
    N_PLUS_ONE,
    OVERSIZED_LLM_CONTEXT,
    QUEUING_GAP,
    RETRY_STORM,
    SEQUENTIAL_FANOUT,
    analyse,
    critical_path,
    normalise_statement,
    rollup,
)
from tracebox.appliance.insights.settling import Settling

TRACE = "0000000000000000000000000000abcd"
T0 = 1_700_000_000_000_000
MS = 1000


class Trace:
    """Builds a trace: ``add`` returns the new span's id; times are ms from the trace start."""

    def __init__(self, trace_id: str = TRACE) -> None:
        self.trace_id = trace_id
        self.spans: list[dict] = []

    def add(self, parent=None, *, name="op", service="svc", kind=None, at=0.0, ms=1.0, remote=None, **tags):
        span_id = f"{len(self.spans) + 1:016x}"
        span = {
            "traceId": self.trace_id,
            "id": span_id,
            "name": name,
            "timestamp": T0 + round(at * MS),
            "duration": max(1, round(ms * MS)),
            "localEndpoint": {"serviceName": service},
        }
        if parent:
            span["parentId"] = parent
        if kind:
            span["kind"] = kind
        if remote:
            span["remoteEndpoint"] = {"serviceName": remote}
        if tags:
            span["tags"] = {k.replace("__", "."): str(v) for k, v in tags.items()}
        self.spans.append(span)
        return span_id


def kinds(findings, kind=None):
    found = [f.kind for f in findings if f.kind != CRITICAL_PATH]
    return [k for k in found if k == kind] if kind else found


def db(t, parent, at, statement, ms=2.0, name="select users"):
    return t.add(parent, name=name, kind="CLIENT", remote="postgres", at=at, ms=ms, db__query__text=statement)


# -- statements -----------------------------------------------------------------------------------


def test_normalise_strips_literals_placeholders_and_lists():
    assert normalise_statement("SELECT * FROM t WHERE id = 42") == "SELECT * FROM t WHERE id = ?"
    assert normalise_statement("select * from t where name = 'O''Brien'") == "select * from t where name = ?"
    assert normalise_statement("SELECT * FROM t WHERE id IN (1, 2, 3)") == normalise_statement(
        "SELECT * FROM t WHERE id IN (7)"
    )
    assert normalise_statement("INSERT INTO t VALUES (1, 'a'), (2, 'b')") == "INSERT INTO t VALUES (?)"
    assert normalise_statement("SELECT x FROM t WHERE id = $1") == "SELECT x FROM t WHERE id = ?"
    assert normalise_statement("SELECT col1 FROM t2 WHERE a = 1.5e3") == "SELECT col1 FROM t2 WHERE a = ?"
    assert normalise_statement("SELECT a FROM t") != normalise_statement("SELECT b FROM t")


# -- N+1 ------------------------------------------------------------------------------------------


def test_n_plus_one_same_statement_with_different_literals():
    t = Trace()
    root = t.add(name="get /orders", kind="SERVER", ms=100)
    db(t, root, 1, "SELECT * FROM orders WHERE user_id = 7", ms=5)
    for i in range(8):
        db(t, root, 10 + i * 3, f"SELECT * FROM items WHERE order_id = {i + 100}", name="select items")
    [finding] = [f for f in analyse(t.spans) if f.kind == N_PLUS_ONE]
    assert len(finding.span_ids) == 8
    assert finding.details["statement"] == "SELECT * FROM items WHERE order_id = ?"
    assert finding.details["distinctStatements"] == 8
    assert finding.at_stake_us == 7 * 2 * MS  # sum - max of eight 2 ms queries
    assert finding.operation == "get /orders" and finding.service == "svc"


def test_near_miss_repeated_calls_with_different_statements_are_not_n_plus_one():
    t = Trace()
    root = t.add(name="get /dashboard", kind="SERVER", ms=100)
    tables = ["users", "orders", "items", "invoices", "payments", "addresses", "carts"]
    for i, table in enumerate(tables):
        db(t, root, 1 + i * 3, f"SELECT * FROM {table} WHERE id = {i}", name=f"select {table}")
    assert kinds(analyse(t.spans), N_PLUS_ONE) == []


def test_near_miss_too_few_repeats_and_repeats_under_different_parents():
    t = Trace()
    root = t.add(name="get /x", kind="SERVER", ms=100)
    a = t.add(root, name="a", at=1, ms=40)
    b = t.add(root, name="b", at=50, ms=40)
    for i in range(4):  # 4 under a, 4 under b: never 5 under one parent
        db(t, a, 2 + i * 3, f"SELECT * FROM t WHERE id = {i}")
        db(t, b, 51 + i * 3, f"SELECT * FROM t WHERE id = {i}")
    assert kinds(analyse(t.spans), N_PLUS_ONE) == []


# -- sequential fan-out ---------------------------------------------------------------------------


def test_sequential_calls_that_could_run_side_by_side():
    t = Trace()
    root = t.add(name="get /product", kind="SERVER", ms=200)
    t.add(root, name="get /price", kind="CLIENT", remote="pricing", at=1, ms=50, http__path="/price/1")
    t.add(root, name="get /stock", kind="CLIENT", remote="inventory", at=51, ms=60, http__path="/stock/1")
    t.add(root, name="get /reviews", kind="CLIENT", remote="reviews", at=111, ms=80, http__path="/r/1")
    [finding] = [f for f in analyse(t.spans) if f.kind == SEQUENTIAL_FANOUT]
    assert finding.at_stake_us == (50 + 60) * MS  # sum - max
    assert finding.details["sequentialUs"] == 190 * MS and finding.details["parallelUs"] == 80 * MS
    assert len(finding.span_ids) == 3


def test_same_operation_different_arguments_is_fanout():
    t = Trace()
    root = t.add(name="get /cart", kind="SERVER", ms=130)
    for i in range(4):
        t.add(
            root,
            name="get /item",
            kind="CLIENT",
            remote="catalog",
            at=1 + 30 * i,
            ms=30,
            http__path=f"/item/{i}",
        )
    [finding] = [f for f in analyse(t.spans) if f.kind == SEQUENTIAL_FANOUT]
    assert finding.at_stake_us == 90 * MS


def test_near_miss_overlapping_siblings_are_already_parallel():
    t = Trace()
    root = t.add(name="get /product", kind="SERVER", ms=100)
    t.add(root, name="get /price", kind="CLIENT", remote="pricing", at=1, ms=50)
    t.add(root, name="get /stock", kind="CLIENT", remote="inventory", at=2, ms=60)
    t.add(root, name="get /reviews", kind="CLIENT", remote="reviews", at=3, ms=80)
    assert kinds(analyse(t.spans), SEQUENTIAL_FANOUT) == []


def test_near_miss_calls_with_work_between_them_or_small_savings_or_identical_repeats():
    t = Trace()
    root = t.add(name="get /a", kind="SERVER", ms=300)
    # a pause between the calls: the parent worked on the first answer before the second call
    t.add(root, name="get /price", kind="CLIENT", remote="pricing", at=1, ms=50)
    t.add(root, name="get /stock", kind="CLIENT", remote="inventory", at=80, ms=60)
    # the same call with the same arguments twice (a poll) is not fan-out
    t.add(root, name="get /job", kind="CLIENT", remote="jobs", at=150, ms=60, http__path="/job/1")
    t.add(root, name="get /job", kind="CLIENT", remote="jobs", at=210, ms=60, http__path="/job/1")
    assert kinds(analyse(t.spans), SEQUENTIAL_FANOUT) == []
    small = Trace()
    root = small.add(name="get /b", kind="SERVER", ms=1000)
    small.add(root, name="get /x", kind="CLIENT", remote="x", at=1, ms=5)
    small.add(root, name="get /y", kind="CLIENT", remote="y", at=6, ms=900)
    assert kinds(analyse(small.spans), SEQUENTIAL_FANOUT) == []  # 5 ms to win out of 1 s


def test_a_write_or_a_model_answer_ends_a_run():
    t = Trace()
    root = t.add(name="post /x", kind="SERVER", ms=200)
    db(t, root, 1, "SELECT * FROM a WHERE id = 1", ms=60, name="select a")
    db(t, root, 61, "INSERT INTO b VALUES (1)", ms=60, name="insert b")
    t.add(
        root,
        name="embeddings",
        kind="CLIENT",
        remote="openai",
        at=121,
        ms=40,
        gen_ai__operation__name="embeddings",
    )
    t.add(root, name="search", kind="CLIENT", remote="vectors", at=161, ms=38)
    assert kinds(analyse(t.spans), SEQUENTIAL_FANOUT) == []


# -- queuing gaps ---------------------------------------------------------------------------------


def test_gap_in_a_parent_not_covered_by_children():
    t = Trace()
    root = t.add(name="post /checkout", kind="SERVER", ms=200)
    t.add(root, name="validate", at=1, ms=10)
    charge = t.add(root, name="charge", kind="CLIENT", remote="stripe", at=131, ms=60)
    [finding] = [f for f in analyse(t.spans) if f.kind == QUEUING_GAP]
    assert finding.at_stake_us == 120 * MS
    assert finding.details["beforeSpanId"] == charge and finding.details["cause"] == "before_span"
    assert finding.span_ids == [root, charge]


def test_server_starting_long_after_its_client():
    t = Trace()
    root = t.add(name="get /", kind="SERVER", ms=300, service="front")
    client = t.add(root, name="get /slow", kind="CLIENT", remote="back", at=1, ms=250, service="front")
    server = t.add(client, name="get /slow", kind="SERVER", at=151, ms=95, service="back")
    [finding] = [f for f in analyse(t.spans) if f.kind == QUEUING_GAP]
    assert finding.details["cause"] == "server_started_late"
    assert finding.span_ids == [client, server] and finding.at_stake_us == 150 * MS


def test_near_miss_small_gaps_are_not_flagged():
    t = Trace()
    root = t.add(name="get /", kind="SERVER", ms=100)
    for i in range(5):  # 2 ms between children: small, both absolutely and as a share
        t.add(root, name=f"step {i}", at=1 + i * 20, ms=18)
    long = Trace()
    root = long.add(name="batch", ms=10_000)
    long.add(root, name="a", at=0, ms=4_000)
    long.add(root, name="b", at=4_500, ms=5_500)  # 500 ms, but 5% of the parent
    assert kinds(analyse(t.spans), QUEUING_GAP) == [] and kinds(analyse(long.spans), QUEUING_GAP) == []


# -- retry storms ---------------------------------------------------------------------------------


def test_retry_storm_three_failures_to_the_same_remote():
    t = Trace()
    root = t.add(name="post /pay", kind="SERVER", ms=500)
    ids = [
        t.add(root, name="post /charge", kind="CLIENT", remote="bank", at=1 + 100 * i, ms=90, error="503")
        for i in range(4)
    ]
    t.add(root, name="post /charge", kind="CLIENT", remote="bank", at=401, ms=90)
    [finding] = [f for f in analyse(t.spans) if f.kind == RETRY_STORM]
    assert finding.span_ids == ids and finding.details["attempts"] == 5
    assert finding.at_stake_us == 390 * MS


def test_near_miss_single_retry_and_failures_spread_over_remotes():
    t = Trace()
    root = t.add(name="post /pay", kind="SERVER", ms=500)
    t.add(root, name="post /charge", kind="CLIENT", remote="bank", at=1, ms=90, error="503")
    t.add(root, name="post /charge", kind="CLIENT", remote="bank", at=100, ms=90)
    for i, remote in enumerate(("a", "b", "c")):  # three failures, three different remotes
        t.add(root, name="get /x", kind="CLIENT", remote=remote, at=200 + i * 50, ms=40, error="500")
    assert kinds(analyse(t.spans), RETRY_STORM) == []


# -- oversized LLM context ------------------------------------------------------------------------


def _llm(t, parent, tokens, at=1):
    return t.add(
        parent,
        name="chat gpt-4o",
        kind="CLIENT",
        service="llm-router",
        remote="openai",
        at=at,
        ms=800,
        gen_ai__operation__name="chat",
        gen_ai__provider__name="openai",
        gen_ai__request__model="gpt-4o",
        gen_ai__usage__input_tokens=tokens,
        gen_ai__usage__output_tokens=100,
        gen_ai__response__time_to_first_chunk=0.5,
    )


def test_oversized_llm_context_against_the_routes_median():
    t = Trace()
    root = t.add(name="post /chat", kind="SERVER", ms=1000, service="llm-router")
    big = _llm(t, root, 12_000)
    baseline = {("llm-router", "chat gpt-4o"): 2_000}
    [finding] = [f for f in analyse(t.spans, llm_baseline=baseline) if f.kind == OVERSIZED_LLM_CONTEXT]
    assert finding.span_ids == [big]
    assert finding.details["ratio"] == 6.0 and finding.details["route"] == "post /chat"
    assert finding.at_stake_us == round(500_000 * 10_000 / 12_000)


def test_near_miss_llm_context_within_norm_or_without_baseline():
    t = Trace()
    root = t.add(name="post /chat", kind="SERVER", ms=1000, service="llm-router")
    _llm(t, root, 5_000)
    assert kinds(analyse(t.spans, llm_baseline={("llm-router", "chat gpt-4o"): 2_000})) == []  # 2.5x
    assert kinds(analyse(t.spans, llm_baseline={("llm-router", "chat gpt-4o"): 400})) == [
        OVERSIZED_LLM_CONTEXT
    ]
    assert kinds(analyse(t.spans)) == []  # no norm: nothing said
    assert kinds(analyse(t.spans, llm_baseline={("other", "chat gpt-4o"): 400})) == []


def test_a_stored_oversized_call_costs_what_it_was_priced_at_on_ingest(tmp_path):
    """The finding's excess cost comes from the call's stored price (here an operator's override),
    not from pricing it again with the default table."""
    import asyncio

    from tracebox.appliance.insights.store import trace_insights
    from tracebox.appliance.prepare import Preparer, PrepareSettings
    from tracebox.appliance.store import Store, connect

    usual = []
    for i in range(25):  # a route's norm: 2,000 input tokens
        t = Trace(f"a1b2c3d4e5f60718{i + 1:016x}")
        _llm(t, t.add(name="post /chat", kind="SERVER", ms=1000, service="llm-router"), 2_000)
        usual += t.spans
    big = Trace(f"a1b2c3d4e5f60718{99:016x}")
    big_id = _llm(
        big, big.add(name="post /chat", kind="SERVER", ms=1000, service="llm-router"), 12_000, at=500
    )
    prices = {"gpt-4o": {"input_per_mtok": 100.0, "output_per_mtok": 1000.0}}
    store = Store(tmp_path / "t.db")
    store.prepare = Preparer(PrepareSettings(prices=prices)).rows
    asyncio.run(store.write_spans(usual + big.spans))
    store.close()
    conn = connect(tmp_path / "t.db", readonly=True)
    try:
        _, findings = trace_insights(conn, big.trace_id, strict=True)
    finally:
        conn.close()
    [finding] = [f for f in findings if f.kind == OVERSIZED_LLM_CONTEXT]
    assert finding.span_ids == [big_id]
    cost = (12_000 * 100.0 + 100 * 1000.0) / 1e6  # the override, not the table's gpt-4o price
    assert finding.details["excessCostUsd"] == round(cost * 10_000 / 12_000, 6)


# -- critical path --------------------------------------------------------------------------------


def test_critical_path_shares_add_up_to_the_trace():
    t = Trace()
    root = t.add(name="root", kind="SERVER", ms=100)
    early = t.add(root, name="early", at=12, ms=20)  # inside slow: the parent waited on slow
    slow = t.add(root, name="slow", at=10, ms=60)
    late = t.add(root, name="late", at=75, ms=20)
    [path] = [f for f in analyse(t.spans) if f.kind == CRITICAL_PATH]
    shares = {s["spanId"]: s["selfUs"] for s in path.details["segments"]}
    assert early not in path.span_ids and {root, slow, late} <= set(path.span_ids)
    assert shares == {slow: 60 * MS, late: 20 * MS, root: 20 * MS}
    assert path.at_stake_us == 100 * MS
    assert abs(sum(s["share"] for s in path.details["segments"]) - 1) < 1e-3


def test_critical_path_is_the_waterfalls():
    from tracebox.web import waterfall

    traces = demo.generate_traces(30, seed=4)
    for trace in traces:
        wf = waterfall.build(trace[0]["traceId"], trace)
        marked = {r.spans[0]["id"] for r in wf.rows if r.critical}
        [path] = [f for f in analyse(trace) if f.kind == CRITICAL_PATH]
        assert marked == set(path.span_ids)


class _N:
    def __init__(self, start, duration, parent=None):
        self.start, self.duration, self.parent, self.children = start, duration, parent, []


def test_critical_path_walk_on_plain_nodes():
    nodes = [_N(0, 100), _N(10, 50, 0), _N(70, 40, 0)]  # the last child ends after its parent
    nodes[0].children = [1, 2]
    assert critical_path(nodes) == {0: 10 + 10, 1: 50, 2: 30}


# -- bounded work ---------------------------------------------------------------------------------


def _big_trace(n: int) -> list[dict]:
    t = Trace()
    root = t.add(name="batch", kind="SERVER", ms=n)
    parents = [root]
    for i in range(1, n):
        parent = parents[i // 8]
        if i % 3 == 0:
            span = db(t, parent, i * 0.5, f"SELECT * FROM t WHERE id = {i}", ms=0.4)
        elif i % 3 == 1:
            span = t.add(parent, name=f"call {i % 7}", kind="CLIENT", remote=f"r{i % 5}", at=i * 0.5, ms=0.3)
        else:
            span = t.add(parent, name="work", at=i * 0.5, ms=1.0)
        parents.append(span)
    return t.spans


def test_five_thousand_span_trace_is_analysed_quickly():
    spans = _big_trace(5000)
    analyse(spans)  # warm the statement cache's code paths
    started = time.perf_counter()
    findings = analyse(spans)
    elapsed = time.perf_counter() - started
    assert findings and findings[-1].kind == CRITICAL_PATH
    assert elapsed < 1.0, f"{elapsed:.3f}s for 5,000 spans"


# -- on the demo traffic --------------------------------------------------------------------------


def test_demo_traffic_has_n_plus_one_and_no_false_retry_storms():
    traces = demo.generate_traces(300, seed=11)
    counts: dict[str, int] = {}
    for trace in traces:
        for f in analyse(trace):
            counts[f.kind] = counts.get(f.kind, 0) + 1
    assert counts[CRITICAL_PATH] == 300
    assert 10 <= counts.get(N_PLUS_ONE, 0) <= 60  # 8% of chats with 5+ SELECTs, billing jobs with 5+
    assert counts.get(RETRY_STORM, 0) == 0  # the demo retries once at most
    assert counts.get(SEQUENTIAL_FANOUT, 0) <= 15


# -- API on a live server -------------------------------------------------------------------------


def test_insights_api_on_a_live_server(tracebox: Tracebox):
    t = Trace("1000000000000000000000000000beef")
    now = time.time_ns() // 1000 - 60_000_000
    root = t.add(name="get /orders", kind="SERVER", ms=25, service="insights-api")
    for i in range(6):
        db(t, root, 5 + i * 3, f"SELECT * FROM items WHERE id = {i}", name="select items")
    for span in t.spans:
        span["timestamp"] += now - T0
        span["localEndpoint"] = {"serviceName": "insights-api"}
    assert tracebox.post("/api/v2/spans", orjson.dumps(t.spans)).status_code == 202
    body = tracebox.get_json(f"/api/tracebox/traces/{t.trace_id}/insights")
    assert body["traceId"] == t.trace_id
    found = {f["kind"]: f for f in body["findings"]}
    assert found[N_PLUS_ONE]["spanIds"] == [s["id"] for s in t.spans[1:]]
    assert found[N_PLUS_ONE]["details"]["statement"] == "SELECT * FROM items WHERE id = ?"
    assert found[CRITICAL_PATH]["atStakeUs"] == 25 * MS
    assert body["patterns"] == [N_PLUS_ONE]
    assert tracebox.get("/api/tracebox/traces/0000000000000000000000000000dead/insights").status_code == 404
    assert tracebox.get("/api/tracebox/traces/not-hex/insights").status_code == 400


@pytest.mark.parametrize("query", [{"kind": "nope"}, {"lookback": "x"}])
def test_insights_aggregate_api_rejects_bad_parameters(tracebox: Tracebox, query):
    assert tracebox.get("/api/tracebox/insights", **query).status_code == 400


# -- aggregation and the frequency alert ----------------------------------------------------------


def test_rollup_counts_per_operation_and_alerts_when_a_pattern_becomes_frequent():
    window = rollup.WINDOW_US
    detector = rollup.PatternDetector(rollup.RollupConfig())
    changes = []
    # an hour of traffic without N+1, then a window where half the requests have it
    for w in range(12):
        counts = rollup.WindowCounts()
        for n in range(40):
            counts.add_trace(w * window + n, [("chat", "post /messages")], [], f"{w:04x}{n:012x}")
        changes += detector.observe(w * window, counts)
    assert changes == []
    counts = rollup.WindowCounts()
    for n in range(40):
        patterns = [(N_PLUS_ONE, "chat", "post /messages", 5_000)] if n % 2 else []
        counts.add_trace(12 * window + n, [("chat", "post /messages")], patterns, f"ff{n:014x}")
    fired = detector.observe(12 * window, counts)
    [change] = fired
    alert = change.alert
    assert change.change == "fired" and alert["kind"] == "pattern"
    assert alert["service"] == "chat" and alert["operation"] == "post /messages"
    assert alert["labels"]["pattern"] == N_PLUS_ONE
    assert alert["observed"]["rate"] == 0.5 and alert["expected"]["rate"] < 0.05
    assert alert["traceIds"]


def test_rollup_stays_quiet_for_a_steady_pattern_and_a_rare_one():
    window = rollup.WINDOW_US
    detector = rollup.PatternDetector(rollup.RollupConfig())
    changes = []
    for w in range(20):
        counts = rollup.WindowCounts()
        for n in range(40):
            steady = [(N_PLUS_ONE, "chat", "post /messages", 1_000)] if n % 10 == 0 else []
            rare = [(RETRY_STORM, "chat", "post /messages", 1_000)] if (w == 15 and n == 3) else []
            counts.add_trace(w * window + n, [("chat", "post /messages")], steady + rare, f"{w:04x}{n:012x}")
        changes += detector.observe(w * window, counts)
    assert changes == []


def test_the_server_rolls_up_patterns_of_settled_traces(fresh_tracebox):
    """Through the running server: traces analysed in the engine's process, counted per operation,
    and each counted trace's own findings agree with the per-trace API."""
    traces = demo.generate_traces(60, seed=11)
    spans = [s for trace in traces for s in trace]
    assert fresh_tracebox.post("/api/v2/spans", json.dumps(spans)).status_code == 202
    wait_until(
        lambda: fresh_tracebox.get_json("/api/tracebox/insights/status")["tracesAnalysed"] >= len(traces),
        timeout=90,
    )
    rows = fresh_tracebox.get_json("/api/tracebox/insights", lookback=str(2 * 3_600_000))
    assert rows, "no pattern counted"
    for row in rows:
        assert 0 < row["traces"] <= row["operationTraces"] <= len(traces)
        for trace_id in row["exampleTraceIds"]:
            example = fresh_tracebox.get_json(f"/api/tracebox/traces/{trace_id}/insights")
            assert row["kind"] in example["patterns"]


@pytest.mark.parametrize("share", [0.05, 0.25, 0.6])
def test_the_rollup_sample_is_uniform_over_random_and_sequential_trace_ids(share):
    rng = random.Random(7)
    for lows in ([rng.getrandbits(64) for _ in range(40_000)], list(range(1, 40_001))):
        chosen = sum(rollup.sampled(low, share) for low in lows)
        assert abs(chosen / len(lows) - share) < 0.01
    assert all(rollup.sampled(low, 1.0) for low in range(100))


def test_over_its_budget_the_rollup_analyses_a_sample_and_scales_the_counts(tmp_path):
    """With a budget of 100 spans a second (a burst of 1,000 at once), 200 traces (~3,800 spans)
    settle together: about a quarter is analysed, and the hourly counts still estimate all 200."""
    hour = 3_600_000_000
    last_hour_end = time.time_ns() // 1000 // hour * hour - 60_000_000
    traces = demo.generate_traces(200, seed=5, end_us=last_hour_end, spread_s=600)  # all in one hour
    spans = [s for trace in traces for s in trace]
    server = start_tracebox(tmp_path / "t.db", "--insights-spans-per-second", "100")
    try:
        assert server.post("/api/v2/spans", json.dumps(spans)).status_code == 202

        def settled() -> bool:
            status = server.get_json("/api/tracebox/insights/status")
            return status["tracesAnalysed"] + status["tracesSkipped"] >= len(traces)

        wait_until(settled, timeout=90)
        status = server.get_json("/api/tracebox/insights/status")
        assert status["spansPerSecondBudget"] == 100
        assert 0.15 < status["analysedShare"] < 0.4
        assert status["tracesAnalysed"] < len(traces) / 2
        rows = server.get_json("/api/tracebox/insights", lookback=str(2 * 3_600_000))
        assert rows, "no pattern counted"
        truth: dict[tuple[str, str], int] = {}
        for trace in traces:
            for op in {(s["localEndpoint"]["serviceName"], s["name"]) for s in trace}:
                truth[op] = truth.get(op, 0) + 1
        judged = 0
        for row in rows:
            assert 0 < row["traces"] <= row["operationTraces"]
            true_count = truth[(row["serviceName"], row["operation"])]
            if true_count >= 100:  # the estimate of a common operation's traces, within ~3 sd
                assert 0.6 * true_count < row["operationTraces"] < 1.4 * true_count
                judged += 1
        assert judged
    finally:
        server.stop()


def test_the_rollup_budget_is_a_token_bucket_of_ten_seconds():
    """A burst of ten seconds' worth goes through whole; once spent, a refill of a second's worth;
    overspent by a sample larger than expected, nothing until it refills (and nothing fails)."""
    budget = rollup.InsightRollup(store=None, beside=None, spans_per_s=100)
    assert budget._share(0.0, 800) == 1.0
    budget.allowance -= 800
    assert budget._share(0.0, 2000) == pytest.approx(200 / 2000)
    budget.allowance -= 260  # the sample came out larger than its expectation
    assert budget._share(0.5, 2000) == 0.0
    assert budget._share(2.0, 2000) == pytest.approx(140 / 2000)  # -10 + 1.5 s of refill
    assert budget._count([], 0.0) == ([], [])


def test_settling_traces_come_out_in_arrival_order_with_their_restart_point():
    settling = Settling()
    # rows (1, trace 10, ts 500), (2, trace 20, ts 400), (3, trace 10, ts 300), grouped by trace in
    # the order of their last rows: 10 came again, so it is the newest
    newest = settling.see([(20, 2, 2, 1, 400, 400), (10, 1, 3, 2, 300, 500)], now=0.0)
    assert newest == 500
    settling.see([(30, 4, 4, 1, None, None)], now=2.0)
    assert settling.settled(4.9, 5.0, 10) == []
    assert settling.settled(5.0, 5.0, 10) == [20, 10]  # quiet for 5 s, least recently seen first
    assert settling.settled(5.0, 5.0, 1) == [20, 10]  # and beyond the cap, the next oldest
    assert settling.settled(0.0, 5.0, 1) == [20, 10]
    assert settling.spans([10, 20]) == 3
    assert (settling.first_row_id(), settling.earliest_start()) == (1, 300)
    settling.remove([10])
    assert (settling.first_row_id(), settling.earliest_start()) == (2, 400)
    settling.see([(20, 5, 5, 1, 100, 100)], now=3.0)
    assert settling.earliest_start() == 100
    settling.remove([20])
    assert (settling.first_row_id(), settling.earliest_start(), len(settling)) == (4, None, 1)
