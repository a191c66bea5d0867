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
#   HISTORY_SYNC=full ./scripts/scale.sh     # [store] history_sync: normal (default), full, journal
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 100000 1000000"}
DURATION=${DURATION:-10}
WORKING_SET=${WORKING_SET:-10000}
HISTORY_SYNC=${HISTORY_SYNC:-normal}

command -v bc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null
cargo build --release --quiet
BIN=${SENTINELLA_BIN:-$PWD/target/release/sentinella}  # another build to measure: SENTINELLA_BIN
LOADGEN=$PWD/target/release/sentinella-loadgen
W_PREFIX=sentinella-scale
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
PORT=28993
start_dovecot

# One argon2id hash at that cost, made by Sentinella itself in a scratch store.
mkdir -p "$W/hash"; config "$W/hash" $PORT
echo "$PW" | "$BIN" --config "$W/hash/config.toml" mailbox add seed@pec.example.it --password-stdin >/dev/null
HASH=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select password_hash from logins\").fetchone()[0])" "$W/hash/sentinella.db")


echo "# Sentinella scale benchmarks, $(date -u +%FT%TZ), $(nproc) cores, runs of ${DURATION}s, history_sync = $HISTORY_SYNC, load $(cut -d' ' -f1-3 /proc/loadavg)"
for N in $SIZES; do
  s=$W/s$N; mkdir -p "$s"
  config "$s" $PORT "$(printf 'path = "sentinella.db"\nhistory_sync = "%s"' "$HISTORY_SYNC")"
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
