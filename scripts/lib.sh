# Helpers for scripts that start real servers on loopback (benchmarks, script tests).
# Source it; it sets NGINX and HAPROXY, makes $work (a temp dir), and on exit kills every pid in
# $pids and removes $work.

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
work=$(mktemp -d "/tmp/bulwark-${WORK_PREFIX:-run}-XXXXXX")
# bulwark's state (the admin token, the audit log) stays in $work: a run as root must not leave
# /var/lib/bulwark behind on the machine.
export STATE_DIRECTORY="$work/state"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # Some pids are not our children (a postmaster started through setpriv): wait up to 10 s for
  # them too, so nothing still writes into $work while it is removed.
  for _ in $(seq 1 100); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  rm -rf "$work"
}
trap cleanup EXIT

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Waits up to 10 s for 127.0.0.1:PORT to accept; on failure prints the logs in $work and fails.
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "FAIL: port $1 did not open" >&2
  tail -n 20 "$work"/*.out "$work"/*.err "$work"/*.log 2>/dev/null >&2
  return 1
}
