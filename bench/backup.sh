#!/usr/bin/env bash
# The vault against the shell pipeline it replaces, side by side on this machine: one
# PostgreSQL 15 (run as the postgres user) with a pgbench database of scale 50, backed up
#   - by bulwark: `bulwark backup run` of a pg_dump plan (zstd level 3 with 2 worker threads,
#     AES-256-GCM, SHA-256, catalogued), to a local directory;
#   - by the pipeline: pg_dump -Fc -Z0 | zstd -T2 -3 | openssl enc -aes-256-ctr -pbkdf2, to a
#     file on the same disk;
# and restored from each into a fresh database with pg_restore (bulwark: `backup cat | pg_restore`;
# the pipeline: openssl enc -d | zstd -d | pg_restore). With ROUNDS > 1 the two take turns going
# first and each figure is the median.
#
#   bench/backup.sh [ROUNDS] [SCALE]
# The last line is the summary:
#   backup: bulwark_s=X pipeline_s=X bulwark_bytes=N pipeline_bytes=N restore_bulwark_s=X
#           restore_pipeline_s=X
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SCALE=${2:-50}

scripts/deps --test
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ >/dev/null
ninja -C build/release bulwark >/dev/null
BULWARK=$PWD/build/release/bulwark

WORK_PREFIX=bench-backup source scripts/lib.sh
PGBIN=/usr/lib/postgresql/15/bin
PGPORT=$(free_port)
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi
}
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$work"
as_postgres "$PGBIN/initdb" -D "$work/data" -U postgres --auth-local=trust --no-sync \
  >"$work/initdb.log" 2>&1
cat >>"$work/data/postgresql.conf" <<EOF
listen_addresses = ''
port = $PGPORT
unix_socket_directories = '$work'
shared_buffers = 256MB
fsync = off
EOF
as_postgres "$PGBIN/postgres" -D "$work/data" >"$work/postgres.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -S "$work/.s.PGSQL.$PGPORT" ] && break; sleep 0.1; done
pids+=("$(head -1 "$work/data/postmaster.pid")")
PG=(-h "$work" -p "$PGPORT" -U postgres)
psql -X -q "${PG[@]}" -c "CREATE DATABASE app" >/dev/null
echo "loading pgbench scale $SCALE..." >&2
pgbench -i -q -s "$SCALE" "${PG[@]}" app >"$work/init.log" 2>&1
psql -X -q "${PG[@]}" -d app -c "VACUUM ANALYZE" >/dev/null

KEY=$(openssl rand -hex 32)
PASS=$(openssl rand -hex 16)
mkdir -p "$work/store" "$work/pipeline"
cat >"$work/bulwark.yml" <<EOF
vault:
  catalog: $work/catalog.db
  keys: [{value: $KEY}]
  storage:
    disk: {path: $work/store}
  plans:
    app:
      source: {type: pg_dump, host: $work, port: $PGPORT, user: postgres, database: app}
      compression: zstd
      level: 3
      threads: 2
EOF

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

bulwark_backup() {
  sync
  local t0 t1
  t0=$(now)
  "$BULWARK" backup run app -c "$work/bulwark.yml" >"$work/bulwark-run.log" 2>&1 ||
    { cat "$work/bulwark-run.log" >&2; return 1; }
  t1=$(now)
  sync
  echo "$(elapsed "$t0" "$t1")"
}
pipeline_backup() {
  sync
  local t0 t1
  t0=$(now)
  pg_dump -Fc -Z0 "${PG[@]}" app | zstd -q -T2 -3 |
    openssl enc -aes-256-ctr -pbkdf2 -pass "pass:$PASS" >"$work/pipeline/app.dump.zst.enc"
  t1=$(now)
  echo "$(elapsed "$t0" "$t1")"
}
restore() {  # restore NAME COMMAND...: into a fresh database NAME
  psql -X -q "${PG[@]}" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
  local name=$1 t0 t1
  shift
  t0=$(now)
  "$@" | pg_restore "${PG[@]}" -d "$name" --no-owner
  t1=$(now)
  echo "$(elapsed "$t0" "$t1")"
}
bulwark_restore() {
  local id
  id=$("$BULWARK" backup list --json -c "$work/bulwark.yml" | python3 -c \
    'import json,sys; print([b["id"] for b in json.load(sys.stdin) if b["status"] == "ok"][0])')
  restore restored_b "$BULWARK" backup cat "$id" -c "$work/bulwark.yml"
}
pipeline_restore() {
  restore restored_p sh -c "openssl enc -d -aes-256-ctr -pbkdf2 -pass pass:$PASS \
    <'$work/pipeline/app.dump.zst.enc' | zstd -q -d"
}

declare -A r
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then
    r[b]+=" $(bulwark_backup)"
    r[p]+=" $(pipeline_backup)"
    r[rb]+=" $(bulwark_restore)"
    r[rp]+=" $(pipeline_restore)"
  else
    r[p]+=" $(pipeline_backup)"
    r[b]+=" $(bulwark_backup)"
    r[rp]+=" $(pipeline_restore)"
    r[rb]+=" $(bulwark_restore)"
  fi
  # Only the newest bulwark backup stays on disk (the pipeline overwrites its file too).
  find "$work/store" -name '*.bwv' -printf '%T@ %p\n' | sort -n | head -n -1 | cut -d' ' -f2 |
    xargs -r rm -f
  echo "round $round: backup bulwark/pipeline = $(echo "${r[b]}" | awk '{print $NF}')/$(echo "${r[p]}" | awk '{print $NF}') s," \
    "restore = $(echo "${r[rb]}" | awk '{print $NF}')/$(echo "${r[rp]}" | awk '{print $NF}') s" >&2
done

# Both restores must hold the same data as the source.
for db in restored_b restored_p; do
  for q in "count(*), sum(abalance) FROM pgbench_accounts" "count(*), sum(bbalance) FROM pgbench_branches" \
    "count(*), sum(tbalance) FROM pgbench_tellers"; do
    a=$(psql -X -At "${PG[@]}" -d app -c "SELECT $q")
    b=$(psql -X -At "${PG[@]}" -d "$db" -c "SELECT $q")
    [ "$a" = "$b" ] || { echo "FAIL: $db: $q differs from the source ($b vs $a)" >&2; exit 1; }
  done
done
bulwark_bytes=$(find "$work/store" -name '*.bwv' -printf '%s\n' | tail -1)
pipeline_bytes=$(stat -c %s "$work/pipeline/app.dump.zst.enc")
raw_bytes=$(pg_dump -Fc -Z0 "${PG[@]}" app | wc -c)
echo "raw pg_dump -Fc -Z0 output: $raw_bytes bytes" >&2
echo "backup: bulwark_s=$(median <<<"${r[b]}") pipeline_s=$(median <<<"${r[p]}")" \
  "bulwark_bytes=$bulwark_bytes pipeline_bytes=$pipeline_bytes" \
  "restore_bulwark_s=$(median <<<"${r[rb]}") restore_pipeline_s=$(median <<<"${r[rp]}")"
