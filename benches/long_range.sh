#!/usr/bin/env bash
# The long-range bench of the rollup tiers: Strata and VictoriaMetrics side by side.
#   benches/long_range.sh [HOSTS] [DAYS] [REPEAT]
# Loads HOSTS x 10 `cpu` series (no histogram; default 100 hosts = 1,000 series) with a
# sample every 5 minutes for DAYS days (default 730: 210 M samples) into both by remote
# write; builds Strata's tiers by backfill (1m, then 1h, then 1d; series-buckets per
# second and the server's peak RSS while building); prints each tier's rows and bytes
# against the raw samples'; runs `strata bench-promql --cases long-range` (2-year ranges at
# step 1d, 90-day at step 1h: median of REPEAT rounds after one unmeasured round, the
# systems taking turns); then measures ingest with the rollup scheduler on and off (two
# fresh Strata servers, 10,000 series x 1 h at 10 s, each loaded twice, alternating).
# Prometheus is not in this bench: it takes remote-written samples older than its head
# only within `out_of_order_time_window`, and two years of backfill through it is not
# something its users do (they use `promtool tsdb create-blocks-from`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOSTS=${1:-100}
DAYS=${2:-730}
REPEAT=${3:-5}
command -v victoria-metrics >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends victoria-metrics
cargo build --release -p strata -q
BIN=target/release/strata
TMP=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 600); do curl -sf "$1" >/dev/null && return; sleep 0.1; done; echo "not ready: $1"; exit 1; }
# A Strata server on a fresh directory, rollup scheduler on or off: prints "PID HTTPPORT".
strata_server() {
  local name=$1 enabled=$2 h f
  h=$(port); f=$(port)
  printf '[rollup]\nenabled = %s\n' "$enabled" >"$TMP/$name.toml"
  $BIN serve --config "$TMP/$name.toml" --data-dir "$TMP/$name" --http-addr 127.0.0.1:$h \
    --flight-addr 127.0.0.1:$f 2>"$TMP/$name.log" &
  echo "$! $h"
}
# Runs the command after PID and OUT with its stdout in OUT; prints PID's peak resident
# memory (MiB) meanwhile, sampled every 0.5 s.
peak_rss() {
  local pid=$1 out=$2; shift 2
  ( while sleep 0.5; do awk '/VmRSS/ {print $2}' /proc/$pid/status; done ) >"$TMP/rss" &
  local sampler=$!
  "$@" >"$out"
  kill $sampler
  awk '/VmRSS/ {print $2}' /proc/$pid/status >>"$TMP/rss"
  echo "$(( $(sort -n "$TMP/rss" | tail -1) / 1024 ))"
}
# Wait (up to 10 min) until the PIDs use under 5% of a core together over 5 s.
wait_idle() {
  local stats=() a b busy=100
  for p in "$@"; do stats+=("/proc/$p/stat"); done
  ticks() { awk '{s += $14 + $15} END {print s}' "${stats[@]}"; }
  for _ in $(seq 120); do
    a=$(ticks); sleep 5; b=$(ticks)
    busy=$(( (b - a) * 100 / $(getconf CLK_TCK) / 5 ))
    [ "$busy" -lt 5 ] && break
  done
  echo "servers idle (${busy}% of a core over 5 s)"
}

read -r SPID SH < <(strata_server strata false)
PIDS+=("$SPID")
VP=$(port)
victoria-metrics -storageDataPath="$TMP/vm" -httpListenAddr=127.0.0.1:$VP -retentionPeriod=100y \
  -search.latencyOffset=0s -search.disableCache -search.maxPointsPerTimeseries=1000000 \
  -search.maxSamplesPerQuery=10000000000 >"$TMP/vm.log" 2>&1 &
VPID=$!
PIDS+=("$VPID")
wait_ready "http://127.0.0.1:$SH/-/ready"
wait_ready "http://127.0.0.1:$VP/health"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null)"
INTERVALS=$(( DAYS * 288 ))
$BIN bench-load --hosts "$HOSTS" --histogram-hosts 0 --intervals "$INTERVALS" --interval-seconds 300 \
  --series-per-request 1000 --intervals-per-request 24 --concurrency 4 \
  --target "strata=http://127.0.0.1:$SH/api/v1/write" \
  --target "victoriametrics=http://127.0.0.1:$VP/api/v1/write"
curl -sf -XPOST "http://127.0.0.1:$SH/api/v1/admin/flush" >/dev/null
curl -sf "http://127.0.0.1:$VP/internal/force_flush" >/dev/null || true
wait_idle "$SPID" "$VPID"

# Tiers by backfill over the whole data, finest first.
NOW=$(date +%s)
FROM=$(( NOW - DAYS * 86400 - 86400 ))
for tier in 1m 1h 1d; do
  start=$(date +%s.%N)
  mib=$(peak_rss "$SPID" "$TMP/backfill_$tier.txt" $BIN rollup backfill --tier $tier \
    --from $FROM --to $NOW --url "http://127.0.0.1:$SH" 2>/dev/null)
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  rows=$(grep -o '[0-9]* series-buckets written' "$TMP/backfill_$tier.txt" | awk '{print $1}')
  src=$(grep -o 'from [0-9]* source rows' "$TMP/backfill_$tier.txt" | awk '{print $2}')
  printf 'backfill %s: %s series-buckets from %s source rows in %.1f s = %.0f series-buckets/s, server peak RSS %s MiB\n' \
    "$tier" "$rows" "$src" "$secs" "$(echo "$rows / $secs" | bc -l)" "$mib"
done
raw_bytes=$(du -sb "$TMP/strata/samples" | awk '{print $1}')
raw_rows=$(( HOSTS * 10 * INTERVALS ))
printf 'raw samples: %d rows, %d bytes = %.2f B/sample\n' "$raw_rows" "$raw_bytes" "$(echo "$raw_bytes / $raw_rows" | bc -l)"
curl -sf "http://127.0.0.1:$SH/api/v1/status/tiers" | python3 benches/tiers_table.py "$raw_bytes"
wait_idle "$SPID" "$VPID"
# The range ends at the last UTC midnight, as Grafana aligns a panel's range to its step
# (a day here); the tiers answer steps on their bucket boundaries only.
$BIN bench-promql --cases long-range --end "$(( NOW / 86400 * 86400 ))" --repeat "$REPEAT" --warmup 1 \
  --target "strata=http://127.0.0.1:$SH" \
  --target "victoriametrics=http://127.0.0.1:$VP"
kill "$SPID" "$VPID"; wait "$SPID" "$VPID" 2>/dev/null || true

# Ingest with the rollup scheduler (the 1m job) on and off.
read -r APID AH < <(strata_server with_rollup true)
read -r BPID BH < <(strata_server without_rollup false)
PIDS+=("$APID" "$BPID")
wait_ready "http://127.0.0.1:$AH/-/ready"
wait_ready "http://127.0.0.1:$BH/-/ready"
ON="rollup-on=http://127.0.0.1:$AH/api/v1/write"
OFF="rollup-off=http://127.0.0.1:$BH/api/v1/write"
# The order alternates: whichever goes second finds the machine's caches warm.
$BIN bench-load --hosts 1000 --intervals 360 --concurrency 4 --target "$ON" --target "$OFF" | sed 's/^/round 1: /'
$BIN bench-load --hosts 1000 --intervals 360 --concurrency 4 --target "$OFF" --target "$ON" | sed 's/^/round 2: /'
sleep 15
echo "tiers on the rollup-on server after the loads:"
curl -sf "http://127.0.0.1:$AH/api/v1/status/tiers" | python3 benches/tiers_table.py
