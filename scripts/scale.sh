#!/usr/bin/env bash
# Scale benchmarks (BENCHMARKS.md §7): Sentinella over stores of 1,000 / 100,000 /
# 1,000,000 mailboxes, each built by `sentinella mailbox import` from a Dovecot
# passwd-file (one argon2id hash for all: a bulk load, not a million hashings), in front
# of a Dovecot that logs the master user in as anyone. For each size: the import time,
# `serve`'s ready time and RSS after start, IMAPS logins/s at c=8 over a working set of
# up to 10,000 distinct mailboxes with a warm verification cache, the proxy's CPU per
# 1,000 logins, RSS after, and how long a CLI change takes to refuse the next login.
# Then, at the largest size, the proxy's CPU per login against the TLS floor (handshake
# and greeting only). Loopback only; every server it starts is stopped by PID on exit.
#
#   ./scripts/scale.sh                       # 1k, 100k, 1M (about 10 minutes)
#   SIZES="1000 100000" ./scripts/scale.sh   # some sizes
#   DURATION=5 ./scripts/scale.sh            # shorter measured runs
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 100000 1000000"}
DURATION=${DURATION:-10}
WORKING_SET=${WORKING_SET:-10000}

command -v bc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null
cargo build --release --quiet
BIN=$PWD/target/release/sentinella
LOADGEN=$PWD/target/release/sentinella-loadgen
W=$(mktemp -d /tmp/sentinella-scale.XXXX)
chmod 755 "$W"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
PW=Scale-passw0rd
MASTER_PW=scale-master-pw
UP=35143
PORT=45993

# --- Dovecot: the master user may log in as any name (a static passdb) ---------------
d=$W/dovecot
mkdir -p "$d/run" "$d/mail"; chown dovecot:dovecot "$d/mail"
echo "sentinella:{PLAIN}$MASTER_PW::::::" > "$d/masters"
cat > "$d/dovecot.conf" <<EOF
base_dir = $d/run
state_dir = $d/run
log_path = $d/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:$d/mail/%u
default_client_limit = 20000
default_process_limit = 2000
passdb {
  driver = passwd-file
  args = $d/masters
  master = yes
  pass = yes
}
passdb {
  driver = static
  args = password=not-used-by-the-benchmark
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=$d/mail/%u
}
service imap-login {
  inet_listener imap {
    port = $UP
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
EOF
dovecot -F -c "$d/dovecot.conf" 2>"$d/stderr.log" & PIDS+=($!)

config() { # dir
  echo "$MASTER_PW" > "$1/master.pass"
  cat > "$1/config.toml" <<EOF
[store]
path = "sentinella.db"
[argon2]
# A cheap cost, so that warming the cache over 10,000 mailboxes takes seconds; the
# imported hash has the same cost (no re-hash at login).
memory_kib = 8192
iterations = 1
parallelism = 1
[limits]
max_connections = 20000
[[listener]]
name = "imaps"
protocol = "imap"
bind = "127.0.0.1:$PORT"
tls = "implicit"
upstream = "imap"
[upstream.imap]
host = "127.0.0.1"
port = $UP
tls = "none"
login = { mode = "master", user = "sentinella", password_file = "master.pass" }
EOF
}

# One argon2id hash at that cost, made by Sentinella itself in a scratch store.
mkdir -p "$W/hash"; config "$W/hash"
echo "$PW" | "$BIN" --config "$W/hash/config.toml" mailbox add seed@pec.example.it --password-stdin >/dev/null
HASH=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select password_hash from logins\").fetchone()[0])" "$W/hash/sentinella.db")

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
thread_cpu_s() { # pid thread-name: the CPU of that thread (the history writer: its commits and fsyncs)
  local t
  for t in /proc/$1/task/*; do
    [ "$(cat "$t/comm")" = "$2" ] && awk '{printf "%.2f", ($14 + $15) / 100}' "$t/stat" && return
  done
  echo 0
}
wait_port() { for _ in $(seq 2000); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.005; done; return 1; }
wait_port $UP

echo "# Sentinella scale benchmarks, $(date -u +%FT%TZ), $(nproc) cores, runs of ${DURATION}s"
for N in $SIZES; do
  s=$W/s$N; mkdir -p "$s"; config "$s"
  python3 - "$N" "$HASH" > "$s/users.passwd" <<'EOF'
import sys
n, h = int(sys.argv[1]), sys.argv[2]
out = sys.stdout
for i in range(n):
    out.write(f"user{i}@pec.example.it:{{ARGON2ID}}{h}:1000:1000::/var/mail/user{i}::\n")
EOF
  t0=$(date +%s.%N)
  "$BIN" --config "$s/config.toml" mailbox import "$s/users.passwd" > "$s/import.out"
  import_s=$(echo "$(date +%s.%N) - $t0" | bc)

  t0=$(date +%s.%N)
  RUST_LOG=warn "$BIN" --config "$s/config.toml" serve 2>"$s/serve.log" & SPID=$!
  PIDS+=("$SPID")
  wait_port $PORT
  ready_s=$(echo "$(date +%s.%N) - $t0" | bc)
  rss_start=$(rss_mb $SPID)
  CERT=$s/certs/sentinella.crt
  set_size=$(( N < WORKING_SET ? N : WORKING_SET ))
  lg() { "$LOADGEN" run --addr 127.0.0.1:$PORT --cafile "$CERT" --user 'user{i}@pec.example.it' \
          --password "$PW" --protocol imap --spread "$set_size" "$@"; }
  # Warm: every mailbox of the working set logs in once (argon2id each), then measure.
  # (Dovecot's login path, not the proxy, limits this to ~120 logins/s here.)
  lg --concurrency 8 --duration $(( set_size / 70 + 10 )) > "$s/warm.json"
  cpu0=$(cpu_s $SPID); hist0=$(thread_cpu_s $SPID history)
  lg --concurrency 8 --duration "$DURATION" > "$s/run.json"
  cpu1=$(cpu_s $SPID); hist1=$(thread_cpu_s $SPID history)
  rss_after=$(rss_mb $SPID)
  logins=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accepted"])' "$s/run.json")
  rate=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["logins_per_s"])' "$s/run.json")
  cpu_per_1000=$(echo "scale=3; ($cpu1 - $cpu0) * 1000 / $logins" | bc)
  hist_per_1000=$(echo "scale=3; ($hist1 - $hist0) * 1000 / $logins" | bc)

  # A CLI change (IMAP disabled for one mailbox in use): time until its next login is
  # refused.
  change_ms=$(python3 - "$BIN" "$s/config.toml" "$PORT" "$CERT" "$PW" <<'EOF'
import imaplib, ssl, subprocess, sys, time
bin_, cfg, port, cert, pw = sys.argv[1:]
user = "user7@pec.example.it"
ctx = ssl.create_default_context(cafile=cert); ctx.check_hostname = False
def ok():
    c = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx, timeout=10)
    try:
        c.login(user, pw); c.logout(); return True
    except imaplib.IMAP4.error:
        return False
assert ok()
subprocess.run([bin_, "--config", cfg, "mailbox", "protocols", user, "--disable", "imap"],
               check=True, capture_output=True)
t = time.monotonic()
while ok():
    if time.monotonic() - t > 10:
        print("timeout"); sys.exit()
print(round((time.monotonic() - t) * 1000))
EOF
)
  printf '%-9s import %6.1fs  ready %5.2fs  rss start %4s MB  logins/s %7s  cpu/1000 %6ss (history %ss)  rss after %4s MB  change->refused %s ms\n' \
    "$N" "$import_s" "$ready_s" "$rss_start" "$rate" "$cpu_per_1000" "$hist_per_1000" "$rss_after" "$change_ms"
  LAST_PID=$SPID; LAST_CERT=$CERT
  if [ "$N" != "${SIZES##* }" ]; then kill -TERM "$SPID"; wait "$SPID" 2>/dev/null || true; fi
done

# --- CPU per login against the TLS floor, at the largest size -------------------------
floor() { # label args…
  local c0 c1 out n
  c0=$(cpu_s $LAST_PID)
  out=$("$LOADGEN" run --addr 127.0.0.1:$PORT --cafile "$LAST_CERT" --user 'user{i}@pec.example.it' \
        --password "$PW" --protocol imap --concurrency 8 --duration "$DURATION" "$@")
  c1=$(cpu_s $LAST_PID)
  n=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["accepted"])')
  echo "scale=4; ($c1 - $c0) * 1000 / $n" | bc
}
tls_ms=$(floor --greeting-only)
login_ms=$(floor --spread $(( ${SIZES##* } < WORKING_SET ? ${SIZES##* } : WORKING_SET )))
printf 'proxy CPU per connection: TLS handshake + greeting %s ms, IMAPS login (warm cache) %s ms, ratio %s\n' \
  "$tls_ms" "$login_ms" "$(echo "scale=2; $login_ms / $tls_ms" | bc)"
