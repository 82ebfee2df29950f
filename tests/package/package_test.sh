#!/usr/bin/env bash
# Installs bulwark's Debian package on this machine, checks what it laid out and who owns it,
# validates and runs the installed configuration as the `bulwark` user, then purges the
# package and checks that the user, its state and its logs went with it.
#   tests/package/package_test.sh build/release/bulwark_VERSION_ARCH.deb
set -euo pipefail
# `producer | grep -q` under pipefail fails when grep exits at the first match while the producer
# still writes (SIGPIPE: a man page is larger than a pipe's buffer). `contains` reads everything.
contains() { local text; text=$(cat); grep -q -- "$1" <<<"$text"; }
deb=$(readlink -f "$1")
fail() { echo "package test: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i)"
# Never replace or purge a bulwark someone installed on this machine.
if dpkg-query -W -f='${Status}' bulwark 2>/dev/null | contains installed; then
  fail "a bulwark package is installed on this machine; this test would replace it (dpkg --purge bulwark first)"
fi
if getent passwd bulwark >/dev/null; then fail "a bulwark user exists on this machine; this test would remove it"; fi
for d in /var/lib/bulwark /var/log/bulwark /etc/bulwark; do
  if [ -e "$d" ]; then fail "$d exists on this machine; purging the package would remove it"; fi
done
tmp=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  dpkg --purge bulwark >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i failed"; }

# owner:group mode path
check() {
  local want="$1" path="$2"
  local got
  got=$(stat -c '%U:%G %a' "$path" 2>/dev/null) || fail "$path is missing"
  [ "$got" = "$want" ] || fail "$path is $got, expected $want"
}
check "root:root 755" /usr/bin/bulwark
check "root:bulwark 640" /etc/bulwark/bulwark.yml
check "root:root 644" /etc/logrotate.d/bulwark
check "root:root 644" /usr/lib/systemd/system/bulwark.service
check "root:root 644" /usr/share/bash-completion/completions/bulwark
check "root:root 644" /usr/share/doc/bulwark/README.md
check "root:root 644" /usr/share/doc/bulwark/operations.md
check "root:root 644" /usr/share/doc/bulwark/examples/minimal.yml
check "root:root 644" /usr/share/man/man1/bulwark.1.gz
check "root:root 644" /usr/share/man/man5/bulwark.yml.5.gz
check "bulwark:bulwark 700" /var/lib/bulwark
check "bulwark:adm 750" /var/log/bulwark
[ "$(getent passwd bulwark | cut -d: -f7)" = /usr/sbin/nologin ] || fail "bulwark's shell is not nologin"
[ "$(getent passwd bulwark | cut -d: -f3)" -lt 1000 ] || fail "bulwark is not a system user"
dpkg-query --showformat='${Conffiles}\n' --show bulwark | contains ' /etc/bulwark/bulwark.yml ' ||
  fail "/etc/bulwark/bulwark.yml is not a conffile"
zcat /usr/share/man/man5/bulwark.yml.5.gz | contains '^\.TH "BULWARK.YML" "5"' || fail "bulwark.yml(5) has no title"
zcat /usr/share/man/man1/bulwark.1.gz | contains '^\.TH BULWARK "1"' || fail "bulwark(1) has no title"
zcat /usr/share/man/man1/bulwark.1.gz | contains 'SIGUSR1' || fail "bulwark(1) does not document SIGUSR1"
bash -n /usr/share/bash-completion/completions/bulwark || fail "the bash completion does not parse"

# The installed configuration as the service checks it, as the service's user.
runuser -u bulwark -- /usr/bin/bulwark check-config /etc/bulwark/bulwark.yml >"$tmp/check.log" 2>&1 ||
  { cat "$tmp/check.log"; fail "check-config /etc/bulwark/bulwark.yml failed"; }
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify /usr/lib/systemd/system/bulwark.service >"$tmp/verify.log" 2>&1 ||
    { cat "$tmp/verify.log"; fail "systemd-analyze verify bulwark.service failed"; }
fi

# Started as `bulwark` (as the unit does; setpriv execs, so the pid is bulwark's), on free ports
# instead of 8080 and 9901.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
install -m 0640 -o root -g bulwark /dev/null "$tmp/bulwark.yml"
sed -e "s/127.0.0.1:8080/127.0.0.1:$port/" -e "s/127.0.0.1:9901/127.0.0.1:$admin/" \
  /etc/bulwark/bulwark.yml >"$tmp/bulwark.yml"
chmod 0755 "$tmp"
STATE_DIRECTORY=/var/lib/bulwark setpriv --reuid=bulwark --regid=bulwark --init-groups -- /usr/bin/bulwark serve -c "$tmp/bulwark.yml" \
  >"$tmp/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$admin/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
body=$(curl -fsS "http://127.0.0.1:$port/") || { cat "$tmp/serve.log"; fail "the installed configuration does not serve"; }
[[ "$body" == "bulwark is running"* ]] || fail "unexpected answer: $body"
bpid=$(pgrep -u bulwark -f "bulwark serve -c $tmp/bulwark.yml" | head -1) || fail "no bulwark process runs as bulwark"
[ -n "$bpid" ] || fail "no bulwark process runs as bulwark"
check "bulwark:bulwark 600" /var/lib/bulwark/admin.token
[ -s /var/log/bulwark/access.log ] || fail "no access log in /var/log/bulwark"
/usr/bin/bulwark status -c "$tmp/bulwark.yml" >"$tmp/status.log" 2>&1 ||
  { cat "$tmp/status.log"; fail "bulwark status did not report a ready bulwark"; }
kill -TERM "$pid"
wait "$pid" || fail "bulwark did not exit 0 on SIGTERM"
pid=""

dpkg --purge bulwark >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; fail "dpkg --purge failed"; }
for gone in /usr/bin/bulwark /etc/bulwark /var/lib/bulwark /var/log/bulwark \
  /usr/lib/systemd/system/bulwark.service /usr/share/doc/bulwark; do
  [ ! -e "$gone" ] || fail "$gone is still there after purge"
done
if getent passwd bulwark >/dev/null; then fail "the bulwark user is still there after purge"; fi
if getent group bulwark >/dev/null; then fail "the bulwark group is still there after purge"; fi
echo "package test: installed, checked, ran as bulwark and purged $(basename "$deb")"
