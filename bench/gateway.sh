#!/usr/bin/env bash
# Side-by-side HTTP proxy benchmark: wrk against bulwark, nginx and HAProxy, each with one worker,
# each proxying with keep-alive to the same nginx upstream that serves a small response; and wrk
# straight at the upstream as the ceiling. Runs are alternated (A B C D, B C D A, ...) so drift on
# a noisy machine hits every contestant alike; the median of the rounds is reported.
# On a 2-core machine the system under test -- the proxy and the upstream it talks to -- shares
# CPU 0 and wrk has CPU 1 to itself. Then what a proxy costs per request decides how many requests
# go through, the same way for every contestant. (With the upstream on wrk's core instead, that
# core saturates first and every proxy measures the same.)
# Each proxy runs twice, as a user would compare them: with its access log written to a file
# ("logs on": bulwark as shipped with metrics and the JSON access log, nginx's combined log,
# HAProxy's `option httplog` to stdout redirected to a file) and with logging off ("logs off",
# like for like). Keep-alive settings are the same for all.
#
#   bench/gateway.sh [--protected | --upstream-tls] [ROUNDS] [SECONDS] [CONNECTIONS]
# It prints the proxies' CPU time and system calls per request, a line for each comparison, then
# the summary (the last line):
#   logs on (as shipped): bulwark=N nginx=N haproxy=N req/s, p99 X / X / X ms
#   logs off (like for like): bulwark=N nginx=N haproxy=N req/s, p99 X / X / X ms
#   gateway: bulwark_rps=N nginx_rps=N haproxy_rps=N direct_rps=N bulwark_p99_ms=X nginx_p99_ms=X haproxy_p99_ms=X nolog_bulwark_rps=N nolog_nginx_rps=N nolog_haproxy_rps=N nolog_bulwark_p99_ms=X nolog_nginx_p99_ms=X nolog_haproxy_p99_ms=X
# With --protected, bulwark and nginx both terminate TLS (the same P-256 certificate, keep-alive
# connections) and apply a rate limit that never triggers; bulwark also verifies a JWT on every
# request (nginx OSS has no JWT: "bulwark_nojwt" is bulwark without it, for that comparison):
#   gateway-protected: bulwark_rps=N nginx_rps=N bulwark_p99_ms=X nginx_p99_ms=X bulwark_nojwt_rps=N
# With --upstream-tls, the upstream nginx serves HTTPS and every proxy speaks TLS to it with the
# certificate verified (name and chain), SNI, session reuse and keep-alive (nginx
# proxy_ssl_verify on + proxy_ssl_session_reuse, HAProxy `ssl verify required` + http-reuse
# always); access logs off for all three:
#   gateway-upstream-tls: bulwark_rps=N nginx_rps=N haproxy_rps=N bulwark_p99_ms=X nginx_p99_ms=X haproxy_p99_ms=X
# With --h2, clients speak HTTP/2 over TLS (ALPN h2, the same P-256 certificate): h2load with 100
# connections x 10 concurrent streams against bulwark (`http2: true`), nginx (`listen ... ssl
# http2`) and HAProxy (`alpn h2`), each proxying HTTP/1.1 with keep-alive to the upstream (pools
# of 1024 idle connections: see UP_KEEPALIVE); access
# logs off for all three; p99 from h2load's per-request log:
#   gateway-h2: bulwark_rps=N nginx_rps=N haproxy_rps=N bulwark_p99_ms=X nginx_p99_ms=X haproxy_p99_ms=X
set -euo pipefail
cd "$(dirname "$0")/.."
PROTECTED=0
UPSTREAM_TLS=0
H2=0
if [ "${1:-}" = "--protected" ]; then PROTECTED=1; shift; fi
if [ "${1:-}" = "--h2" ]; then H2=1; shift; fi
if [ "${1:-}" = "--upstream-tls" ]; then UPSTREAM_TLS=1; shift; fi
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
CONNS=${3:-50}
# Idle connections each proxy keeps to the upstream. With --h2, 1000 streams are in flight at
# once, each needing an upstream connection: a pool of 64 would close and reopen hundreds of them
# per wave, while HAProxy (`http-reuse always`, no pool limit) keeps them all. Like for like, nginx
# and bulwark keep 1024 there.
UP_KEEPALIVE=64
[ "$H2" = 1 ] && UP_KEEPALIVE=1024

scripts/deps --test
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ >/dev/null
ninja -C build/release bulwark >/dev/null

WORK_PREFIX=bench source scripts/lib.sh

UP=$(free_port); BW=$(free_port); BWA=$(free_port); NG=$(free_port); HA=$(free_port)
BWN=$(free_port); BWNA=$(free_port); NGN=$(free_port); HAN=$(free_port)

# The upstream: nginx, one worker, a 13-byte response (over HTTPS with --upstream-tls: a
# certificate for bench.test that is its own CA).
mkdir -p "$work/up" "$work/ng"
UP_SSL=""; UP_CERTS=""
if [ "$UPSTREAM_TLS" = 1 ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$work/up-key.pem" -out "$work/up-cert.pem" -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test >/dev/null 2>&1
  UP_SSL=" ssl"
  UP_CERTS="ssl_certificate $work/up-cert.pem; ssl_certificate_key $work/up-key.pem; ssl_session_cache shared:up:10m;"
fi
cat > "$work/up/nginx.conf" <<CONF
daemon off; worker_processes 1; pid $work/up/nginx.pid; error_log $work/up/error.log crit;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP reuseport$UP_SSL; $UP_CERTS location / { return 200 "hello, world\n"; } } }
CONF
taskset -c 0 "$NGINX" -p "$work/up" -c "$work/up/nginx.conf" & pids+=($!)

# wrk prints "Requests/sec: N" and, with --latency, "99%  1.23ms". run URL [wrk options...]
run() {
  local url=$1 out rps p99 errs
  shift
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency "$@" "$url" 2>&1)
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  [ -n "$errs" ] && echo "  ($url: $errs)" >&2
  echo "$rps $p99"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }
# The median of a space-separated list.
m() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
# ROUNDS rounds over the contestants in `names` / `ports`, who goes first turning each round;
# RUNNER URL [ARGS...] prints "RPS P99_MS". Appends each run's figures to rps[name], p99[name].
declare -A rps p99
compare() {  # RUNNER SCHEME [ARGS...]
  local runner=$1 scheme=$2 n=${#names[@]} r k i a b
  shift 2
  for r in $(seq 0 $((ROUNDS - 1))); do
    for k in $(seq 0 $((n - 1))); do
      i=$(( (k + r) % n ))
      read -r a b < <("$runner" "$scheme://127.0.0.1:${ports[$i]}/" "$@")
      rps[${names[$i]}]+="$a "; p99[${names[$i]}]+="$b "
      echo "round $((r + 1)) ${names[$i]}: ${a} req/s, p99 ${b} ms" >&2
    done
  done
}

# nginx as the proxy on CPU 0, keep-alive to the upstream as its docs recommend. Arguments add to
# the http block, the listen line, the server block and the location (the --protected settings).
start_nginx_proxy() {
  cat > "$work/ng/nginx.conf" <<CONF
daemon off; worker_processes 1; pid $work/ng/nginx.pid; error_log $work/ng/error.log crit;
events { worker_connections 4096; }
http {
  access_log $work/ng/access.log;
  keepalive_requests 1000000;
  $1
  upstream app { server 127.0.0.1:$UP; keepalive $UP_KEEPALIVE; }
  server { listen 127.0.0.1:$NG$2;
    $3
    location / { $4
      proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
  taskset -c 0 "$NGINX" -p "$work/ng" -c "$work/ng/nginx.conf" & pids+=($!); NG_PID=$!
}

if [ "$PROTECTED" = 1 ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=bench.test >/dev/null 2>&1
  SECRET=bench-secret-bench-secret-bench-secret
  BW2=$(free_port); BWA2=$(free_port)
  start_nginx_proxy 'limit_req_zone $binary_remote_addr zone=api:10m rate=1000000r/s;' ' ssl' \
    "ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;
    add_header Strict-Transport-Security \"max-age=31536000\" always;" \
    'limit_req zone=api burst=1000000 nodelay;'
  for variant in jwt nojwt; do
    port=$BW; aport=$BWA; jwt="jwt: svc"
    if [ "$variant" = nojwt ]; then port=$BW2; aport=$BWA2; jwt=""; fi
    cat > "$work/bulwark-$variant.yml" <<CONF
workers: 1
log: {level: warn}
admin: {listen: 127.0.0.1:$aport}
access_log: {path: $work/bulwark-$variant-access.log, max_size: 100g}
http: {keepalive_requests: 1000000}
jwt_providers:
  svc: {secret: $SECRET, issuer: bench}
limit_req_zones:
  api: {rate: 1000000r/s}
listeners:
  - listen: 127.0.0.1:$port
    tls: {cert: $work/cert.pem, key: $work/key.pem}
    add_header: [{name: Strict-Transport-Security, value: max-age=31536000, always: true}]
    limit_req: {zone: api, burst: 1000000, nodelay: true}
    routes: [{prefix: /, upstream: app, $jwt}]
upstreams:
  app:
    keepalive: 64
    servers: [127.0.0.1:$UP]
CONF
    taskset -c 0 build/release/bulwark serve -c "$work/bulwark-$variant.yml" 2>"$work/bulwark-$variant.err" & pids+=($!)
    if [ "$variant" = jwt ]; then BW_PID=$!; else BW2_PID=$!; fi
  done
  TOKEN=$(build/release/bulwark token issue -c "$work/bulwark-jwt.yml" --service bench --ttl 2h)
  for p in $UP $NG $BW $BW2; do wait_port "$p"; done
  names=(bulwark nginx bulwark_nojwt); ports=($BW $NG $BW2)
  for p in "${ports[@]}"; do wrk -t1 -c"$CONNS" -d1s -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$p/" >/dev/null 2>&1; done
  # A request without the token must be refused by the JWT variant (the check is really on).
  code=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$BW/")
  [ "$code" = 401 ] || { echo "bulwark did not ask for the token (got $code)" >&2; exit 1; }
  compare run https -H "Authorization: Bearer $TOKEN"
  printf 'gateway-protected: bulwark_rps=%.0f nginx_rps=%.0f bulwark_p99_ms=%s nginx_p99_ms=%s bulwark_nojwt_rps=%.0f\n' \
    "$(m "${rps[bulwark]}")" "$(m "${rps[nginx]}")" "$(m "${p99[bulwark]}")" "$(m "${p99[nginx]}")" \
    "$(m "${rps[bulwark_nojwt]}")"
  exit 0
fi

if [ "$UPSTREAM_TLS" = 1 ]; then
  cat > "$work/ng/nginx.conf" <<CONF
daemon off; worker_processes 1; pid $work/ng/nginx.pid; error_log $work/ng/error.log crit;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NG;
    location / { proxy_pass https://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_verify on; proxy_ssl_trusted_certificate $work/up-cert.pem;
      proxy_ssl_name bench.test; proxy_ssl_server_name on; proxy_ssl_session_reuse on; } } }
CONF
  taskset -c 0 "$NGINX" -p "$work/ng" -c "$work/ng/nginx.conf" & pids+=($!); NG_PID=$!
  cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HA
  default_backend be
backend be
  server s1 127.0.0.1:$UP maxconn 1000 ssl verify required ca-file $work/up-cert.pem sni str(bench.test) verifyhost bench.test
CONF
  taskset -c 0 "$HAPROXY" -f "$work/haproxy.cfg" -db >"$work/haproxy.out" 2>&1 & pids+=($!); HA_PID=$!
  cat > "$work/bulwark.yml" <<CONF
workers: 1
log: {level: warn}
admin: {listen: 127.0.0.1:$BWA}
access_log: {enabled: false}
http: {keepalive_requests: 1000000}
listeners:
  - listen: 127.0.0.1:$BW
    routes: [{prefix: /, upstream: app}]
upstreams:
  app:
    keepalive: 64
    servers: [127.0.0.1:$UP]
    tls: {ca_file: $work/up-cert.pem, sni: bench.test}
CONF
  taskset -c 0 build/release/bulwark serve -c "$work/bulwark.yml" 2>"$work/bulwark.err" & pids+=($!); BW_PID=$!
  for p in $UP $NG $HA $BW; do wait_port "$p"; done
  names=(bulwark nginx haproxy); ports=($BW $NG $HA)
  for p in "${ports[@]}"; do
    wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$p/" >/dev/null 2>&1
    # Each proxy really reached the HTTPS upstream (a verification failure would be a 502).
    body=$(curl -fsS "http://127.0.0.1:$p/") || { echo "proxy on $p failed to reach the HTTPS upstream" >&2; cat "$work"/*.err "$work/haproxy.out" >&2; exit 1; }
    [ "$body" = "hello, world" ] || { echo "proxy on $p answered: $body" >&2; exit 1; }
  done
  compare run http
  printf 'gateway-upstream-tls: bulwark_rps=%.0f nginx_rps=%.0f haproxy_rps=%.0f bulwark_p99_ms=%s nginx_p99_ms=%s haproxy_p99_ms=%s\n' \
    "$(m "${rps[bulwark]}")" "$(m "${rps[nginx]}")" "$(m "${rps[haproxy]}")" \
    "$(m "${p99[bulwark]}")" "$(m "${p99[nginx]}")" "$(m "${p99[haproxy]}")"
  exit 0
fi

if [ "$H2" = 1 ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=bench.test >/dev/null 2>&1
  cat "$work/cert.pem" "$work/key.pem" > "$work/haproxy.pem"
  start_nginx_proxy "" " ssl http2" \
    "ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem; ssl_session_cache shared:SSL:10m;
    http2_max_concurrent_streams 100; keepalive_requests 1000000;" ""
  sed -i "s|access_log $work/ng/access.log;|access_log off;|" "$work/ng/nginx.conf"
  cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HA ssl crt $work/haproxy.pem alpn h2,http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:$UP maxconn 1000
CONF
  taskset -c 0 "$HAPROXY" -f "$work/haproxy.cfg" -db >"$work/haproxy.out" 2>&1 & pids+=($!); HA_PID=$!
  cat > "$work/bulwark.yml" <<CONF
workers: 1
log: {level: warn}
admin: {listen: 127.0.0.1:$BWA}
access_log: {enabled: false}
http: {keepalive_requests: 1000000}
listeners:
  - listen: 127.0.0.1:$BW
    http2: true
    tls: {cert: $work/cert.pem, key: $work/key.pem}
    routes: [{prefix: /, upstream: app}]
upstreams:
  app:
    keepalive: $UP_KEEPALIVE
    servers: [127.0.0.1:$UP]
CONF
  taskset -c 0 build/release/bulwark serve -c "$work/bulwark.yml" 2>"$work/bulwark.err" & pids+=($!); BW_PID=$!
  for p in $UP $NG $HA $BW; do wait_port "$p"; done
  names=(bulwark nginx haproxy); ports=($BW $NG $HA)
  # h2load URL -> "RPS P99_MS"; every request must succeed.
  run_h2() {
    local out rps p99 log="$work/h2load.log"
    rm -f "$log"
    out=$(taskset -c 1 h2load -c 100 -m 10 -D "$SECONDS_PER_RUN" --warm-up-time=1 --log-file="$log" "$1" 2>&1)
    rps=$(awk '/finished in/ {print $4}' <<<"$out")
    grep -q " 0 failed, 0 errored" <<<"$out" || echo "  ($1: $(grep 'requests:' <<<"$out"))" >&2
    # The log: start time, status, microseconds per request.
    p99=$(awk '{print $3}' "$log" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int(NR*0.99)]/1000}')
    echo "$rps $p99"
  }
  for p in "${ports[@]}"; do
    v=$(curl -sk -o /dev/null -w '%{http_version} %{http_code}' "https://127.0.0.1:$p/")
    [ "$v" = "2 200" ] || { echo "proxy on $p answered $v (want HTTP/2 200)" >&2; cat "$work"/*.err "$work/haproxy.out" >&2; exit 1; }
    taskset -c 1 h2load -c 100 -m 10 -n 20000 "https://127.0.0.1:$p/" >/dev/null 2>&1
  done
  compare run_h2 https
  printf 'gateway-h2: bulwark_rps=%.0f nginx_rps=%.0f haproxy_rps=%.0f bulwark_p99_ms=%s nginx_p99_ms=%s haproxy_p99_ms=%s\n' \
    "$(m "${rps[bulwark]}")" "$(m "${rps[nginx]}")" "$(m "${rps[haproxy]}")" \
    "$(m "${p99[bulwark]}")" "$(m "${p99[nginx]}")" "$(m "${p99[haproxy]}")"
  exit 0
fi

# nginx as the proxy, configured the way its docs recommend for upstream keep-alive; a second
# one with `access_log off`.
start_nginx_proxy "" "" "" ""
mkdir -p "$work/ngn"
sed -e "s|$work/ng/|$work/ngn/|g" -e "s|access_log [^;]*;|access_log off;|" \
  -e "s|listen 127.0.0.1:$NG|listen 127.0.0.1:$NGN|" "$work/ng/nginx.conf" > "$work/ngn/nginx.conf"
taskset -c 0 "$NGINX" -p "$work/ngn" -c "$work/ngn/nginx.conf" & pids+=($!); NGN_PID=$!

# HAProxy, one thread, connection reuse to the upstream; with `option httplog` to stdout (a
# file), and without logging.
haproxy_cfg() {  # PORT LOGGING(0|1)
  cat <<CONF
global
  nbthread 1
  maxconn 4096
$([ "$2" = 1 ] && echo "  log stdout format raw local0")
defaults
  mode http
$([ "$2" = 1 ] && printf '  log global\n  option httplog')
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:$1
  default_backend be
backend be
  server s1 127.0.0.1:$UP maxconn 1000
CONF
}
haproxy_cfg "$HA" 1 > "$work/haproxy.cfg"
haproxy_cfg "$HAN" 0 > "$work/haproxy-nolog.cfg"
taskset -c 0 "$HAPROXY" -f "$work/haproxy.cfg" -db >"$work/haproxy-access.log" 2>"$work/haproxy.err" & pids+=($!); HA_PID=$!
taskset -c 0 "$HAPROXY" -f "$work/haproxy-nolog.cfg" -db >"$work/haproxy-nolog.out" 2>&1 & pids+=($!); HAN_PID=$!

# bulwark, one worker, metrics and access log on.
cat > "$work/bulwark.yml" <<CONF
workers: 1
log: {level: warn}
admin: {listen: 127.0.0.1:$BWA}
access_log: {path: $work/bulwark-access.log, max_size: 100g}  # no rotation mid-run, like the nginx peer
http: {keepalive_requests: 1000000}
listeners:
  - listen: 127.0.0.1:$BW
    routes: [{prefix: /, upstream: app}]
upstreams:
  app:
    keepalive: 64
    servers: [127.0.0.1:$UP]
CONF
taskset -c 0 build/release/bulwark serve -c "$work/bulwark.yml" 2>"$work/bulwark.err" & pids+=($!); BW_PID=$!
# and with the access log off (metrics stay on: they cost no I/O).
sed -e "s|^access_log: .*|access_log: {enabled: false}|" -e "s|127.0.0.1:$BWA|127.0.0.1:$BWNA|" \
  -e "s|listen: 127.0.0.1:$BW\$|listen: 127.0.0.1:$BWN|" "$work/bulwark.yml" > "$work/bulwark-nolog.yml"
taskset -c 0 build/release/bulwark serve -c "$work/bulwark-nolog.yml" 2>"$work/bulwark-nolog.err" & pids+=($!); BWN_PID=$!

for p in $UP $NG $HA $BW $NGN $HAN $BWN; do wait_port "$p"; done

# CPU ticks (user+system, all threads) of a process and its children: the proxy's own cost.
cpu_ticks() {
  local total=0 p t
  for p in "$1" $(pgrep -P "$1" || true); do
    for t in /proc/"$p"/task/*/stat; do total=$((total + $(awk '{print $14 + $15}' "$t" 2>/dev/null || echo 0))); done
  done
  echo "$total"
}

names=(bulwark nginx haproxy direct bulwark_nolog nginx_nolog haproxy_nolog)
ports=($BW $NG $HA $UP $BWN $NGN $HAN)
procs=($BW_PID $NG_PID $HA_PID "" $BWN_PID $NGN_PID $HAN_PID)
N=${#names[@]}
declare -A us_per_req
TICK=$(getconf CLK_TCK)
# warm-up
for p in "${ports[@]}"; do wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$p/" >/dev/null 2>&1; done
for r in $(seq 0 $((ROUNDS - 1))); do
  for k in $(seq 0 $((N - 1))); do
    i=$(( (k + r) % N ))
    t0=0; [ -n "${procs[$i]}" ] && t0=$(cpu_ticks "${procs[$i]}")
    read -r a b < <(run "http://127.0.0.1:${ports[$i]}/")
    if [ -n "${procs[$i]}" ]; then
      t1=$(cpu_ticks "${procs[$i]}")
      us_per_req[${names[$i]}]+="$(awk -v d=$((t1 - t0)) -v r="$a" -v s="$SECONDS_PER_RUN" -v hz="$TICK" 'BEGIN {printf "%.2f", d / hz * 1e6 / (r * s)}') "
    fi
    rps[${names[$i]}]+="$a "
    p99[${names[$i]}]+="$b "
    echo "round $((r + 1)) ${names[$i]}: ${a} req/s, p99 ${b} ms" >&2
  done
done

# System calls per request: one more, untimed run of each proxy with perf counting the syscall
# tracepoint in all its processes and threads (counting costs a little, so it is kept out of the
# timed rounds).
syscalls_per_request() {  # NAME PID PORT
  local targets=$2 c out reqs n
  for c in $(pgrep -P "$2" || true); do targets+=",$c"; done
  perf stat -x, -e raw_syscalls:sys_enter -p "$targets" -o "$work/perf-$1.txt" & local perf_pid=$!
  sleep 0.5
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d3s "http://127.0.0.1:$3/" 2>&1)
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  n=$(awk -F, '/raw_syscalls/ {print $1}' "$work/perf-$1.txt")
  awk -v n="$n" -v r="$reqs" 'BEGIN {printf "%.2f", n / r}'
}
declare -A sys_per_req
for i in 0 1 2 4 5 6; do sys_per_req[${names[$i]}]=$(syscalls_per_request "${names[$i]}" "${procs[$i]}" "${ports[$i]}"); done
echo "system calls per request: bulwark=${sys_per_req[bulwark]} nginx=${sys_per_req[nginx]} haproxy=${sys_per_req[haproxy]}; logs off: bulwark=${sys_per_req[bulwark_nolog]} nginx=${sys_per_req[nginx_nolog]} haproxy=${sys_per_req[haproxy_nolog]}"
# The logs-on proxies really logged (a request line each), the logs-off ones did not.
for f in "$work/bulwark-access.log" "$work/ng/access.log" "$work/haproxy-access.log"; do
  [ -s "$f" ] || { echo "no access log written to $f" >&2; exit 1; }
done
[ ! -s "$work/ngn/access.log" ] || { echo "nginx wrote an access log with access_log off" >&2; exit 1; }
echo "proxy CPU per request (median, microseconds): bulwark=$(m "${us_per_req[bulwark]}") nginx=$(m "${us_per_req[nginx]}") haproxy=$(m "${us_per_req[haproxy]}"); logs off: bulwark=$(m "${us_per_req[bulwark_nolog]}") nginx=$(m "${us_per_req[nginx_nolog]}") haproxy=$(m "${us_per_req[haproxy_nolog]}")"
printf 'logs on (as shipped): bulwark=%.0f nginx=%.0f haproxy=%.0f req/s, p99 %s / %s / %s ms\n' \
  "$(m "${rps[bulwark]}")" "$(m "${rps[nginx]}")" "$(m "${rps[haproxy]}")" \
  "$(m "${p99[bulwark]}")" "$(m "${p99[nginx]}")" "$(m "${p99[haproxy]}")"
printf 'logs off (like for like): bulwark=%.0f nginx=%.0f haproxy=%.0f req/s, p99 %s / %s / %s ms\n' \
  "$(m "${rps[bulwark_nolog]}")" "$(m "${rps[nginx_nolog]}")" "$(m "${rps[haproxy_nolog]}")" \
  "$(m "${p99[bulwark_nolog]}")" "$(m "${p99[nginx_nolog]}")" "$(m "${p99[haproxy_nolog]}")"
printf 'gateway: bulwark_rps=%.0f nginx_rps=%.0f haproxy_rps=%.0f direct_rps=%.0f bulwark_p99_ms=%s nginx_p99_ms=%s haproxy_p99_ms=%s nolog_bulwark_rps=%.0f nolog_nginx_rps=%.0f nolog_haproxy_rps=%.0f nolog_bulwark_p99_ms=%s nolog_nginx_p99_ms=%s nolog_haproxy_p99_ms=%s\n' \
  "$(m "${rps[bulwark]}")" "$(m "${rps[nginx]}")" "$(m "${rps[haproxy]}")" "$(m "${rps[direct]}")" \
  "$(m "${p99[bulwark]}")" "$(m "${p99[nginx]}")" "$(m "${p99[haproxy]}")" \
  "$(m "${rps[bulwark_nolog]}")" "$(m "${rps[nginx_nolog]}")" "$(m "${rps[haproxy_nolog]}")" \
  "$(m "${p99[bulwark_nolog]}")" "$(m "${p99[nginx_nolog]}")" "$(m "${p99[haproxy_nolog]}")"
