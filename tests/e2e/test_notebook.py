"""notebooks/tier_trends.ipynb runs against a real server and reads what was loaded.

A Strata with only the 1h and 1d tiers (so the 1h tier is built from raw) gets two years of
hourly samples of three series with a known pattern; `strata rollup backfill` builds the
tiers (the CLI, with its progress bar); papermill runs the notebook over Flight SQL; its
CSV outputs are checked against values computed here from the loaded samples, and its
figure is a PNG."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import papermill
import pytest
import requests

from conftest import REPO, Stack, distinct_free_ports

METRIC = "nb_latency_seconds"
HOUR = 3600
DAY = 86_400
DAYS = 730


def value(inst: int, t: int) -> float:
    """Series `inst` at `t` (Unix s): a slow trend over the two years, a daily cycle, and
    a spike every 97 hours (so daily p99s differ from means)."""
    day = t // DAY
    v = 0.1 + 0.0002 * (day % 1000) + 0.05 * inst + 0.02 * ((t // HOUR) % 24)
    if (t // HOUR) % 97 == 0:
        v += 3.0
    return round(v, 6)


@pytest.fixture
def tier_server(tmp_path: Path):
    strata_bin = Path(os.environ.get("STRATA_BIN", REPO / "target" / "debug" / "strata"))
    if not strata_bin.is_file():
        pytest.fail(f"{strata_bin} is missing: run `cargo build` first", pytrace=False)
    http, flight = distinct_free_ports(2)
    st = Stack(
        tmp=tmp_path,
        data_dir=tmp_path / "data",
        node_exporter_port=0,
        strata_http_port=http,
        strata_flight_port=flight,
        prometheus_port=0,
    )
    config = tmp_path / "strata.toml"
    config.write_text(
        "[rollup]\n"
        "enabled = false\n"
        'tiers = [{ name = "1h", resolution = "1h", sketch = true }, '
        '{ name = "1d", resolution = "1d", sketch = true }]\n'
    )
    env = dict(os.environ, NO_COLOR="1")
    env.setdefault("RUST_LOG", "info,deltalake=warn,datafusion=warn,buoyant_kernel=warn")
    st.start(
        "strata",
        [
            str(strata_bin),
            "serve",
            "--config",
            str(config),
            "--data-dir",
            str(st.data_dir),
            "--http-addr",
            f"127.0.0.1:{http}",
            "--flight-addr",
            f"127.0.0.1:{flight}",
        ],
        env=env,
    )
    try:
        st.wait_ready("strata", f"{st.strata_url}/-/ready")
        yield st, strata_bin
    finally:
        st.stop()


def test_the_notebook_plots_two_years_from_the_tiers(tier_server, tmp_path: Path):
    st, strata_bin = tier_server
    today = int(time.time()) // DAY * DAY
    start = today - DAYS * DAY
    # Hourly samples at hh:30 over (start, today]: 730 whole days, 3 series.
    times = [start + h * HOUR + 1800 for h in range(DAYS * 24)]
    points = [
        {"metric": METRIC, "tags": {"instance": f"i{inst}"}, "timestamp": t, "value": value(inst, t)}
        for inst in range(3)
        for t in times
    ]
    for i in range(0, len(points), 20_000):
        r = requests.post(f"{st.strata_url}/api/v1/metrics", json=points[i : i + 20_000], timeout=60)
        assert r.status_code == 202, r.text
    assert requests.post(f"{st.strata_url}/api/v1/admin/flush", timeout=120).status_code == 200

    for tier in ("1h", "1d"):
        out = subprocess.run(
            [str(strata_bin), "rollup", "backfill", "--tier", tier, "--from", str(start),
             "--to", str(today), "--url", st.strata_url],
            capture_output=True, text=True, timeout=600,
        )
        assert out.returncode == 0, out.stderr
        assert "series-buckets written" in out.stdout, out.stdout

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    papermill.execute_notebook(
        str(REPO / "notebooks" / "tier_trends.ipynb"),
        str(out_dir / "executed.ipynb"),
        parameters={"flight_uri": st.flight_uri, "metric": METRIC, "days": DAYS + 1, "out_dir": str(out_dir)},
        kernel_name="python3",
        progress_bar=False,
    )

    daily = pd.read_csv(out_dir / "daily.csv")
    assert len(daily) == DAYS, daily
    assert (daily["series"] == 3).all() and (daily["samples"] == 72).all()
    # Each day's mean and p99 against the loaded samples: the mean exactly (up to float
    # rounding), the p99 within the KLL rank bound (72 values, under k: exact, as a float).
    for row in daily.itertuples():
        end = int(pd.Timestamp(row.day).timestamp())
        vals = np.sort([value(i, t) for i in range(3) for t in times if end - DAY < t <= end])
        assert abs(row.mean - vals.mean()) < 1e-9, row
        assert row.max == vals.max()
        want_p99 = vals[int(np.ceil(0.99 * len(vals))) - 1]  # inclusive rank
        # The sketch keeps floats (f32): the answer is the sample rounded to float.
        assert row.p99 == np.float32(want_p99), (row, want_p99)
    hourly = pd.read_csv(out_dir / "hourly.csv")
    assert 89 * 24 <= len(hourly) <= 90 * 24, len(hourly)
    monthly = pd.read_csv(out_dir / "monthly.csv")
    assert (monthly["distinct_series"].round() == 3).all(), monthly
    assert monthly["series_days"].sum() == 3 * DAYS
    png = (out_dir / "trend.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
