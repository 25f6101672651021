"""Strata against the real thing: node_exporter's series reach Strata through Prometheus's
remote write (job ``node``) and through Strata's own scraping (job ``strata_node``); the
samples Strata stores equal, bit for bit, what Prometheus stores; and they survive a flush
into the Delta tables, read back with the ``deltalake`` package.

The stack is in conftest.py.
"""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import requests
from deltalake import DeltaTable

# A sample Prometheus holds that is at least this old must already be in Strata
# (remote write: batch_send_deadline 1s).
SETTLE_MS = 5_000
# Series compared sample by sample (all of job "node", scraped by Prometheus).
COMPARED = [
    'node_load1{job="node"}',
    'node_memory_MemTotal_bytes{job="node"}',
    'node_cpu_seconds_total{job="node",cpu="0",mode="idle"}',
    'up{job="node"}',
    'scrape_duration_seconds{job="node"}',
]
STALE_NAN_BITS = 0x7FF0000000000002


# ---------------------------------------------------------------------------- helpers


def sql_quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def flight_sql(stack, query: str) -> pa.Table:
    """Runs one statement over Arrow Flight SQL (ADBC) and returns the whole result."""
    with flightsql.connect(stack.flight_uri, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetch_arrow_table()


def scalar(stack, query: str):
    t = flight_sql(stack, query)
    assert t.num_rows == 1 and t.num_columns == 1, f"{query!r} returned {t}"
    return t.column(0)[0].as_py()


def bits(v: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", v))[0]


def is_stale(v: float) -> bool:
    return math.isnan(v) and bits(v) == STALE_NAN_BITS


def prom_range(stack, selector: str, at_ms: int, window: str = "1m") -> list[tuple[dict, dict[int, str]]]:
    """The raw samples of `selector[window]` at `at_ms`, from Prometheus's query API:
    [(labels including __name__, {timestamp_ms: value string})]."""
    r = requests.get(
        f"{stack.prometheus_url}/api/v1/query",
        params={"query": f"{selector}[{window}]", "time": f"{at_ms / 1000:.3f}"},
        timeout=10,
    )
    assert r.status_code == 200, f"Prometheus query {selector}: HTTP {r.status_code} {r.text}"
    body = r.json()
    assert body["status"] == "success", body
    assert body["data"]["resultType"] == "matrix", body
    out = []
    for series in body["data"]["result"]:
        samples = {round(float(ts) * 1000): v for ts, v in series["values"]}
        out.append((series["metric"], samples))
    return out


def prom_series(stack, selector: str, min_old: int, timeout_s: float = 40):
    """Polls Prometheus until `selector` names exactly one series with at least `min_old`
    samples older than SETTLE_MS at query time; returns (labels, {ms: value str}, at_ms)
    with only those old samples kept."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        at_ms = int(time.time() * 1000)
        result = prom_range(stack, selector, at_ms)
        last = result
        if len(result) == 1:
            labels, samples = result[0]
            old = {t: v for t, v in samples.items() if t <= at_ms - SETTLE_MS}
            if len(old) >= min_old:
                return labels, old, at_ms
        assert len(result) <= 1, f"{selector} matches {len(result)} series: {[m for m, _ in result]}"
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus has no {min_old} settled samples of {selector} after {timeout_s}s: {last}")
        time.sleep(1)


def strata_samples(stack, labels: dict) -> dict[int, float]:
    """The samples Strata holds for exactly the series `labels` (with __name__), over
    Flight SQL, as {timestamp_ms: value}; stale markers left out."""
    name = labels["__name__"]
    want = {k: v for k, v in labels.items() if k != "__name__"}
    where = [f"metric_name = {sql_quote(name)}"] + [
        f"labels[{sql_quote(k)}] = {sql_quote(v)}" for k, v in sorted(want.items())
    ]
    t = flight_sql(
        stack,
        f"SELECT labels, timestamp, value FROM metrics WHERE {' AND '.join(where)} ORDER BY timestamp",
    )
    rows = zip(
        t.column("labels").to_pylist(),
        t.column("timestamp").cast(pa.int64()).to_pylist(),
        t.column("value").to_pylist(),
    )
    out: dict[int, float] = {}
    for lbls, ts_us, v in rows:
        if dict(lbls) != want:
            continue  # a series with more labels than the selector names
        assert ts_us % 1000 == 0, f"{labels}: timestamp {ts_us} µs is not a whole ms"
        if is_stale(v):
            continue
        ms = ts_us // 1000
        assert ms not in out or bits(out[ms]) == bits(v), (
            f"{labels}: two different values at {ms}: {out[ms]!r} and {v!r}"
        )
        out[ms] = v
    return out


def compare(what: str, prom: dict[int, str], got: dict[int, float], window: tuple[int, int]) -> list[str]:
    """Differences between Prometheus's samples and Strata's: every Prometheus sample must
    be in Strata with the same bits, and Strata must hold no other sample inside `window`
    (inclusive ms bounds, inside what Prometheus answered for)."""
    errors = []
    for ts, v in sorted(prom.items()):
        want = float(v)
        if ts not in got:
            errors.append(f"{what}: sample at {ts} ms (value {v}) missing in Strata")
        elif bits(got[ts]) != bits(want):
            errors.append(f"{what}: at {ts} ms Prometheus has {v} ({want!r}), Strata has {got[ts]!r}")
    lo, hi = window
    extra = sorted(t for t in got if lo <= t <= hi and t not in prom)
    if extra:
        errors.append(
            f"{what}: Strata has samples Prometheus does not at {extra} "
            f"(values {[got[t] for t in extra]}); Prometheus has {sorted(prom)}"
        )
    return errors


# ------------------------------------------------------------------------------ tests


def test_series_arrive_by_remote_write_and_scrape(stack):
    """Within ~20 s Strata holds node_exporter's series twice: remote-written by Prometheus
    (job node) and scraped by Strata itself (job strata_node), and `up` is 1."""
    deadline = time.monotonic() + 30
    state: dict = {}
    while True:
        stack.check_alive()
        try:
            for job in ("node", "strata_node"):
                state[f"series {job}"] = scalar(
                    stack,
                    "SELECT count(DISTINCT series_id) FROM metrics "
                    f"WHERE labels['job'] = {sql_quote(job)}",
                )
            t = flight_sql(
                stack,
                "SELECT labels['job'] AS job, count(*) AS n FROM metrics "
                "WHERE metric_name = 'node_cpu_seconds_total' GROUP BY labels['job']",
            )
            state["node_cpu_seconds_total samples by job"] = dict(
                zip(t.column("job").to_pylist(), t.column("n").to_pylist())
            )
            for job in ("node", "strata_node"):
                t = flight_sql(
                    stack,
                    "SELECT value FROM metrics WHERE metric_name = 'up' "
                    f"AND labels['job'] = {sql_quote(job)} ORDER BY timestamp DESC LIMIT 1",
                )
                state[f"last up {job}"] = t.column("value").to_pylist()
            state.pop("error", None)
        except Exception as e:  # noqa: BLE001 - keep polling; report the last error
            state["error"] = repr(e)
        ok = (
            "error" not in state
            and state["series node"] > 100
            and state["series strata_node"] > 100
            and {"node", "strata_node"} <= set(state["node_cpu_seconds_total samples by job"])
            and state["last up strata_node"] == [1.0]
            and state["last up node"] == [1.0]
        )
        if ok:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"Strata did not get both jobs' series within 30 s; last state: {state}")
        time.sleep(1)

    # The two jobs scraped the same exporter: the same metric families arrived both ways.
    t = flight_sql(
        stack,
        "SELECT labels['job'] AS job, count(DISTINCT metric_name) AS n FROM metrics "
        "WHERE labels['job'] IN ('node', 'strata_node') AND starts_with(metric_name, 'node_') "
        "GROUP BY labels['job']",
    )
    names = dict(zip(t.column("job").to_pylist(), t.column("n").to_pylist()))
    assert names.get("node", 0) > 20 and names.get("strata_node", 0) > 20, names


def test_remote_written_metadata_equals_prometheus(stack):
    """The metadata Prometheus remote-writes (type, help, unit of each scraped family) is
    what Strata's /api/v1/metadata serves: for a few node_exporter families, the same
    entries as Prometheus's own /api/v1/metadata."""
    families = ["node_cpu_seconds_total", "node_load1", "node_memory_MemFree_bytes"]
    deadline = time.monotonic() + 30
    while True:
        stack.check_alive()
        mismatches = {}
        for f in families:
            prom = requests.get(
                f"{stack.prometheus_url}/api/v1/metadata", params={"metric": f}, timeout=10
            ).json()["data"]
            got = requests.get(
                f"{stack.strata_url}/api/v1/metadata", params={"metric": f}, timeout=10
            ).json()["data"]
            key = lambda e: (e["type"], e["help"], e["unit"])  # noqa: E731
            if not prom.get(f) or sorted(map(key, got.get(f, []))) != sorted(
                map(key, prom[f])
            ):
                mismatches[f] = {"prometheus": prom.get(f), "strata": got.get(f)}
        if not mismatches:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"metadata differs after 30 s: {mismatches}")
        time.sleep(1)


def test_remote_written_samples_equal_prometheus(stack):
    """Every sample Prometheus holds (older than 5 s) of a few node series is in Strata with
    the same timestamp and the same value, bit for bit, and Strata has no other."""
    errors = []
    for selector in COMPARED:
        labels, prom, at_ms = prom_series(stack, selector, min_old=3)
        got = strata_samples(stack, labels)
        errors += compare(selector, prom, got, (at_ms - 55_000, at_ms - SETTLE_MS))
    assert not errors, "\n".join(errors)


def test_flushed_delta_table_equals_prometheus(stack):
    """After POST /api/v1/admin/flush, the Delta tables on disk (read with the deltalake
    package, no Strata involved) hold the same samples as Prometheus."""
    wanted = []
    for selector in COMPARED:
        labels, prom, at_ms = prom_series(stack, selector, min_old=3)
        wanted.append((selector, labels, prom, at_ms))

    r = requests.post(f"{stack.strata_url}/api/v1/admin/flush", timeout=60)
    assert r.status_code == 200, f"flush: HTTP {r.status_code} {r.text}"
    report = r.json()
    assert report.get("samples", 0) > 0, report

    data = Path(stack.data_dir)
    series = DeltaTable(str(data / "series")).to_pyarrow_table()
    samples = DeltaTable(str(data / "samples")).to_pyarrow_table()
    assert series.num_rows > 0 and samples.num_rows > 0

    errors = []
    for selector, labels, prom, at_ms in wanted:
        name = labels["__name__"]
        want = {k: v for k, v in labels.items() if k != "__name__"}
        cand = series.filter(pc.equal(series.column("metric_name"), name))
        ids = [
            sid
            for sid, lbls in zip(cand.column("series_id").to_pylist(), cand.column("labels").to_pylist())
            if dict(lbls) == want
        ]
        if len(ids) != 1:
            errors.append(f"{selector}: {len(ids)} series in the Delta series table match {labels}")
            continue
        rows = samples.filter(
            pc.and_(
                pc.equal(samples.column("metric_name"), name),
                pc.equal(samples.column("series_id"), ids[0]),
            )
        )
        got: dict[int, float] = {}
        for ts_us, v in zip(
            rows.column("timestamp").cast(pa.int64()).to_pylist(), rows.column("value").to_pylist()
        ):
            if is_stale(v):
                continue
            if ts_us % 1000:
                errors.append(f"{selector}: Delta timestamp {ts_us} µs is not a whole ms")
            if ts_us // 1000 in got:
                errors.append(f"{selector}: Delta holds two samples at {ts_us // 1000} ms")
            got[ts_us // 1000] = v
        errors += compare(f"{selector} (Delta)", prom, got, (at_ms - 55_000, at_ms - SETTLE_MS))
    assert not errors, "\n".join(errors)
