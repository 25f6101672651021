#!/usr/bin/env bash
# The PromQL bench: Strata, VictoriaMetrics and Prometheus side by side in one run.
#   benches/promql.sh [HOSTS] [INTERVALS] [REPEAT]
# Loads the same TSBS-like cpu data (HOSTS x 10 fields, INTERVALS x 10 s ending a minute
# ago; default 1000 hosts, 24 h) into all three by remote write, flushes Strata's head into
# its Delta tables, waits until the servers are idle, then runs `strata bench-promql` (one
# unmeasured round, then the median of REPEAT rounds per query; the systems take turns
# request by request).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOSTS=${1:-1000}
INTERVALS=${2:-8640}
REPEAT=${3:-10}
for p in victoria-metrics prometheus; do
  command -v $p >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $p
done
cargo build --release -p strata -q
BIN=target/release/strata
TMP=$(mktemp -d)
trap 'kill $SPID $VPID $PPID_ 2>/dev/null || true; rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SH=$(port); SF=$(port); VP=$(port); PP=$(port)
$BIN serve --data-dir "$TMP/strata" --http-addr 127.0.0.1:$SH --flight-addr 127.0.0.1:$SF 2>"$TMP/strata.log" &
SPID=$!
victoria-metrics -storageDataPath="$TMP/vm" -httpListenAddr=127.0.0.1:$VP -retentionPeriod=100y \
  -search.latencyOffset=0s -search.disableCache >"$TMP/vm.log" 2>&1 &
VPID=$!
# Old samples arrive by remote write: an out-of-order window lets Prometheus take them.
printf 'global: {}\nstorage:\n  tsdb:\n    out_of_order_time_window: 2d\n' >"$TMP/prometheus.yml"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom" \
  --web.listen-address=127.0.0.1:$PP --web.enable-remote-write-receiver \
  --storage.tsdb.retention.time=10y >"$TMP/prometheus.log" 2>&1 &
PPID_=$!
for u in "http://127.0.0.1:$SH/-/ready" "http://127.0.0.1:$VP/health" "http://127.0.0.1:$PP/-/ready"; do
  for _ in $(seq 300); do curl -sf "$u" >/dev/null && break; sleep 0.1; done
done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null); $(prometheus --version 2>&1 | head -1)"
$BIN bench-load --hosts "$HOSTS" --intervals "$INTERVALS" --concurrency 4 \
  --target "strata=http://127.0.0.1:$SH/api/v1/write" \
  --target "victoriametrics=http://127.0.0.1:$VP/api/v1/write" \
  --target "prometheus=http://127.0.0.1:$PP/api/v1/write"
curl -sf -XPOST "http://127.0.0.1:$SH/api/v1/admin/flush" >/dev/null
curl -sf "http://127.0.0.1:$VP/internal/force_flush" >/dev/null || true
sleep 5
# Wait (up to 10 minutes) until the three servers are idle: together under 5% of one core
# over 5 s, so that no system's background work after the load (Prometheus compacting its
# head, VictoriaMetrics merging parts, Strata building series runs) lands on another's
# measurements.
ticks() { awk '{s += $14 + $15} END {print s}' /proc/$SPID/stat /proc/$VPID/stat /proc/$PPID_/stat; }
for _ in $(seq 120); do
  a=$(ticks); sleep 5; b=$(ticks)
  busy=$(( (b - a) * 100 / $(getconf CLK_TCK) / 5 ))
  if [ "$busy" -lt 5 ]; then break; fi
done
echo "servers idle (${busy}% of a core over 5 s) before the queries"
END=$(date +%s)
$BIN bench-promql --end "$END" --repeat "$REPEAT" --warmup 1 \
  --target "strata=http://127.0.0.1:$SH" \
  --target "victoriametrics=http://127.0.0.1:$VP" \
  --target "prometheus=http://127.0.0.1:$PP"
