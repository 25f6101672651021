"""Strata with its data directory on S3: moto's S3-compatible server on loopback holds the
bucket, Strata (``--data-dir s3://strata-test/lake``) persists pushed samples there as Delta
tables, the ``deltalake`` package reads them back from the bucket, and a restarted Strata
serves them over Flight SQL.

Strata reaches the server through object_store's ``AmazonS3Builder::from_env``
(``AWS_ENDPOINT``, ``AWS_ALLOW_HTTP``, keys, region). Delta commits are conditional puts
(``If-None-Match: *``), which moto's server implements.

Needs ``moto[server]`` and ``boto3`` in the venv (``scripts/test-all --deps``) and
``target/debug/strata`` (or ``STRATA_BIN``).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import requests
from botocore.config import Config as BotoConfig
from deltalake import DeltaTable

from conftest import REPO, Proc, Stack, distinct_free_ports

BUCKET = "strata-test"
PREFIX = "lake"
METRIC = "s3_test_value"
KEY_ID = "test"
SECRET = "test"
REGION = "us-east-1"
STOP_TIMEOUT_S = 30


@dataclass
class S3Stack(Stack):
    """Moto's S3 server and Strata on an ``s3://`` data directory, which the test may stop
    and start again. (The inherited ``node_exporter_port`` and ``prometheus_port`` are 0:
    neither runs here; ``data_dir`` is Strata's local WAL directory, the only local one.)"""

    moto_port: int = 0
    strata_argv: list[str] = field(default_factory=list)
    strata_env: dict[str, str] = field(default_factory=dict)
    # Names of the processes the test stopped on purpose (not failures).
    stopped: set[str] = field(default_factory=set)

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def data_url(self) -> str:
        return f"s3://{BUCKET}/{PREFIX}"

    def storage_options(self) -> dict[str, str]:
        """For the deltalake package (delta-rs's object_store keys)."""
        return {
            "AWS_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": REGION,
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        }

    def s3(self):
        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            region_name=REGION,
            config=BotoConfig(s3={"addressing_style": "path"}),
        )

    def check_alive(self) -> None:
        for p in self.procs:
            if p.name not in self.stopped and p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited with code {p.popen.returncode}\n{self.logs()}")

    def start_strata(self) -> Proc:
        """Starts Strata (one log per run: strata-1.log, strata-2.log, ...) and waits until
        it is ready."""
        n = sum(1 for p in self.procs if p.name.startswith("strata-")) + 1
        proc = self.start(f"strata-{n}", self.strata_argv, env=self.strata_env)
        self.wait_ready(proc.name, f"{self.strata_url}/-/ready")
        return proc

    def stop_proc(self, proc: Proc) -> int:
        """SIGTERM, then waits for the exit; returns the exit code."""
        self.stopped.add(proc.name)
        proc.popen.send_signal(signal.SIGTERM)
        try:
            return proc.popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(timeout=10)
            raise AssertionError(f"{proc.name} did not exit within {STOP_TIMEOUT_S}s of SIGTERM")


@pytest.fixture
def s3_stack(tmp_path: Path):
    strata_bin = Path(os.environ.get("STRATA_BIN", REPO / "target" / "debug" / "strata"))
    if not strata_bin.is_file():
        pytest.fail(f"{strata_bin} is missing: run `cargo build` first", pytrace=False)
    if importlib.util.find_spec("moto") is None:
        pytest.fail("moto is missing: scripts/test-all --deps installs moto[server]", pytrace=False)

    moto_port, http_port, flight_port = distinct_free_ports(3)
    st = S3Stack(
        tmp=tmp_path,
        data_dir=tmp_path / "wal",
        node_exporter_port=0,
        strata_http_port=http_port,
        strata_flight_port=flight_port,
        prometheus_port=0,
        moto_port=moto_port,
    )
    # Only this test's S3 settings: none of the machine's AWS_* variables (a profile, a
    # session token, another endpoint) may leak into Strata's object_store.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_ENDPOINT": st.s3_endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": REGION,
            "RUST_LOG": "info,buoyant_kernel=error",
            "NO_COLOR": "1",
        }
    )
    st.strata_env = env
    st.strata_argv = [
        str(strata_bin),
        "serve",
        "--data-dir",
        st.data_url,
        "--wal-dir",
        str(st.data_dir),
        "--http-addr",
        f"127.0.0.1:{http_port}",
        "--flight-addr",
        f"127.0.0.1:{flight_port}",
    ]
    try:
        st.start(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        st.wait_ready("moto", f"{st.s3_endpoint}/moto-api/")
        st.s3().create_bucket(Bucket=BUCKET)
    except BaseException:
        st.stop()
        raise
    yield st
    st.stop()


def keys_under(st: S3Stack, prefix: str) -> list[str]:
    pages = st.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def flight_sql(st: S3Stack, query: str) -> pa.Table:
    with flightsql.connect(st.flight_uri, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetch_arrow_table()


def test_s3_data_dir_round_trip(s3_stack: S3Stack):
    st = s3_stack
    strata = st.start_strata()

    # Three points of one series, 30 s, 20 s and 10 s old (whole seconds: exact in ms and us).
    t0 = int(time.time()) - 30
    points = [(t0, 1.5), (t0 + 10, 2.25), (t0 + 20, -7.125)]
    body = [{"metric": METRIC, "tags": {"k": "a"}, "timestamp": ts, "value": v} for ts, v in points]
    r = requests.post(f"{st.strata_url}/api/v1/metrics", json=body, timeout=10)
    assert r.status_code == 202, f"push: HTTP {r.status_code} {r.text}"
    assert r.json() == {"accepted": 3}, r.text

    r = requests.post(f"{st.strata_url}/api/v1/admin/flush", timeout=60)
    assert r.status_code == 200, f"flush: HTTP {r.status_code} {r.text}"
    assert r.json()["samples"] == 3, r.text

    # The Delta tables are in the bucket, under the prefix.
    log_keys = keys_under(st, f"{PREFIX}/samples/_delta_log/")
    assert any(k.endswith(".json") for k in log_keys), f"no Delta commit in the bucket: {log_keys}"
    data_keys = keys_under(st, f"{PREFIX}/samples/date=")
    assert any(k.endswith(".parquet") for k in data_keys), f"no Parquet file in the bucket: {data_keys}"
    assert keys_under(st, f"{PREFIX}/series/_delta_log/"), "no series table in the bucket"

    # Another Delta reader, straight from S3.
    samples = DeltaTable(f"{st.data_url}/samples", storage_options=st.storage_options()).to_pyarrow_table()
    samples = samples.filter(pc.equal(samples["metric_name"], METRIC)).sort_by("timestamp")
    assert samples.schema.field("timestamp").type == pa.timestamp("us", tz="UTC"), samples.schema
    got = list(zip(samples["timestamp"].cast(pa.int64()).to_pylist(), samples["value"].to_pylist()))
    assert got == [(ts * 1_000_000, v) for ts, v in points]
    series = DeltaTable(f"{st.data_url}/series", storage_options=st.storage_options()).to_pyarrow_table()
    labels = [dict(m) for m, n in zip(series["labels"].to_pylist(), series["metric_name"].to_pylist()) if n == METRIC]
    assert labels == [{"k": "a"}], series.to_pylist()

    # A restart on the same prefix (and WAL) serves exactly those samples, from S3.
    rc = st.stop_proc(strata)
    assert rc == 0, f"{strata.name} exited with code {rc} on SIGTERM"
    st.start_strata()
    t = flight_sql(st, f"SELECT value FROM metrics WHERE metric_name = '{METRIC}' ORDER BY timestamp")
    assert t.column("value").to_pylist() == [v for _, v in points]
