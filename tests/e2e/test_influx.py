"""InfluxDB clients writing to Strata unchanged: the official v2 client
(`influxdb-client`, `/api/v2/write`, gzip on and off) and the v1 client (`influxdb`,
`/write`). Each field is a sample named `{measurement}_{field}`; the values are read back
with PromQL (the Prometheus API) and SQL (Flight SQL) and checked by hand."""

from __future__ import annotations

import time

import adbc_driver_flightsql.dbapi as flightsql
import influxdb
import influxdb_client
import requests
from influxdb_client.client.write_api import SYNCHRONOUS


def promql(stack, query: str, t: float) -> list[dict]:
    r = requests.get(f"{stack.strata_url}/api/v1/query", params={"query": query, "time": t}, timeout=30)
    r.raise_for_status()
    return r.json()["data"]["result"]


def sql(stack, query: str):
    with flightsql.connect(stack.flight_uri, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetch_arrow_table().to_pylist()


def test_influxdb_v2_client_writes_are_queryable(stack):
    t = int(time.time()) - 60
    for gzip in (False, True):
        with influxdb_client.InfluxDBClient(
            url=stack.strata_url, token="any-token", org="acme", enable_gzip=gzip
        ) as client:
            write = client.write_api(write_options=SYNCHRONOUS)
            kitchen = (
                influxdb_client.Point("influx_e2e_room")
                .tag("room", "kitchen")
                .tag("gzip", str(gzip).lower())
                .field("temperature", 21.5)
                .field("people", 3)
                .field("window_open", True)
                .field("note", "fine")
                .time(t, write_precision="s")
            )
            write.write(bucket="home", record=kitchen, write_precision="s")
            hall = (
                influxdb_client.Point("influx_e2e_room")
                .tag("room", "hall")
                .tag("gzip", str(gzip).lower())
                .field("temperature", 19.25)
                .time(t * 1000 + 250, write_precision="ms")
            )
            write.write(bucket="home", record=hall, write_precision="ms")
            # Line protocol as text, escapes included.
            write.write(
                bucket="home",
                record=f"influx_e2e_room,room=big\\ hall,gzip={str(gzip).lower()} temperature=-2.5 {t}",
                write_precision="s",
            )

    r = promql(stack, 'sum by (gzip) (influx_e2e_room_temperature{db="home"})', t + 1)
    assert sorted((s["metric"]["gzip"], s["value"][1]) for s in r) == [
        ("false", "38.25"),  # 21.5 + 19.25 - 2.5
        ("true", "38.25"),
    ]
    r = promql(stack, 'influx_e2e_room_people{room="kitchen"} + influx_e2e_room_window_open', t + 1)
    assert [s["value"][1] for s in r] == ["4", "4"]
    assert promql(stack, "influx_e2e_room_note", t + 1) == []
    rows = sql(
        stack,
        "SELECT CAST(timestamp AS BIGINT) / 1000 AS ms, value FROM metrics "
        "WHERE metric_name = 'influx_e2e_room_temperature' AND labels['room'] = 'hall' "
        "AND labels['gzip'] = 'true'",
    )
    assert rows == [{"ms": t * 1000 + 250, "value": 19.25}]
    rows = sql(
        stack,
        "SELECT value FROM metrics WHERE metric_name = 'influx_e2e_room_temperature' "
        "AND labels['room'] = 'big hall' AND labels['gzip'] = 'false'",
    )
    assert rows == [{"value": -2.5}]


def test_influxdb_v1_client_writes_are_queryable(stack):
    t = int(time.time()) - 60
    client = influxdb.InfluxDBClient(host="127.0.0.1", port=stack.strata_http_port, database="telegraf")
    assert client.ping()
    ok = client.write_points(
        [
            {"measurement": "influx_e2e_disk", "tags": {"host": "h1"}, "time": t, "fields": {"used": 10, "free": 5.5}},
            {"measurement": "influx_e2e_disk", "tags": {"host": "h2"}, "time": t, "fields": {"used": 20, "free": 0.5}},
        ],
        time_precision="s",
    )
    assert ok
    r = promql(stack, 'sum(influx_e2e_disk_used{db="telegraf"}) / sum(influx_e2e_disk_free)', t + 1)
    assert r[0]["value"][1] == "5"  # 30 / 6
    # A malformed line: the client raises the server's 400 and its message.
    try:
        client.write(["influx_e2e_disk,host=h3"], params={"db": "telegraf"}, protocol="line")
    except influxdb.exceptions.InfluxDBClientError as e:
        assert e.code == 400
        assert "line 1" in str(e.content)
    else:
        raise AssertionError("a malformed line was accepted")
    assert sorted(s["metric"]["host"] for s in promql(stack, "influx_e2e_disk_used", t + 1)) == ["h1", "h2"]
