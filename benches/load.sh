#!/usr/bin/env bash
# The ingest load bench: Strata and VictoriaMetrics side by side in one run, on loopback.
#   benches/load.sh [HOSTS] [INTERVALS]
# Builds Strata in release mode, starts `strata serve` and `victoria-metrics` (Debian
# package, installed if missing) with fresh data directories, sends the same TSBS-like cpu
# load to each with `strata bench-load` (remote write, then InfluxDB line protocol; then
# OTLP to Strata alone: Debian's VictoriaMetrics 1.79 predates its OTLP support), then
# flushes Strata and reports bytes per sample
# on disk (Parquet files of the samples table) and memory per active series (RSS growth of
# the server process over the load, divided by the series count).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOSTS=${1:-1000}
INTERVALS=${2:-360}
command -v victoria-metrics >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends victoria-metrics
cargo build --release -p strata -q
BIN=${CARGO_TARGET_DIR:-target}/release/strata
TMP=$(mktemp -d)
trap 'kill $SPID $VPID 2>/dev/null || true; rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SH=$(port); SF=$(port); VP=$(port)
$BIN serve --data-dir "$TMP/strata" --http-addr 127.0.0.1:$SH --flight-addr 127.0.0.1:$SF 2>"$TMP/strata.log" &
SPID=$!
victoria-metrics -storageDataPath="$TMP/vm" -httpListenAddr=127.0.0.1:$VP -retentionPeriod=100y >"$TMP/vm.log" 2>&1 &
VPID=$!
for u in "http://127.0.0.1:$SH/-/ready" "http://127.0.0.1:$VP/health"; do
  for _ in $(seq 100); do curl -sf "$u" >/dev/null && break; sleep 0.1; done
done
rss() { awk '/VmRSS/ {print $2 * 1024}' /proc/$1/status; }
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F)"
# Phase 1: create the series (one sample each) and measure memory per active series.
S0=$(rss $SPID); V0=$(rss $VPID)
$BIN bench-load --hosts "$HOSTS" --intervals 1 \
  --target "strata=http://127.0.0.1:$SH/api/v1/write" \
  --target "victoriametrics=http://127.0.0.1:$VP/api/v1/write" >/dev/null
sleep 1
S1=$(rss $SPID); V1=$(rss $VPID)
# Phase 2: throughput, with the WAL synced before every acknowledgement.
$BIN bench-load --hosts "$HOSTS" --intervals "$INTERVALS" \
  --target "strata=http://127.0.0.1:$SH/api/v1/write" \
  --target "victoriametrics=http://127.0.0.1:$VP/api/v1/write"
# Phase 3: the same cpu data as InfluxDB line protocol (`/write`), a day earlier (so no
# sample repeats phase 2's), to both; phase 2's Strata line is the remote-write figure
# beside it.
$BIN bench-load --protocol influx --hosts "$HOSTS" --intervals "$INTERVALS" --end-ago-seconds 86400 \
  --target "strata=http://127.0.0.1:$SH/write" \
  --target "victoriametrics=http://127.0.0.1:$VP/write"
# Phase 4: the same cpu data as OTLP (protobuf gauges to `/v1/metrics`), two days earlier,
# to Strata alone.
$BIN bench-load --protocol otlp --hosts "$HOSTS" --intervals "$INTERVALS" --end-ago-seconds 172800 \
  --target "strata=http://127.0.0.1:$SH/v1/metrics"
SERIES=$((HOSTS * 10)); SAMPLES=$((HOSTS * 10 * (2 * INTERVALS + 1))); STRATA_SAMPLES=$((SAMPLES + HOSTS * 10 * INTERVALS))
curl -sf -XPOST "http://127.0.0.1:$SH/api/v1/admin/flush"; echo
curl -sf "http://127.0.0.1:$VP/internal/force_flush" >/dev/null || true
sleep 2
SB=$(find "$TMP/strata/samples" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s}')
VB=$(du -sb "$TMP/vm/data" | awk '{print $1}')
awk -v sb="$SB" -v vb="$VB" -v n="$SAMPLES" -v ns="$STRATA_SAMPLES" -v s0="$S0" -v s1="$S1" -v v0="$V0" -v v1="$V1" -v k="$SERIES" 'BEGIN {
  printf "strata: %.3f bytes/sample on disk (samples table Parquet), %.0f bytes RSS growth per active series\n", sb/ns, (s1-s0)/k;
  printf "victoriametrics: %.3f bytes/sample on disk (data dir, before background merges), %.0f bytes RSS growth per active series\n", vb/n, (v1-v0)/k }'
# Phases 5 and 6, after the disk figures: the same data as remote write 2.0 (three days
# earlier) and as JSON push (the cpu series, four days earlier), to Strata alone (Debian's
# VictoriaMetrics 1.79 takes neither), for the per-protocol table in benches/README.md.
$BIN bench-load --protocol remote-write2 --hosts "$HOSTS" --intervals "$INTERVALS" --end-ago-seconds 259200 \
  --target "strata=http://127.0.0.1:$SH/api/v1/write"
$BIN bench-load --protocol json --hosts "$HOSTS" --intervals "$INTERVALS" --end-ago-seconds 345600 \
  --target "strata=http://127.0.0.1:$SH/api/v1/metrics"
