#!/usr/bin/env bash
# Ingest with the rollup scheduler (the real-time 1m job) on against off: ROUNDS rounds,
# each on two fresh Strata servers, the order alternating, reporting per round the
# remote-write throughput of each and each server's CPU time per million samples (the
# load, then until it is idle again: the 1m job's work included).
#   benches/rollup_ingest.sh [ROUNDS] [HOSTS] [INTERVALS]
# Each load is `strata bench-load --hosts HOSTS --intervals INTERVALS` (10 s samples ending
# now; HOSTS=1000 and the default 360 intervals: an hour, 3.85 M samples, 10,700 series).
# The scheduler runs every 10 s: a load much shorter than that may or may not meet a run.
# For the server with the scheduler on, also the seconds from the load's end until the 1m
# tier has caught up (`strata_rollup_lag_seconds{tier="1m"}`, now minus its watermark at
# the last build, back under 100 s: a minute, the
# 30 s allowed lateness and the 10 s interval). The builds run on threads 10 nice steps
# below the server's (`[rollup] nice`): during a saturating load they wait, and catch up
# after it. NICE=n sets `[rollup] nice` (default: the configuration's default, 10).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS=${1:-6}
HOSTS=${2:-1000}
INTERVALS=${3:-360}
if [ -z "${BIN:-}" ]; then
  cargo build --release -p strata -q
  BIN=${CARGO_TARGET_DIR:-target}/release/strata
fi
TMP=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
# A Strata server on a fresh directory (one per round: a directory a round before wrote
# would make this round's samples late data for tiers built already), rollup scheduler on
# or off: sets PID and PORT.
start() {
  local name=$1 enabled=$2 f
  PORT=$(port); f=$(port)
  rm -rf "$TMP/$name"
  printf '[rollup]\nenabled = %s\nnice = %s\n' "$enabled" "${NICE:-10}" >"$TMP/$name.toml"
  $BIN serve --config "$TMP/$name.toml" --data-dir "$TMP/$name" --http-addr 127.0.0.1:$PORT \
    --flight-addr 127.0.0.1:$f --otlp-grpc-addr "" --statsd-addr "" 2>"$TMP/$name.log" &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/-/ready" >/dev/null && return; sleep 0.1; done
  echo "not ready: $name"; exit 1
}
# Waits (up to 4 min) until PID uses under 3% of a core over 12 s (longer than the
# scheduler's 10 s interval, so that a job between two checks is not missed).
idle() {
  local a b
  for _ in $(seq 20); do
    a=$(ticks "$1"); sleep 12; b=$(ticks "$1")
    [ $(( (b - a) * 100 / $(getconf CLK_TCK) / 12 )) -lt 3 ] && return
  done
}
HZ=$(getconf CLK_TCK)
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); $ROUNDS rounds, $HOSTS hosts, $INTERVALS intervals, nice ${NICE:-10}"
for r in $(seq "$ROUNDS"); do
  start on true; ONPID=$PID; ONPORT=$PORT
  start off false; OFFPID=$PID; OFFPORT=$PORT
  idle $ONPID; idle $OFFPID
  if [ $((r % 2)) -eq 1 ]; then order="on off"; else order="off on"; fi
  line="round $r ($order first):"
  for which in $order; do
    if [ $which = on ]; then pid=$ONPID; p=$ONPORT; else pid=$OFFPID; p=$OFFPORT; fi
    t0=$(ticks $pid)
    out=$($BIN bench-load --hosts "$HOSTS" --intervals "$INTERVALS" --concurrency 4 --target "$which=http://127.0.0.1:$p/api/v1/write")
    rate=$(echo "$out" | grep -o '= [0-9]* samples/s' | awk '{print $2}')
    n=$(echo "$out" | grep -o "^$which: [0-9]* samples" | awk '{print $2}')
    catchup=""
    if [ $which = on ]; then
      s0=$(date +%s.%N)
      for _ in $(seq 2400); do
        lag=$(curl -sf "http://127.0.0.1:$p/metrics" | awk '/^strata_rollup_lag_seconds\{tier="1m"\}/ {print $2}')
        [ -n "$lag" ] && [ "$lag" -le 100 ] && break
        sleep 0.5
      done
      catchup=$(awk -v a=$s0 -v b=$(date +%s.%N) 'BEGIN {printf ", 1m tier caught up %.1f s after the load", b - a}')
    fi
    idle $pid
    t1=$(ticks $pid)
    cpu=$(awk -v a=$t0 -v b=$t1 -v hz=$HZ -v n=$n 'BEGIN {printf "%.2f", (b - a) / hz / (n / 1e6)}')
    line="$line $which $rate samples/s, $cpu CPU-s per M samples$catchup;"
  done
  echo "$line"
  kill $ONPID $OFFPID; wait $ONPID $OFFPID 2>/dev/null || true
done
