"""PromQL conformance against a real Prometheus: the same node_exporter samples are in
Prometheus's TSDB and (by remote write) in Strata; each query below, of every kind, must
give the same answer from both HTTP APIs, instant and range.

The stack is in conftest.py. Only job ``node`` (what Prometheus scraped and remote-wrote)
is queried: Strata's own scrape job ``strata_node`` has samples Prometheus does not.
"""

from __future__ import annotations

import math
import time

import pytest
import requests

# Samples older than this are in Strata (remote write batch_send_deadline is 1 s).
SETTLE_S = 6
# Prometheus must have this much history before the comparison starts.
HISTORY_S = 70

N = '{job="node"}'
CPU = 'node_cpu_seconds_total{job="node"}'
IDLE = 'node_cpu_seconds_total{job="node",mode="idle"}'
MEMF = 'node_memory_MemFree_bytes{job="node"}'
MEMT = 'node_memory_MemTotal_bytes{job="node"}'
LOAD = 'node_load1{job="node"}'
UP = 'up{job="node"}'
RX = 'node_network_receive_bytes_total{job="node"}'

QUERIES = [
    # selectors, offset, @
    UP,
    IDLE,
    f"{LOAD} offset 10s",
    f'{{job="node", __name__=~"node_load(1|5|15)"}}',
    f'{CPU[:-1]},mode!="idle",cpu=~"0|1"}}',
    # rates and deltas
    f"rate({CPU}[30s])",
    f"irate({CPU}[30s])",
    f"increase({RX}[1m])",
    f"rate({IDLE}[30s] offset 10s)",
    f"delta({MEMF}[1m])",
    f"idelta({MEMF}[1m])",
    f"deriv({MEMF}[1m])",
    f"predict_linear({MEMF}[1m], 60)",
    f"resets({CPU}[1m])",
    f"changes({LOAD}[1m])",
    # *_over_time
    f"avg_over_time({LOAD}[1m])",
    f"min_over_time({LOAD}[1m])",
    f"max_over_time({LOAD}[1m])",
    f"sum_over_time({LOAD}[1m])",
    f"count_over_time({LOAD}[1m])",
    f"last_over_time({LOAD}[1m])",
    f"stddev_over_time({MEMF}[1m])",
    f"stdvar_over_time({MEMF}[1m])",
    f"quantile_over_time(0.9, {MEMF}[1m])",
    f"present_over_time({UP}[1m])",
    # aggregations
    f"sum by (mode) (rate({CPU}[30s]))",
    f"avg without (cpu) ({CPU})",
    f"max({MEMF})",
    f"min by (instance) ({CPU})",
    f"count by (mode) ({CPU})",
    f"group by (mode) ({CPU})",
    f"stddev by (mode) ({CPU})",
    f"stdvar({CPU})",
    f"quantile(0.9, rate({CPU}[30s]))",
    f"topk(3, {CPU})",
    # Ties (many CPU modes rate 0) are broken differently by each engine: no ties here.
    f"bottomk(2, rate({IDLE}[30s]))",
    f'count_values("value", {UP})',
    f"count by (__name__) ({{job=\"node\", __name__=~\"node_memory_.*\"}})",
    # binary operators
    f"{MEMF} / {MEMT}",
    f"{MEMF} / on(instance, job) {MEMT}",
    f"{CPU} / on(instance) group_left {MEMT}",
    f"{CPU} > 10",
    f"{CPU} > bool 10",
    f"2 * {LOAD} + 1",
    f"{MEMT} - {MEMF} > 0",
    f"{UP} and on(instance) {LOAD}",
    f"{UP} or {LOAD}",
    f"{CPU} unless on(mode) {IDLE}",
    f"{MEMF} % 7",
    f"{LOAD} ^ 2",
    # functions
    f"abs(-{LOAD})",
    f"ceil({LOAD})",
    f"floor({LOAD})",
    f"round({LOAD}, 0.1)",
    f"clamp({LOAD}, 0.1, 0.5)",
    f"clamp_max({LOAD}, 0.2)",
    f"sqrt({MEMF})",
    f"ln({MEMF})",
    f"exp(-{LOAD})",
    f"sgn({LOAD} - 0.5)",
    f'label_replace({UP}, "host", "$1", "instance", "(.*):.*")',
    f'label_join({UP}, "both", "/", "job", "instance")',
    f"timestamp({UP})",
    f"hour(timestamp({UP}))",
    "time()",
    "vector(1)",
    f"scalar(count({UP}))",
    f'absent(nonexistent{{job="node"}})',
    f"absent({UP})",
    f"absent_over_time({UP}[1m])",
    f"sort_desc(sum by (mode) ({CPU}))",
    # subqueries
    f"max_over_time(rate({IDLE}[30s])[1m:10s])",
    f"avg_over_time(sum by (mode) ({CPU})[40s:5s])",
    # subqueries over a selector (run fused, per series): inner steps, lookback, offset
    f"count_over_time({LOAD}[1m:7s])",
    f"max_over_time({IDLE}[45s:10s] offset 10s)",
    f'min_over_time(label_replace({CPU}, "core", "c$1", "cpu", "(.*)")[1m:15s])',
]


def now() -> float:
    return time.time()


def api(base: str, path: str, params: dict) -> dict:
    r = requests.get(f"{base}{path}", params=params, timeout=30)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{base}{path} {params}: {r.status_code} {body}"
    return body["data"]


def close(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y or abs(x - y) <= 1e-9 * max(abs(x), abs(y))


def key(metric: dict) -> tuple:
    return tuple(sorted(metric.items()))


def compare(query: str, prom: dict, strata: dict) -> list[str]:
    errs = []
    if prom["resultType"] != strata["resultType"]:
        return [f"{query}: resultType {strata['resultType']} != Prometheus {prom['resultType']}"]
    if prom["resultType"] == "scalar":
        if not close(prom["result"][1], strata["result"][1]) or prom["result"][0] != strata["result"][0]:
            errs.append(f"{query}: scalar {strata['result']} != Prometheus {prom['result']}")
        return errs
    field = "value" if prom["resultType"] == "vector" else "values"

    def points(r):
        return [r[field]] if field == "value" else r[field]

    p = {key(r["metric"]): points(r) for r in prom["result"]}
    s = {key(r["metric"]): points(r) for r in strata["result"]}
    if set(p) != set(s):
        errs.append(f"{query}: series only in Prometheus {sorted(set(p) - set(s))[:3]}, only in Strata {sorted(set(s) - set(p))[:3]}")
    for k in set(p) & set(s):
        pp, sp = p[k], s[k]
        if [t for t, _ in pp] != [t for t, _ in sp]:
            errs.append(f"{query} {k}: timestamps {[t for t, _ in sp][:5]} != Prometheus {[t for t, _ in pp][:5]}")
            continue
        for (t, a), (_, b) in zip(pp, sp):
            if not close(a, b):
                errs.append(f"{query} {k} @{t}: {b} != Prometheus {a}")
                break
    if query.startswith("sort_desc") and field == "value":
        # Same order as Prometheus up to ties (which each engine breaks its own way).
        values = [float(r["value"][1]) for r in strata["result"]]
        if values != sorted(values, reverse=True):
            errs.append(f"{query}: not in descending order: {values}")
    return errs


@pytest.fixture(scope="module")
def settled(stack) -> float:
    """A query time (Unix s) with HISTORY_S of data before it in both systems."""
    deadline = now() + HISTORY_S + 60
    while True:
        d = api(stack.prometheus_url, "/api/v1/query", {"query": f"count_over_time({UP}[5m])"})
        n = int(float(d["result"][0]["value"][1])) if d["result"] else 0
        if n * 2 >= HISTORY_S + SETTLE_S:
            break
        assert now() < deadline, "Prometheus did not collect enough history"
        time.sleep(2)
    # Off the whole second: Prometheus 2.x (Debian's) closes its windows on the left and
    # Prometheus 3 (Strata's semantics) leaves them open; a sample exactly on a window
    # boundary would make the two differ.
    return int(now()) - SETTLE_S + 0.321


def test_instant_queries_equal_prometheus(stack, settled):
    errs = []
    for q in QUERIES:
        params = {"query": q, "time": f"{settled}"}
        errs += compare(q, api(stack.prometheus_url, "/api/v1/query", params), api(stack.strata_url, "/api/v1/query", params))
    # @ pins the evaluation time.
    q = f"{UP} @ {settled - 20}"
    params = {"query": q, "time": f"{settled}"}
    errs += compare(q, api(stack.prometheus_url, "/api/v1/query", params), api(stack.strata_url, "/api/v1/query", params))
    assert not errs, "\n".join(errs)


def test_range_queries_equal_prometheus(stack, settled):
    errs = []
    for q in QUERIES:
        if q.startswith("sort"):
            continue
        params = {"query": q, "start": f"{settled - 40}", "end": f"{settled}", "step": "10"}
        errs += compare(q, api(stack.prometheus_url, "/api/v1/query_range", params), api(stack.strata_url, "/api/v1/query_range", params))
    assert not errs, "\n".join(errs)


def test_query_errors_match_prometheus(stack):
    for q, status, etype in [
        ("sum(up", 400, "bad_data"),
        ("nosuchfunction(up)", 400, "bad_data"),
    ]:
        for base in (stack.prometheus_url, stack.strata_url):
            r = requests.get(f"{base}/api/v1/query", params={"query": q}, timeout=10)
            assert r.status_code == status, f"{base}: {q}: {r.status_code} {r.text}"
            assert r.json()["errorType"] == etype, f"{base}: {q}: {r.text}"
    params = {"query": "up", "start": "0", "end": "100000", "step": "1"}
    for base in (stack.prometheus_url, stack.strata_url):
        r = requests.get(f"{base}/api/v1/query_range", params=params, timeout=10)
        assert r.status_code == 400 and r.json()["errorType"] == "bad_data", f"{base}: {r.text}"


def flight_sql(stack, query: str):
    import adbc_driver_flightsql.dbapi as flightsql

    with flightsql.connect(stack.flight_uri, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetch_arrow_table()


def test_promql_table_functions_over_flight_sql(stack, settled):
    """promql_instant / promql_range over Flight SQL give Prometheus's answers and compose
    with SQL joins and aggregates."""
    q = f"sum by (mode) (rate({CPU}[30s]))"
    prom = api(stack.prometheus_url, "/api/v1/query", {"query": q, "time": f"{settled}"})
    want = {r["metric"]["mode"]: float(r["value"][1]) for r in prom["result"]}
    t = flight_sql(
        stack,
        f"SELECT labels['mode'] AS mode, value, timestamp FROM promql_instant('{q}', {settled}) ORDER BY mode",
    )
    got = dict(zip(t.column("mode").to_pylist(), t.column("value").to_pylist()))
    assert set(got) == set(want) and all(close(str(got[k]), str(want[k])) for k in want), f"{got} != {want}"
    assert {round(ts.timestamp(), 3) for ts in t.column("timestamp").to_pylist()} == {settled}

    # A join of two PromQL results on a label, and an SQL aggregate over a range query.
    t = flight_sql(
        stack,
        f"SELECT u.labels['instance'] AS instance, u.value AS up, l.value AS load "
        f"FROM promql_instant('{UP}', {settled}) u "
        f"JOIN promql_instant('{LOAD}', {settled}) l ON u.labels['instance'] = l.labels['instance']",
    )
    assert t.num_rows == 1 and t.column("up").to_pylist() == [1.0], t
    prom_load = api(stack.prometheus_url, "/api/v1/query", {"query": LOAD, "time": f"{settled}"})
    assert close(str(t.column("load")[0].as_py()), prom_load["result"][0]["value"][1])
    t = flight_sql(
        stack,
        f"SELECT count(*) AS n, max(value) AS mx FROM promql_range('{LOAD}', {settled - 40}, {settled}, '10s')",
    )
    prom = api(stack.prometheus_url, "/api/v1/query_range", {"query": LOAD, "start": f"{settled - 40}", "end": f"{settled}", "step": "10"})
    values = [float(v) for _, v in prom["result"][0]["values"]]
    assert t.column("n")[0].as_py() == len(values) == 5
    assert close(str(t.column("mx")[0].as_py()), str(max(values)))
