"""The rollup tiers read from outside Strata: the tier tables on disk with the `deltalake`
package, their KLL and HLL sketch bytes with Apache DataSketches' Python library (the same
library Java, Spark and Druid use), and Strata's SQL sketch functions over Flight SQL
answering what the Python library answers on the same bytes."""

from __future__ import annotations

import random
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import datasketches
import numpy as np
import requests
from deltalake import DeltaTable

HOUR_S = 3600


def flight_sql(stack, query: str):
    with flightsql.connect(stack.flight_uri, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetch_arrow_table()


def test_tier_sketches_are_read_by_python_datasketches(stack):
    # Two series of log-normal "latencies", one sample every 10 s over two whole hours
    # two days ago, pushed as JSON.
    t0 = (int(time.time()) // 86_400 - 2) * 86_400 + 5 * HOUR_S
    rng = random.Random(7)
    points, values = [], {"a": [], "b": []}
    for i in range(1, 2 * HOUR_S // 10 + 1):
        for inst in ("a", "b"):
            v = rng.lognormvariate(0.0, 1.0)
            values[inst].append((t0 + i * 10, v))
            points.append(
                {"metric": "rollup_e2e_latency", "tags": {"instance": inst}, "timestamp": t0 + i * 10, "value": v}
            )
    r = requests.post(f"{stack.strata_url}/api/v1/metrics", json=points, timeout=30)
    assert r.status_code in (200, 202), r.text

    for tier in ("1m", "1h"):
        r = requests.post(
            f"{stack.strata_url}/api/v1/admin/rollup/build",
            params={"tier": tier, "from": t0, "to": t0 + 2 * HOUR_S},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"]["rows_written"] > 0, r.text

    data = Path(stack.data_dir)
    hours = DeltaTable(str(data / "rollup_1h")).to_pyarrow_table().to_pylist()
    hours = [h for h in hours if h["metric_name"] == "rollup_e2e_latency"]
    assert len(hours) == 4, hours  # two series x two hours
    for h in hours:
        end_s = h["bucket_end"].timestamp()
        sid = h["series_id"]
        # The raw values of that series and hour: find the series by its count and sum.
        cands = [
            [v for t, v in vs if end_s - HOUR_S < t <= end_s] for vs in values.values()
        ]
        raw = next(c for c in cands if abs(sum(c) - h["sum"]) < 1e-9 * max(1.0, abs(h["sum"])))
        assert h["count"] == len(raw) == 360
        sk = datasketches.kll_floats_sketch.deserialize(h["sketch"])
        # The sketch keeps floats (f32): its extremes are the raw ones rounded to float.
        assert sk.n == 360
        assert sk.get_min_value() == np.float32(min(raw)) and sk.get_max_value() == np.float32(max(raw))
        exact = np.sort(np.array(raw))
        for q in (0.5, 0.95, 0.99):
            # Inclusive rank (the smallest value whose rank is at least q), as Strata's
            # kll_quantile and Java's default; Python's default is exclusive.
            got = sk.get_quantile(q, inclusive=True)
            # Within the sketch's rank bound of the exact quantile.
            rank = np.searchsorted(exact, got, side="right") / len(exact)
            assert abs(rank - q) <= sk.normalized_rank_error(False) + 1 / len(exact), (q, got, rank)
            # Strata's SQL function answers what the Python library answers on the bytes.
            sql = flight_sql(
                stack,
                f"SELECT kll_quantile(sketch, {q}) AS v FROM rollup_1h WHERE series_id = {sid} "
                f"AND bucket_end = to_timestamp({int(end_s)})",
            )
            assert sql.column("v").to_pylist() == [got], (q, sid, sql)

    series = DeltaTable(str(data / "rollup_1h_series")).to_pyarrow_table().to_pylist()
    series = [s for s in series if s["metric_name"] == "rollup_e2e_latency"]
    assert len(series) == 2 and all(s["series"] == 2 for s in series), series
    union = datasketches.hll_union(12)
    for s in series:
        union.update(datasketches.hll_sketch.deserialize(s["hll"]))
    assert round(union.get_estimate()) == 2
