#!/usr/bin/env bash
# The request path does not allocate. bulwark runs twice under heaptrack with the same 20
# keep-alive connections from wrk (to a real nginx upstream), after one warm-up request: once for
# 1 s, once for 4 s. Start-up and per-connection allocations are the same in both runs, so the difference in allocation calls
# divided by the difference in requests is what a request costs; it must stay under 0.01.
# Usage: no_alloc_test.sh BULWARK_BINARY
set -euo pipefail
BULWARK=$1
WORK_PREFIX=noalloc source "$(dirname "$0")/../../scripts/lib.sh"

UP=$(free_port)
cat > "$work/up.conf" <<CONF
daemon off; worker_processes 1; pid $work/up.pid; error_log $work/up-error.log crit;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$UP; location / { return 200 "hello\n"; } } }
CONF
"$NGINX" -p "$work" -c "$work/up.conf" & pids+=($!)
wait_port "$UP"

# run SECONDS -> prints "REQUESTS ALLOCATION_CALLS"
run() {
  local secs=$1 bw admin dir
  bw=$(free_port); admin=$(free_port); dir="$work/run$secs"; mkdir -p "$dir"
  cat > "$dir/bulwark.yml" <<CONF
workers: 1
log: {level: warn}
admin: {listen: 127.0.0.1:$admin}
access_log: {path: $dir/access.log}
listeners: [{listen: 127.0.0.1:$bw, routes: [{prefix: /, upstream: app}]}]
upstreams: {app: {servers: [127.0.0.1:$UP]}}
CONF
  heaptrack -o "$dir/heap" "$BULWARK" serve -c "$dir/bulwark.yml" >"$dir/heaptrack.log" 2>&1 &
  local ht=$!
  wait_port "$bw"
  # One request first, in both runs: what the first request initialises lazily (OpenSSL's
  # configuration, the upstream's first connection) is then counted in both, even when a busy
  # machine lets the short run serve few requests.
  local i
  for i in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$bw/" && break
    sleep 0.1
  done
  local out requests errors allocs
  out=$(wrk -t1 -c20 -d"${secs}s" "http://127.0.0.1:$bw/")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" || true)
  [ -z "$errors" ] || { echo "FAIL: wrk saw errors: $errors" >&2; exit 1; }
  # SIGTERM to bulwark itself (heaptrack's child), then wait for heaptrack to finish its file.
  kill -TERM "$(pgrep -f "^$BULWARK serve -c $dir/bulwark.yml" | head -1)"
  wait "$ht" || true
  allocs=$(heaptrack_print "$dir"/heap*.zst 2>/dev/null | awk -F': ' '/^calls to allocation functions/ {split($2, a, " "); print a[1]}')
  # Start-up always allocates: zero means heaptrack recorded nothing, not a perfect run.
  [ -n "$allocs" ] && [ "$allocs" -gt 0 ] || { echo "FAIL: heaptrack produced no data" >&2; cat "$dir/heaptrack.log" >&2; exit 1; }
  echo "$requests $allocs"
}

read -r r1 a1 < <(run 1)
read -r r2 a2 < <(run 4)
echo "short run: $r1 requests, $a1 allocation calls; long run: $r2 requests, $a2 allocation calls"
[ "$r2" -gt $((r1 + 5000)) ] || { echo "FAIL: the long run served too few extra requests to judge"; exit 1; }
per_request=$(awk -v a1="$a1" -v a2="$a2" -v r1="$r1" -v r2="$r2" 'BEGIN {printf "%.5f", (a2 - a1) / (r2 - r1)}')
echo "allocation calls per request: $per_request"
if awk -v p="$per_request" 'BEGIN {exit !(p >= 0.01)}'; then
  echo "FAIL: the request path allocates"
  heaptrack_print "$work"/run4/heap*.zst 2>/dev/null | sed -n '/MOST CALLS TO ALLOCATION FUNCTIONS/,/PEAK MEMORY/p' | head -60
  exit 1
fi
echo "1 passed, 0 failed"
