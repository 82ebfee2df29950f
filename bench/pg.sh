#!/usr/bin/env bash
# The PostgreSQL proxy, bulwark against PgBouncer (Debian's 1.18), side by side on this
# machine: one PostgreSQL 15 (run as the postgres user), a pgbench database of scale 20, and
# pgbench with 200 clients (2 threads, simple protocol)
#   - select-only (-S) and tpcb-like through bulwark (transaction pooling, pool of 20),
#   - the same through PgBouncer (transaction pooling, pool of 20, same auth: SCRAM),
#   - select-only directly with 200 clients (200 backends),
#   - both directly with 20 clients: the ceiling a pool of 20 can reach on this machine.
# Each run lasts DURATION seconds after a 5 s warm-up run that is not counted; with ROUNDS > 1
# the runs alternate (the two proxies taking turns going first) and each figure is the median. p99 comes from pgbench's per-transaction
# log (--sampling-rate 0.2) of the select-only runs through the proxies. A line before the
# summary gives each proxy's own CPU time per transaction (from /proc), which the machine's
# noise moves much less than throughput.
#
#   bench/pg.sh [DURATION_SECONDS] [ROUNDS]
# The last line is the summary:
#   pg: select_bulwark_tps=N select_pgbouncer_tps=N select_direct_tps=N select_direct20_tps=N
#       tpcb_bulwark_tps=N tpcb_pgbouncer_tps=N tpcb_direct20_tps=N bulwark_p99_ms=X
#       pgbouncer_p99_ms=X
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-30}
ROUNDS=${2:-1}

scripts/deps --test
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ >/dev/null
ninja -C build/release bulwark >/dev/null

WORK_PREFIX=bench-pg source scripts/lib.sh
PGBIN=/usr/lib/postgresql/15/bin
PGPORT=$(free_port); BW=$(free_port); BWA=$(free_port); PGB=$(free_port)
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi
}
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$work"

# PostgreSQL: defaults, except room for 200 direct clients and no fsync (the proxies are
# measured, not the disk).
as_postgres "$PGBIN/initdb" -D "$work/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  --no-sync >"$work/initdb.log" 2>&1
cat >>"$work/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$work'
max_connections = 300
shared_buffers = 256MB
fsync = off
EOF
as_postgres "$PGBIN/postgres" -D "$work/data" >"$work/postgres.log" 2>&1 &
pids+=($!)
wait_port "$PGPORT"
pids+=("$(head -1 "$work/data/postmaster.pid")")  # the postmaster, not the subshell
psql -X -q -h "$work" -p "$PGPORT" -U postgres \
  -c "CREATE ROLE app LOGIN PASSWORD 'secret'" -c "CREATE DATABASE app OWNER app" >/dev/null
export PGPASSWORD=secret
pgbench -i -q -s 20 -h 127.0.0.1 -p "$PGPORT" -U app app >"$work/init.log" 2>&1

cat >"$work/bulwark.yml" <<EOF
admin: {listen: 127.0.0.1:$BWA}
log: {level: warn}
pg:
  listen: 127.0.0.1:$BW
  pool_mode: transaction
  default_pool_size: 20
  max_client_conn: 1000
  auth_type: scram-sha-256
  users:
    - {name: app, password: secret}
  databases:
    app:
      servers: ['127.0.0.1:$PGPORT']
EOF
build/release/bulwark serve -c "$work/bulwark.yml" >"$work/bulwark.log" 2>&1 &
pids+=($!)
BW_PID=$!
wait_port "$BW"

cat >"$work/pgbouncer.ini" <<EOF
[databases]
app = host=127.0.0.1 port=$PGPORT dbname=app
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
logfile = $work/pgbouncer.log
log_connections = 0
log_disconnections = 0
EOF
echo '"app" "secret"' >"$work/userlist.txt"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$work/pgbouncer.ini" "$work/userlist.txt"
as_postgres pgbouncer "$work/pgbouncer.ini" >"$work/pgbouncer.out" 2>&1 &
pids+=($!)
wait_port "$PGB"
# $! is the subshell around setpriv; the process to measure (and stop) is pgbouncer itself.
PGB_PID=$(pgrep -f "pgbouncer $work/pgbouncer.ini" | head -1)
pids+=("$PGB_PID")

# CPU time (user + system, clock ticks) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run NAME PORT CLIENTS SECONDS [pgbench args...]: prints the TPS; with LOG set, keeps a
# per-transaction log in $work/NAME.log.*; with PID set, appends "NAME cpu_us transactions"
# for that process to $work/cpu.
run() {
  local name=$1 port=$2 clients=$3 secs=$4
  shift 4
  local logargs=()
  if [ -n "${LOG:-}" ]; then
    rm -f "$work/$name".log*
    logargs=(-l --sampling-rate 0.2 --log-prefix "$work/$name.log")
  fi
  local out t0=0
  [ -n "${PID:-}" ] && t0=$(ticks "$PID")
  out=$(cd "$work" && pgbench -h 127.0.0.1 -p "$port" -U app -c "$clients" -j 2 -T "$secs" -n \
    "${logargs[@]}" "$@" app 2>&1) || { echo "$out" >&2; return 1; }
  if [ -n "${PID:-}" ]; then
    local t1 n
    t1=$(ticks "$PID")
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    echo "$name $(( (t1 - t0) * 1000000 / $(getconf CLK_TCK) )) $n" >>"$work/cpu"
  fi
  if ! grep -q "number of failed transactions: 0 " <<<"$out"; then
    echo "$name: pgbench reported failures:" >&2
    echo "$out" >&2
    return 1
  fi
  sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | cut -d. -f1
}

# The 99th percentile of the latencies (µs, third column) in a pgbench log, in ms.
p99() {
  cat "$work/$1".log* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {
    if (NR == 0) { print "nan"; exit }
    i = int(NR * 0.99); if (i < 1) i = 1; printf "%.2f", a[i] / 1000 }'
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Warm-ups: the pools fill, the tables are cached.
run warm "$BW" 200 5 -S >/dev/null
run warm "$PGB" 200 5 -S >/dev/null
run warm "$PGPORT" 20 5 -S >/dev/null

declare -A r
for round in $(seq 1 "$ROUNDS"); do
  # The proxies take turns going first: tpcb-like runs age the tables (dead tuples until
  # autovacuum), so a fixed order would favour whichever always runs first.
  if [ $((round % 2)) -eq 1 ]; then
    r[sb]+=" $(PID=$BW_PID LOG=1 run sel-bulwark "$BW" 200 "$DURATION" -S)"
    r[sp]+=" $(PID=$PGB_PID LOG=1 run sel-pgbouncer "$PGB" 200 "$DURATION" -S)"
  else
    r[sp]+=" $(PID=$PGB_PID LOG=1 run sel-pgbouncer "$PGB" 200 "$DURATION" -S)"
    r[sb]+=" $(PID=$BW_PID LOG=1 run sel-bulwark "$BW" 200 "$DURATION" -S)"
  fi
  r[sd]+=" $(run sel-direct "$PGPORT" 200 "$DURATION" -S)"
  r[sd20]+=" $(run sel-direct20 "$PGPORT" 20 "$DURATION" -S)"
  if [ $((round % 2)) -eq 1 ]; then
    r[tb]+=" $(PID=$BW_PID run tpcb-bulwark "$BW" 200 "$DURATION")"
    r[tp]+=" $(PID=$PGB_PID run tpcb-pgbouncer "$PGB" 200 "$DURATION")"
  else
    r[tp]+=" $(PID=$PGB_PID run tpcb-pgbouncer "$PGB" 200 "$DURATION")"
    r[tb]+=" $(PID=$BW_PID run tpcb-bulwark "$BW" 200 "$DURATION")"
  fi
  r[td20]+=" $(run tpcb-direct20 "$PGPORT" 20 "$DURATION")"
  echo "round $round: select bulwark/pgbouncer/direct/direct20 =" \
    "$(echo "${r[sb]}" | awk '{print $NF}')/$(echo "${r[sp]}" | awk '{print $NF}')/$(echo "${r[sd]}" | awk '{print $NF}')/$(echo "${r[sd20]}" | awk '{print $NF}')," \
    "tpcb bulwark/pgbouncer/direct20 = $(echo "${r[tb]}" | awk '{print $NF}')/$(echo "${r[tp]}" | awk '{print $NF}')/$(echo "${r[td20]}" | awk '{print $NF}')" >&2
done

# The proxies' own CPU per transaction: less noisy than throughput on a shared machine.
awk '{c[$1] += $2; n[$1] += $3} END {
  printf "cpu: select_bulwark_us_per_tx=%.1f select_pgbouncer_us_per_tx=%.1f tpcb_bulwark_us_per_tx=%.1f tpcb_pgbouncer_us_per_tx=%.1f\n",
    c["sel-bulwark"] / n["sel-bulwark"], c["sel-pgbouncer"] / n["sel-pgbouncer"],
    c["tpcb-bulwark"] / n["tpcb-bulwark"], c["tpcb-pgbouncer"] / n["tpcb-pgbouncer"] }' "$work/cpu"
echo "pg: select_bulwark_tps=$(median <<<"${r[sb]}") select_pgbouncer_tps=$(median <<<"${r[sp]}")" \
  "select_direct_tps=$(median <<<"${r[sd]}") select_direct20_tps=$(median <<<"${r[sd20]}")" \
  "tpcb_bulwark_tps=$(median <<<"${r[tb]}") tpcb_pgbouncer_tps=$(median <<<"${r[tp]}")" \
  "tpcb_direct20_tps=$(median <<<"${r[td20]}") bulwark_p99_ms=$(p99 sel-bulwark)" \
  "pgbouncer_p99_ms=$(p99 sel-pgbouncer)"
