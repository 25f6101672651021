"""The OpenTelemetry Python SDK exporting to Strata unchanged: the OTLP/HTTP exporter
(protobuf, gzip) to ``/v1/metrics`` and the OTLP/gRPC exporter (gzip, delta temporality)
to the gRPC port. Names as Prometheus 3 translates them (``e2e.requests`` counter of unit
``1`` -> ``e2e_requests_total``; ``job``/``instance`` from ``service.name`` and
``service.instance.id``); values read back with PromQL (the Prometheus API) and SQL
(Flight SQL) and checked by hand."""

from __future__ import annotations

import time

import adbc_driver_flightsql.dbapi as flightsql
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpExporter,
)
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from grpc import Compression as GrpcCompression

# Export only when the test flushes.
NEVER_MS = 3_600_000


def one(stack, query: str) -> float:
    r = stack.promql(query)
    assert len(r) == 1, (query, r)
    return float(r[0]["value"][1])


def sql(stack, query: str):
    with flightsql.connect(stack.flight_uri, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetch_arrow_table().to_pylist()


def provider(exporter, instance: str, views=()) -> MeterProvider:
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=NEVER_MS)
    resource = Resource.create(
        {"service.name": "e2e-otlp", "service.instance.id": instance, "host.name": "h1"}
    )
    return MeterProvider(resource=resource, metric_readers=[reader], views=list(views))


def test_otlp_http_exporter_every_instrument(stack):
    exporter = HttpExporter(
        endpoint=f"{stack.strata_url}/v1/metrics", compression=HttpCompression.Gzip
    )
    mp = provider(
        exporter,
        "i-http",
        views=[View(instrument_name="e2e.size", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = mp.get_meter("e2e.scope", "1.0")
    requests_counter = meter.create_counter("e2e.requests", unit="1")
    requests_counter.add(5, {"method": "GET"})
    requests_counter.add(2, {"method": "GET"})
    requests_counter.add(1, {"method": "POST"})
    latency = meter.create_histogram("e2e.latency", unit="ms")
    for v in (3, 7, 7, 30):
        latency.record(v)
    size = meter.create_histogram("e2e.size", unit="By")
    for v in (1, 2, 4, 1000):
        size.record(v)
    meter.create_observable_gauge(
        "e2e.temperature", callbacks=[lambda _options: [Observation(21.5, {"room": "a"})]], unit="Cel"
    )
    in_flight = meter.create_up_down_counter("e2e.in_flight")
    in_flight.add(4)
    in_flight.add(-1)
    assert mp.force_flush(timeout_millis=10_000)
    mp.shutdown()

    job = 'job="e2e-otlp",instance="i-http"'
    assert one(stack, f'e2e_requests_total{{{job},method="GET"}}') == 7
    assert one(stack, f'e2e_requests_total{{{job},method="POST"}}') == 1
    # The SDK's default buckets 0, 5, 10, 25, 50, ...: 3 | 7, 7 | 30. The median (rank 2)
    # is halfway through (5, 10], which holds ranks 2 and 3.
    assert one(stack, f"e2e_latency_milliseconds_count{{{job}}}") == 4
    assert one(stack, f"e2e_latency_milliseconds_sum{{{job}}}") == 47
    assert one(stack, f'e2e_latency_milliseconds_bucket{{{job},le="10"}}') == 3
    assert one(stack, f"histogram_quantile(0.5, e2e_latency_milliseconds_bucket{{{job}}})") == 7.5
    # The exponential histogram, one classic bucket per exponential bucket: the bucket
    # holding 1000 is the last one (its upper bound at most one base above 1000; the SDK
    # fits 1 to 1000 in 160 buckets, scale 4 or finer).
    assert one(stack, f"e2e_size_bytes_count{{{job}}}") == 4
    assert one(stack, f"e2e_size_bytes_sum{{{job}}}") == 1007
    assert one(stack, f'e2e_size_bytes_bucket{{{job},le="+Inf"}}') == 4
    top = one(stack, f"histogram_quantile(1, e2e_size_bytes_bucket{{{job}}})")
    assert 1000 <= top <= 1000 * 2 ** (1 / 16), top
    lowest = stack.promql(f'e2e_size_bytes_bucket{{{job}}} == 1')
    assert lowest, "the bucket holding 1 alone"
    assert one(stack, f'e2e_temperature_celsius{{{job},room="a"}}') == 21.5
    # A non-monotonic sum is a gauge: no _total.
    assert one(stack, f"e2e_in_flight{{{job}}}") == 3
    # target_info carries the resource's other attributes (the SDK's telemetry.sdk.* too).
    info = stack.promql(f'target_info{{{job},host_name="h1"}}')
    assert len(info) == 1 and info[0]["metric"]["telemetry_sdk_language"] == "python", info
    # And by SQL (the flush and the shutdown each exported the cumulative state).
    rows = sql(
        stack,
        "SELECT value FROM samples WHERE metric_name = 'e2e_latency_milliseconds_sum'",
    )
    assert rows and {r["value"] for r in rows} == {47.0}, rows


def test_otlp_grpc_exporter_with_delta_temporality(stack):
    exporter = GrpcExporter(
        endpoint=stack.otlp_grpc_endpoint,
        insecure=True,
        compression=GrpcCompression.Gzip,
        preferred_temporality={Counter: AggregationTemporality.DELTA},
    )
    mp = provider(exporter, "i-grpc")
    jobs = mp.get_meter("e2e.scope").create_counter("e2e.jobs")
    # Two exports of deltas 5 and 3: stored as the running total 5, then 8.
    jobs.add(5, {"queue": "q1"})
    assert mp.force_flush(timeout_millis=10_000)
    time.sleep(0.01)
    jobs.add(3, {"queue": "q1"})
    assert mp.force_flush(timeout_millis=10_000)
    mp.shutdown()

    assert one(stack, 'e2e_jobs_total{job="e2e-otlp",instance="i-grpc",queue="q1"}') == 8
    rows = sql(
        stack,
        "SELECT value FROM samples WHERE metric_name = 'e2e_jobs_total' ORDER BY timestamp",
    )
    assert [r["value"] for r in rows] == [5.0, 8.0]
