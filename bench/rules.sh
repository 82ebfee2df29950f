#!/usr/bin/env bash
# Rule evaluation, bulwark against Prometheus (Debian's 2.42 server): the same 1,000 alerting
# rules (rates, error ratios, histogram quantiles, *_over_time, aggregations; one group, so
# Prometheus evaluates them one after the other as bulwark does and the group's duration is
# the round's time) over the same 10,000 series, scraped every 5 s from one target whose
# counters move on every scrape. Each runs alone on CPU 0 (the target on CPU 1) for WARMUP
# seconds, then the round's time (prometheus_rule_group_last_duration_seconds, which both
# export) is read every 5 s ROUNDS times; the median is reported.
#
#   bench/rules.sh [WARMUP_SECONDS] [ROUNDS]
# The last line is the summary:
#   rules: bulwark_eval_ms=X prometheus_eval_ms=X series=N rules=N
set -euo pipefail
cd "$(dirname "$0")/.."
WARMUP=${1:-75}
ROUNDS=${2:-6}

scripts/deps --test
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ >/dev/null
ninja -C build/release bulwark >/dev/null

WORK_PREFIX=bench-rules source scripts/lib.sh
PROMETHEUS=$(command -v prometheus || echo /usr/bin/prometheus)
TARGET=$(free_port); PROM=$(free_port); BW=$(free_port); BWA=$(free_port); ORIGIN=$(free_port)

# The target: 10,000 series; counters and histogram buckets grow on every scrape.
cat > "$work/target.py" <<'PY'
import http.server, random, sys
random.seed(7)
INST = [f"10.0.{i // 10}.{i % 10}:9100" for i in range(50)]
ROUTES = [f"r{i}" for i in range(10)]
LE = ["0.005", "0.01", "0.05", "0.1", "0.5", "1", "2.5", "+Inf"]
state = {}
def bump(key, amount):
    state[key] = state.get(key, 0) + amount
    return state[key]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        out = []
        for ii, inst in enumerate(INST):
            for ri, r in enumerate(ROUTES):
                ok = bump(("ok", inst, r), random.randint(50, 150))
                err = bump(("err", inst, r), random.randint(0, 3 + (ii + ri) % 7))
                out.append(f'bench_http_requests_total{{instance="{inst}",route="{r}",code="200"}} {ok}')
                out.append(f'bench_http_requests_total{{instance="{inst}",route="{r}",code="500"}} {err}')
                total = 0
                for li, le in enumerate(LE):
                    total = bump(("b", inst, r, le), random.randint(5, 20) * (li + 1) + ri * li)
                    out.append(f'bench_http_duration_seconds_bucket{{instance="{inst}",route="{r}",le="{le}"}} {total}')
                out.append(f'bench_http_duration_seconds_sum{{instance="{inst}",route="{r}"}} {bump(("s", inst, r), random.random() * 50)}')
                out.append(f'bench_http_duration_seconds_count{{instance="{inst}",route="{r}"}} {total}')
            for q in range(40):
                out.append(f'bench_queue_depth{{instance="{inst}",queue="q{q}"}} {random.randint(0, 200)}')
            for c in range(20):
                out.append(f'bench_cpu_percent{{instance="{inst}",core="{c}"}} {random.random() * 100:.2f}')
                out.append(f'bench_component_up{{instance="{inst}",component="c{c}"}} {1 if random.random() > 0.02 else 0}')
        body = ("\n".join(out) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
taskset -c 1 python3 "$work/target.py" "$TARGET" >"$work/target.log" 2>&1 &
pids+=($!)
wait_port "$TARGET"
SERIES=$(curl -s "http://127.0.0.1:$TARGET/metrics" | wc -l)

# 1,000 alerting rules in one group.
python3 - "$work/rules.yml" <<'PY'
import sys
out = ["groups:", "  - name: bench", "    rules:"]
n = 0
for g in range(1):
    for k in range(1000):
        i = g * 1000 + k
        r = f"r{i % 10}"
        kind = i % 5
        if kind == 0:
            expr = f'rate(bench_http_requests_total{{route="{r}",code="500"}}[5m]) > {0.2 + (i % 7) * 0.1:.1f}'
        elif kind == 1:
            expr = (f'sum by (instance) (rate(bench_http_requests_total{{route="{r}",code="500"}}[5m])) / '
                    f'sum by (instance) (rate(bench_http_requests_total{{route="{r}"}}[5m])) > 0.0{1 + i % 5}')
        elif kind == 2:
            expr = (f'histogram_quantile(0.95, sum by (le, instance) '
                    f'(rate(bench_http_duration_seconds_bucket{{route="{r}"}}[5m]))) > {0.5 + (i % 4):.1f}')
        elif kind == 3:
            expr = f'avg_over_time(bench_queue_depth{{queue="q{i % 40}"}}[5m]) > {90 + i % 20}'
        else:
            expr = f'max by (instance) (bench_cpu_percent{{core=~"{i % 10}|1{i % 10}"}}) > {80 + i % 19}'
        out.append(f"      - alert: BenchAlert{i}")
        out.append(f"        expr: '{expr}'")
        out.append(f"        for: 1m")
        out.append(f"        labels: {{severity: warning, rule: \"{i}\"}}")
        out.append("        annotations: {summary: '{{ $labels.instance }} at {{ $value | humanize }}'}")
        n += 1
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
RULES=$(grep -c "alert: BenchAlert" "$work/rules.yml")

# count(ALERTS{alertstate="firing"}) at the Prometheus-style API at BASE_URL.
firing() {
  curl -s "$1/api/v1/query?query=count(ALERTS%7Balertstate%3D%22firing%22%7D)" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'
}

# Median over ROUNDS readings, 5 s apart, of the summed group durations at METRICS_URL.
measure() {
  local url=$1 vals=()
  for _ in $(seq 1 "$ROUNDS"); do
    vals+=("$(curl -s "$url" | awk '/^prometheus_rule_group_last_duration_seconds\{/ {s += $2} END {printf "%.3f", s * 1000}')")
    sleep 5
  done
  printf '%s\n' "${vals[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'
}

# Prometheus alone.
cat > "$work/prom.yml" <<CONF
global: {scrape_interval: 5s, evaluation_interval: 5s}
rule_files: [$work/rules.yml]
scrape_configs:
  - job_name: bench
    static_configs: [{targets: ["127.0.0.1:$TARGET"]}]
CONF
taskset -c 0 "$PROMETHEUS" --config.file="$work/prom.yml" --storage.tsdb.path="$work/prom-data" \
  --web.listen-address="127.0.0.1:$PROM" >"$work/prom.log" 2>&1 &
PROM_PID=$!
pids+=($PROM_PID)
wait_port "$PROM"
sleep "$WARMUP"
PROM_MS=$(measure "http://127.0.0.1:$PROM/metrics")
PROM_FIRING=$(firing "http://127.0.0.1:$PROM")
kill "$PROM_PID"; wait "$PROM_PID" 2>/dev/null || true

# bulwark alone, on the same target and rules.
cat > "$work/bulwark.yml" <<CONF
workers: 1
admin: {listen: "127.0.0.1:$BWA"}
access_log: {enabled: false}
observe:
  evaluation_interval: 5s
  rule_files: [$work/rules.yml]
  scrape: [{job: bench, targets: ["127.0.0.1:$TARGET"]}]
listeners: [{listen: "127.0.0.1:$BW", routes: [{prefix: /, upstream: app}]}]
upstreams: {app: {servers: ["127.0.0.1:$ORIGIN"]}}
CONF
taskset -c 0 build/release/bulwark serve -c "$work/bulwark.yml" >"$work/bulwark.log" 2>&1 &
BW_PID=$!
pids+=($BW_PID)
wait_port "$BWA"
sleep "$WARMUP"
BW_MS=$(measure "http://127.0.0.1:$BWA/metrics")
BW_FIRING=$(firing "http://127.0.0.1:$BWA")

echo "firing alerts after ${WARMUP}s + measuring: prometheus=$PROM_FIRING bulwark=$BW_FIRING"
echo "rules: bulwark_eval_ms=$BW_MS prometheus_eval_ms=$PROM_MS series=$SERIES rules=$RULES"
