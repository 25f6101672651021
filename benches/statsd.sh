#!/usr/bin/env bash
# StatsD over UDP: how many lines a second Strata takes without loss.
#   benches/statsd.sh [PACKETS] [LINES_PER_PACKET] [SERIES] [RATES]
# Starts `strata serve` (release build, flush every second, rollups off) and sends PACKETS
# UDP datagrams of LINES_PER_PACKET counter increments each (`bench.requests:1|c|#host:hN`,
# SERIES hosts in turn; DogStatsD multi-line packets, as the Datadog agent's clients batch
# them) from one Python process, paced at each of RATES (packets/s, space-separated; 0 for
# as fast as it can). After two flushes it asks Strata for the sum of the counters and
# reports the send rate and the share of lines stored (a line a full socket buffer dropped
# is lost: StatsD does not retry). Debian has no
# `prometheus-statsd-exporter` to run beside it (`apt-cache policy` shows no candidate).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PACKETS=${1:-200000}
LINES=${2:-20}
SERIES=${3:-1000}
RATES=${4:-"0 25000 50000 75000"}
cargo build --release -p strata -q
BIN=${CARGO_TARGET_DIR:-target}/release/strata
TMP=$(mktemp -d)
trap 'kill $SPID 2>/dev/null || true; wait 2>/dev/null; rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
H=$(port); F=$(port); U=$(port)
printf '[statsd]\nflush_interval = "1s"\n[rollup]\nenabled = false\n' >"$TMP/strata.toml"
$BIN serve --config "$TMP/strata.toml" --data-dir "$TMP/data" --http-addr 127.0.0.1:$H \
  --flight-addr 127.0.0.1:$F --otlp-grpc-addr "" --statsd-addr 127.0.0.1:$U 2>"$TMP/strata.log" &
SPID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$H/-/ready" >/dev/null && break; sleep 0.1; done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); UDP receive buffer default $(cat /proc/sys/net/core/rmem_default) bytes"
N=0
for RATE in $RATES; do
N=$((N + 1))
python3 - "$U" "$PACKETS" "$LINES" "$SERIES" "$RATE" "$N" <<'PY'
import socket, sys, time
port, packets, lines, series, rate, run = (int(a) for a in sys.argv[1:])
pkts = []
for p in range(packets):
    pkts.append("\n".join(
        f"bench.requests:1|c|#host:h{(p * lines + j) % series},run:r{run}" for j in range(lines)
    ).encode())
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t0 = time.perf_counter()
batch = 10
for i in range(0, packets, batch):
    for b in pkts[i:i + batch]:
        s.sendto(b, ("127.0.0.1", port))
    if rate:
        ahead = t0 + (i + batch) / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
dt = time.perf_counter() - t0
print(f"paced at {rate or 'max'}: sent {packets} packets ({packets * lines} lines, {sum(map(len, pkts)) / packets:.0f} bytes each) in {dt:.2f} s = {packets / dt:.0f} packets/s, {packets * lines / dt:.0f} lines/s")
PY
sleep 3
Q="sum(last_over_time(bench_requests{run=\"r$N\"}[1m]))"
GOT=$(curl -sf "http://127.0.0.1:$H/api/v1/query" --data-urlencode "query=$Q" | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)')
SENT=$((PACKETS * LINES))
awk -v got="$GOT" -v sent="$SENT" 'BEGIN { printf "  stored %d of %d lines (%.2f%% lost)\n", got, sent, 100 * (sent - got) / sent }'
done
curl -sf "http://127.0.0.1:$H/metrics" | grep -E '^strata_samples_rejected_total\{reason="statsd' || true
