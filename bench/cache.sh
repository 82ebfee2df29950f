#!/usr/bin/env bash
# Side-by-side HTTP cache benchmark: bulwark's cache, nginx proxy_cache and Varnish in front of
# the same origin (nginx answering every /obj/N with a 1 KiB body and Cache-Control:
# max-age=3600). Two measures:
#   1. origin requests: the same stream of 1M requests (Zipf 0.9 over 100k objects, plus a scan of
#      5k objects seen once every 50k requests; bench/cache_replay) through each cache sized to
#      hold about 10% of the objects (10k); fewer origin requests = a better cache;
#   2. hit throughput: wrk (1 thread, 50 connections) on 100 cached objects.
# Each cache runs with one worker on CPU 0 (Varnish's threads too); the origin and the clients
# run on CPU 1.
#
#   bench/cache.sh [REQUESTS] [SECONDS]
# The last line is the summary:
#   cache: bulwark_origin_requests=N nginx_origin_requests=N varnish_origin_requests=N bulwark_hit_rps=N varnish_hit_rps=N nginx_hit_rps=N
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-1000000}
SECONDS_PER_RUN=${2:-10}

scripts/deps --test
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ >/dev/null
ninja -C build/release bulwark >/dev/null
cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DBULWARK_BENCH=ON -DBULWARK_TESTS=OFF \
  -DCMAKE_CXX_COMPILER=g++ >/dev/null
ninja -C build/bench cache_replay >/dev/null

WORK_PREFIX=bench-cache source scripts/lib.sh
VARNISHD=$(command -v varnishd || echo /usr/sbin/varnishd)

ORIGIN=$(free_port); BW=$(free_port); BWA=$(free_port); NG=$(free_port); VA=$(free_port)
BODY=$(head -c 1024 /dev/zero | tr '\0' 'x')

# The origin: nginx, one worker on CPU 1, logging every request it serves.
mkdir -p "$work/origin" "$work/ng" "$work/ngcache" "$work/va"
cat > "$work/origin/nginx.conf" <<CONF
daemon off; worker_processes 1; pid $work/origin/nginx.pid; error_log $work/origin/error.log crit;
events { worker_connections 4096; }
http { access_log $work/origin/access.log; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN reuseport;
    location / { add_header Cache-Control "max-age=3600"; default_type text/plain; return 200 "$BODY"; } } }
CONF
taskset -c 1 "$NGINX" -p "$work/origin" -c "$work/origin/nginx.conf" & pids+=($!)
wait_port "$ORIGIN"

origin_count() { wc -l < "$work/origin/access.log"; }

# bulwark: one worker, a zone of 10k entries (the byte bound set well above them).
cat > "$work/bulwark.yml" <<CONF
workers: 1
access_log: {enabled: false}
http: {keepalive_requests: 1000000}
admin: {listen: 127.0.0.1:$BWA}
cache_zones:
  main: {max_size: 256m, max_entries: 10000}
listeners:
  - listen: 127.0.0.1:$BW
    routes: [{prefix: /, upstream: origin, cache: main}]
upstreams:
  origin: {servers: ['127.0.0.1:$ORIGIN'], keepalive: 64}
CONF

# nginx proxy_cache: each 1 KiB response takes one 4 KiB block on disk, so 40m holds 10k.
# (As root, the worker would run as nobody and could not write into the private temp dir.)
NG_USER=""; [ "$(id -u)" = 0 ] && NG_USER="user root;"
cat > "$work/ng/nginx.conf" <<CONF
$NG_USER daemon off; worker_processes 1; pid $work/ng/nginx.pid; error_log $work/ng/error.log crit;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  proxy_cache_path $work/ngcache levels=1:2 keys_zone=main:${NGINX_KEYS_ZONE:-1450k} max_size=40m inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 64; }
  server { listen 127.0.0.1:$NG;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache main; proxy_cache_lock on; proxy_cache_key \$host\$request_uri; } } }
CONF

# Varnish: malloc storage sized so it holds about 10k of these objects (checked below).
VARNISH_SIZE=${VARNISH_SIZE:-12M}

results=()
run_peer() {  # name port start-command...
  local name=$1 port=$2
  shift 2
  "$@"
  wait_port "$port"
  local before after out
  before=$(origin_count)
  out=$(taskset -c 1 build/bench/bench/cache_replay "127.0.0.1:$port" "$REQUESTS" 4)
  after=$(origin_count)
  echo "  $name: $out, origin requests $((after - before))" >&2
  eval "${name}_origin=$((after - before))"
  # Hit throughput on 100 objects every cache holds by now (the most popular ones).
  cat > "$work/hot.lua" <<'LUA'
local i = 0
request = function()
  i = (i + 1) % 100
  return wrk.format("GET", "/obj/" .. i, {Host = "bench"})
end
LUA
  out=$(taskset -c 1 wrk -t1 -c50 -d"${SECONDS_PER_RUN}s" -s "$work/hot.lua" "http://127.0.0.1:$port/" 2>&1)
  local rps
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  awk '/Non-2xx|Socket errors/ {print "  (" $0 ")"}' <<<"$out" >&2
  echo "  $name: hit throughput $rps req/s" >&2
  eval "${name}_rps=$rps"
}

start_bulwark() {
  taskset -c 0 build/release/bulwark serve -c "$work/bulwark.yml" 2>"$work/bulwark.err" & pids+=($!); BW_PID=$!
}
start_nginx() {
  taskset -c 0 "$NGINX" -p "$work/ng" -c "$work/ng/nginx.conf" & pids+=($!); NG_PID=$!
}
start_varnish() {
  taskset -c 0 "$VARNISHD" -F -n "$work/va" -a "127.0.0.1:$VA" -b "127.0.0.1:$ORIGIN" \
    -s "malloc,$VARNISH_SIZE" -p thread_pools=1 >"$work/va.out" 2>&1 & pids+=($!); VA_PID=$!
}

run_peer bulwark "$BW" start_bulwark
entries=$(curl -s "http://127.0.0.1:$BWA/metrics" | awk '/^bulwark_http_cache_entries/ {print $2}')
echo "  bulwark: holds $entries objects" >&2
kill "$BW_PID"

run_peer nginx "$NG" start_nginx
echo "  nginx: holds $(find "$work/ngcache" -type f | wc -l) objects" >&2
kill "$NG_PID"

run_peer varnish "$VA" start_varnish
if command -v varnishstat >/dev/null; then
  echo "  varnish: holds $(varnishstat -n "$work/va" -1 -f MAIN.n_object 2>/dev/null | awk '{print $2}') objects" >&2
fi
kill "$VA_PID"

printf 'cache: bulwark_origin_requests=%d nginx_origin_requests=%d varnish_origin_requests=%d bulwark_hit_rps=%.0f varnish_hit_rps=%.0f nginx_hit_rps=%.0f\n' \
  "$bulwark_origin" "$nginx_origin" "$varnish_origin" "$bulwark_rps" "$varnish_rps" "$nginx_rps"
