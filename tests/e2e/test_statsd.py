"""StatsD and DogStatsD clients sending to Strata unchanged: the ``statsd`` package over UDP
(one metric a datagram, and a pipeline of several) and TCP, and the ``datadog`` package's
``DogStatsd`` with tags. Strata aggregates per flush (``flush_interval = "200ms"`` in the
test config); values are read back with PromQL and checked by hand."""

from __future__ import annotations

import time

import statsd
from datadog.dogstatsd import DogStatsd


def value_when(stack, query: str, want: float) -> float:
    """The one series' value once it is ``want`` (flushes come every 200 ms), else the last
    value seen after 15 s."""
    last = float("nan")
    for _ in range(75):
        got = stack.promql(query)
        if len(got) == 1:
            last = float(got[0]["value"][1])
            if abs(last - want) <= 1e-6 * max(1.0, abs(want)):
                return last
        time.sleep(0.2)
    return last


def test_statsd_and_dogstatsd_clients_are_aggregated_and_queryable(stack):
    port = stack.strata_statsd_port
    udp = statsd.StatsClient("127.0.0.1", port)
    udp.incr("e2e.jobs", 2)
    udp.incr("e2e.jobs")
    udp.gauge("e2e.queue", 10)
    udp.gauge("e2e.queue", -4, delta=True)
    with udp.pipeline() as pipe:
        pipe.timing("e2e.render", 250)
        pipe.timing("e2e.render", 750)
        pipe.set("e2e.users", "alice")
        pipe.set("e2e.users", "bob")
        pipe.set("e2e.users", "alice")
    assert value_when(stack, "e2e_jobs", 3) == 3
    assert value_when(stack, "e2e_queue", 6) == 6
    assert value_when(stack, "e2e_users", 2) == 2
    # Timers are milliseconds, stored as seconds: a summary with min and max.
    assert value_when(stack, "e2e_render_count", 2) == 2
    assert value_when(stack, "e2e_render_sum", 1.0) == 1.0
    assert value_when(stack, 'e2e_render{quantile="0"}', 0.25) == 0.25
    assert value_when(stack, 'e2e_render{quantile="1"}', 0.75) == 0.75

    # Over TCP the counter keeps counting from its stored total.
    tcp = statsd.TCPStatsClient("127.0.0.1", port)
    tcp.incr("e2e.jobs", 4)
    tcp.close()
    assert value_when(stack, "e2e_jobs", 7) == 7

    # Buffered: the values arrive in one datagram, so in one flush interval.
    dd = DogStatsd(host="127.0.0.1", port=port, disable_telemetry=True)
    dd.open_buffer()
    dd.increment("e2e.dd.requests", 5, tags=["env:prod", "region:eu"])
    dd.distribution("e2e.dd.latency", 12.5, tags=["env:prod"])
    dd.distribution("e2e.dd.latency", 7.5, tags=["env:prod"])
    dd.close_buffer()
    dd.close_socket()
    assert value_when(stack, 'e2e_dd_requests{env="prod",region="eu"}', 5) == 5
    assert value_when(stack, 'e2e_dd_latency_count{env="prod"}', 2) == 2
    assert value_when(stack, 'e2e_dd_latency_sum{env="prod"}', 20) == 20
    assert value_when(stack, 'e2e_dd_latency{env="prod",quantile="1"}', 12.5) == 12.5
    assert value_when(stack, 'e2e_dd_latency{env="prod",quantile="0"}', 7.5) == 7.5
