#!/usr/bin/env bash
# The rules bench: the same recording and alerting rules evaluated every 60 s by Strata,
# by Prometheus and by vmalert over VictoriaMetrics (Debian packages), side by side in one
# run, over the same TSBS-like cpu data; reports per system the groups' evaluation time,
# missed iterations and the processes' CPU share.
#   benches/rules.sh [HOSTS] [MINUTES]
# HOSTS hosts (10 cpu series each) and 50 rules per host in one group per host (HOSTS=1000:
# 50,000 rules in 1,000 groups): per series, two recording rules (avg_over_time over 1h,
# rate over 5m) and three alerting rules (max_over_time over 10m > 95, min_over_time over
# 1h < 1, last value > 99.9). The data is an hour of 10 s samples ending a minute before
# the systems start; MINUTES (default 5) minutes of evaluation are measured after a first
# full cycle.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOSTS=${1:-1000}
MINUTES=${2:-5}
for p in prometheus victoria-metrics; do
  command -v $p >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $p
done
command -v vmalert >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends victoria-metrics
cargo build --release -p strata -q
BIN=${CARGO_TARGET_DIR:-target}/release/strata
TMP=$(mktemp -d)
SPID= PPID_= VPID= APID=
trap 'kill $SPID $PPID_ $VPID $APID 2>/dev/null || true; rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SH=$(port); SF=$(port); PP=$(port); VP=$(port); AP=$(port)
python3 - "$HOSTS" > "$TMP/rules.yml" <<'EOF'
import sys
hosts = int(sys.argv[1])
fields = ["usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
          "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice"]
print("groups:")
for h in range(hosts):
    print(f"  - name: host_{h}\n    interval: 60s\n    rules:")
    for f in fields:
        sel = f'cpu_{f}{{hostname="host_{h}"}}'
        print(f"      - record: host:cpu_{f}:avg1h\n        expr: avg_over_time({sel}[1h])")
        print(f"      - record: host:cpu_{f}:rate5m\n        expr: rate({sel}[5m])")
        print(f"      - alert: CpuHigh_{f}\n        expr: max_over_time({sel}[10m]) > 95\n        for: 5m")
        print(f"      - alert: CpuLow_{f}\n        expr: min_over_time({sel}[1h]) < 1")
        print(f"      - alert: CpuPegged_{f}\n        expr: {sel} > 99.9")
EOF
cat > "$TMP/strata.toml" <<EOF
rule_files = ["$TMP/rules.yml"]
[rules]
evaluation_interval = "60s"
EOF
cat > "$TMP/prometheus.yml" <<EOF
global:
  evaluation_interval: 60s
rule_files: ["$TMP/rules.yml"]
storage:
  tsdb:
    out_of_order_time_window: 2h
EOF
$BIN serve --config "$TMP/strata.toml" --data-dir "$TMP/strata" --http-addr 127.0.0.1:$SH --flight-addr 127.0.0.1:$SF \
  --otlp-grpc-addr "" --statsd-addr "" 2>"$TMP/strata.log" &
SPID=$!
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom" --web.listen-address=127.0.0.1:$PP \
  --web.enable-remote-write-receiver >"$TMP/prom.log" 2>&1 &
PPID_=$!
victoria-metrics -storageDataPath="$TMP/vm" -httpListenAddr=127.0.0.1:$VP -retentionPeriod=100y \
  -search.latencyOffset=0s >"$TMP/vm.log" 2>&1 &
VPID=$!
for u in "http://127.0.0.1:$SH/-/ready" "http://127.0.0.1:$PP/-/ready" "http://127.0.0.1:$VP/health"; do
  for _ in $(seq 600); do curl -sf "$u" >/dev/null && break; sleep 0.1; done
done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); $HOSTS hosts, $((HOSTS * 50)) rules"
$BIN bench-load --hosts "$HOSTS" --intervals 360 \
  --target "strata=http://127.0.0.1:$SH/api/v1/write" \
  --target "prometheus=http://127.0.0.1:$PP/api/v1/write" \
  --target "victoriametrics=http://127.0.0.1:$VP/api/v1/write" >/dev/null
curl -sf "http://127.0.0.1:$VP/internal/force_flush" >/dev/null || true
# vmalert refuses alerting rules without a notifier: Strata's HTTP port answers its sends
# with 404 (Strata and Prometheus have no Alertmanager configured here).
vmalert -rule="$TMP/rules.yml" -datasource.url="http://127.0.0.1:$VP" -remoteWrite.url="http://127.0.0.1:$VP" \
  -notifier.url=http://127.0.0.1:$SH/nonexistent -evaluationInterval=60s -httpListenAddr=127.0.0.1:$AP >"$TMP/vmalert.log" 2>&1 &
APID=$!
# One full cycle, then the measured window.
sleep 75
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
# Rule evaluations done, from each one's own counter.
evals() { curl -sf "$1" | awk -v m="$2" '$1 ~ "^"m {s += $2} END {printf "%d", s}'; }
SE0=$(evals http://127.0.0.1:$SH/metrics strata_rule_evaluations_total)
PE0=$(evals http://127.0.0.1:$PP/metrics prometheus_rule_evaluations_total)
AE0=$(evals http://127.0.0.1:$AP/metrics vmalert_alerting_rules_evaluations_total)
AR0=$(evals http://127.0.0.1:$AP/metrics vmalert_recording_rules_evaluations_total)
S0=$(ticks $SPID); P0=$(ticks $PPID_); V0=$(ticks $VPID); A0=$(ticks $APID); T0=$(date +%s.%N)
sleep $((MINUTES * 60))
S1=$(ticks $SPID); P1=$(ticks $PPID_); V1=$(ticks $VPID); A1=$(ticks $APID); T1=$(date +%s.%N)
SE1=$(evals http://127.0.0.1:$SH/metrics strata_rule_evaluations_total)
PE1=$(evals http://127.0.0.1:$PP/metrics prometheus_rule_evaluations_total)
AE1=$(evals http://127.0.0.1:$AP/metrics vmalert_alerting_rules_evaluations_total)
AR1=$(evals http://127.0.0.1:$AP/metrics vmalert_recording_rules_evaluations_total)
# CPU ms per rule evaluation.
per() { awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN {if (n > 0) printf "%.3f ms", 1000 * (b - a) / hz / n; else printf "n/a"}'; }
HZ=$(getconf CLK_TCK); CORES=$(nproc)
share() { awk -v a="$1" -v b="$2" -v t0="$T0" -v t1="$T1" -v hz="$HZ" -v c="$CORES" 'BEGIN {printf "%.1f%%", 100 * (b - a) / hz / (t1 - t0) / c}'; }
# Per system: groups' last evaluation time (sum over groups, p50, max, s) and missed
# iterations, from each one's own metrics (vmalert's durations are a summary whose
# window does not match: only its missed iterations are shown).
summarize() { # $1 metrics text, $2 duration metric (a gauge, or a summary's median), $3 missed metric
  local vals missed
  vals=$(printf '%s\n' "$1" | awk -v d="$2" '($1 ~ "^"d"[{]" && $1 !~ /quantile/) || $1 ~ "^"d"[{].*quantile=\"0.5\"" {print $2}' | sort -g)
  missed=$(printf '%s\n' "$1" | awk -v m="$3" '$1 ~ "^"m {s += $2} END {print s + 0}')
  printf '%s\n' "$vals" | awk -v missed="$missed" '{v[NR] = $1; s += $1}
    END {printf "groups %d, evaluation time sum %.1f s, p50 %.3f s, max %.3f s; missed iterations %d", NR, s, v[int(NR / 2) + 1], v[NR], missed}'
}
echo "strata:          CPU $(share $S0 $S1) of the machine, $((SE1 - SE0)) evaluations ($(per $S0 $S1 $((SE1 - SE0))) CPU each); $(summarize "$(curl -sf http://127.0.0.1:$SH/metrics)" strata_rule_group_last_duration_seconds strata_rule_group_iterations_missed_total)"
echo "prometheus:      CPU $(share $P0 $P1) of the machine, $((PE1 - PE0)) evaluations ($(per $P0 $P1 $((PE1 - PE0))) CPU each); $(summarize "$(curl -sf http://127.0.0.1:$PP/metrics)" prometheus_rule_group_last_duration_seconds prometheus_rule_group_iterations_missed_total)"
echo "vmalert + vm:    CPU $(share $A0 $A1) (vmalert) + $(share $V0 $V1) (victoria-metrics), $((AE1 + AR1 - AE0 - AR0)) evaluations; missed iterations $(evals http://127.0.0.1:$AP/metrics vmalert_iteration_missed_total)"
