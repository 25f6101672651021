#!/usr/bin/env bash
# What the write-path policies cost: remote-write throughput of four Strata servers side by
# side in one run:
#   plain     no policy;
#   limits    cardinality limits and sampling policies (the issue's "sampling and limits",
#             budget: at most 10% of plain's throughput);
#   relabel   top-level relabeling that changes every series (`labeldrop` of `arch`,
#             `uppercase` of `team`) and drops a family the load does not have;
#   all       both.
#   benches/policies.sh [HOSTS] [INTERVALS] [ROUNDS]
# The policies run on every series of every request but drop nothing on this load (the
# limits are above its series counts, the sampled family is absent, and the rate limit of
# 1 sample/s is above the load's one sample per 10 s), so every server stores the same
# samples (the relabeling servers with `arch` dropped and `team` upper-cased). Each round
# sends the same TSBS-like cpu load (`strata bench-load`, remote write 1.0, 2,000 series
# per request, 8 in flight) to every server, the first round creating the series; each
# round's data follows the last one's in time (a rate limit judges sample times), and the
# servers take turns going first; before each round every server persists its head. Reports
# each round's samples/s per server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOSTS=${1:-1000}
INTERVALS=${2:-120}
ROUNDS=${3:-4}
cargo build --release -p strata -q
BIN=${CARGO_TARGET_DIR:-target}/release/strata
TMP=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cat >"$TMP/limits.toml" <<'TOML'
[cardinality]
max_series = 10000000
max_series_per_metric = 1000000
max_label_values_per_metric = 100000

[[sampling.policies]]
regex = "debug_.*"
policy = "probabilistic"
probability = 0.1
[[sampling.policies]]
regex = "cpu_.*"
policy = "rate_limit"
max_samples_per_second = 1
TOML
cat >"$TMP/relabel.toml" <<'TOML'
[[metric_relabel_configs]]
source_labels = ["__name__"]
regex = "debug_.*"
action = "drop"
[[metric_relabel_configs]]
regex = "arch"
action = "labeldrop"
[[metric_relabel_configs]]
source_labels = ["team"]
target_label = "team"
action = "uppercase"
TOML
cat "$TMP/limits.toml" "$TMP/relabel.toml" >"$TMP/all.toml"
: >"$TMP/plain.toml"
# The write path alone: no server builds rollup tiers in the background during another's
# measurement.
for n in plain limits relabel all; do printf '\n[rollup]\nenabled = false\n' >>"$TMP/$n.toml"; done
NAMES=(plain limits relabel all)
declare -A PORT
# Starts server $1 (not in a command substitution: the server would hold its output open).
start() {
  local name=$1 h f
  h=$(port); f=$(port)
  PORT[$name]=$h
  $BIN serve --config "$TMP/$name.toml" --data-dir "$TMP/$name" --http-addr 127.0.0.1:$h \
    --flight-addr 127.0.0.1:$f --otlp-grpc-addr "" --statsd-addr "" >"$TMP/$name.out" 2>"$TMP/$name.log" &
  PIDS+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$h/-/ready" >/dev/null && break; sleep 0.1; done
}
for n in "${NAMES[@]}"; do start "$n"; done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F)"
SPAN=$((INTERVALS * 10 + 10))
for r in $(seq "$ROUNDS"); do
  # Round r's data ends (ROUNDS - r) spans before the last round's: forward in time.
  ago=$(( (ROUNDS - r) * SPAN + 60 ))
  targets=()
  for i in 0 1 2 3; do
    n=${NAMES[$(( (i + r - 1) % 4 ))]}
    targets+=(--target "$n=http://127.0.0.1:${PORT[$n]}/api/v1/write")
  done
  # Every server persists its head first, so that no server's background persistence
  # runs during another's measurement.
  for n in "${NAMES[@]}"; do curl -sf -XPOST "http://127.0.0.1:${PORT[$n]}/api/v1/admin/flush" >/dev/null; done
  echo "round $r"
  $BIN bench-load --hosts "$HOSTS" --intervals "$INTERVALS" --end-ago-seconds "$ago" "${targets[@]}"
done
for n in "${NAMES[@]}"; do
  echo "$n:"
  curl -sf "http://127.0.0.1:${PORT[$n]}/metrics" | grep -E '^strata_samples_(rejected|dropped)_total' || true
done
