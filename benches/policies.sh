#!/usr/bin/env bash
# What the write-path policies cost: remote-write throughput of two Strata servers side by
# side in one run, one with top-level relabeling, cardinality limits and sampling policies
# configured, one without.
#   benches/policies.sh [HOSTS] [INTERVALS] [ROUNDS]
# The policies run on every series of every request but drop nothing on this load (the
# limits are above its series counts, the relabeling drops a family it does not have, and
# the rate limit is above its sample rate), so both servers store the same samples (the
# policy server with `arch` dropped and `team` upper-cased). Each round sends the same
# TSBS-like cpu load (`strata bench-load`, remote write 1.0, 2,000 series per request, 8 in
# flight) to both, the first round creating the series; the servers take turns being
# first. Reports each round's samples/s and the ratio.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOSTS=${1:-1000}
INTERVALS=${2:-120}
ROUNDS=${3:-4}
cargo build --release -p strata -q
BIN=target/release/strata
TMP=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cat >"$TMP/policies.toml" <<'TOML'
[cardinality]
max_series = 10000000
max_series_per_metric = 1000000
max_label_values_per_metric = 100000

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

[[sampling.policies]]
regex = "debug_.*"
policy = "probabilistic"
probability = 0.1
[[sampling.policies]]
regex = "cpu_.*"
policy = "rate_limit"
max_samples_per_second = 1
TOML
: >"$TMP/plain.toml"
# Starts a server on port $2 (not in a command substitution: the server would hold its
# output open).
start() {
  local name=$1 h=$2 f
  f=$(port)
  $BIN serve --config "$TMP/$name.toml" --data-dir "$TMP/$name" --http-addr 127.0.0.1:$h \
    --flight-addr 127.0.0.1:$f --otlp-grpc-addr "" --statsd-addr "" >"$TMP/$name.out" 2>"$TMP/$name.log" &
  PIDS+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$h/-/ready" >/dev/null && break; sleep 0.1; done
}
P=$(port); Q=$(port)
start plain "$P"
start policies "$Q"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F)"
for r in $(seq "$ROUNDS"); do
  # Each round a day earlier than the last, so that no sample repeats.
  ago=$(( (r - 1) * 86400 + 60 ))
  if [ $((r % 2)) -eq 1 ]; then
    order=(--target "plain=http://127.0.0.1:$P/api/v1/write" --target "policies=http://127.0.0.1:$Q/api/v1/write")
  else
    order=(--target "policies=http://127.0.0.1:$Q/api/v1/write" --target "plain=http://127.0.0.1:$P/api/v1/write")
  fi
  echo "round $r"
  $BIN bench-load --hosts "$HOSTS" --intervals "$INTERVALS" --end-ago-seconds "$ago" "${order[@]}"
done
for s in "$P" "$Q"; do
  curl -sf "http://127.0.0.1:$s/metrics" | grep -E '^strata_samples_(rejected|dropped)_total' || true
done
