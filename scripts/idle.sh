#!/usr/bin/env bash
# Idle sessions on one node (BENCHMARKS.md §9): SESSIONS authenticated IMAP sessions in
# IDLE held through one `serve`, spread over 127.0.0.x source addresses and over one
# listener per 25,000 sessions (each with its own upstream port: one destination gives
# a source address at most ~28,000 ephemeral ports). The upstream is the load
# generator's cheap IMAP server (one Dovecot cannot hold a hundred thousand processes).
#
# Reports: the proxy's RSS per session, the kernel's TCP memory (separately), the proxy's
# CPU while every session idles, the time a revocation (one mailbox's IMAP disabled from
# the CLI) takes to end that mailbox's sessions, and SIGTERM: how long `serve` takes to
# stop and how many sessions got the protocol's BYE.
#
#   ./scripts/idle.sh                    # SESSIONS=100000
#   SESSIONS=9000 ./scripts/idle.sh
#   SENTINELLA_BIN=/tmp/old/sentinella ./scripts/idle.sh   # another build, same load
#
# Needs open files: 2 per session for `serve`, 1 per session for each load generator
# process (clients, upstream). A machine whose hard limit (`ulimit -Hn`) is lower runs as
# many sessions as it allows and says so. Loopback only; every server it starts is
# stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-100000}
MAILBOXES=${MAILBOXES:-200}
IDLE_CPU_S=${IDLE_CPU_S:-20}
W_PREFIX=sentinella-idle
cargo build --release --quiet
# SENTINELLA_BIN: another build of the proxy to measure (a "before" figure).
BIN=${SENTINELLA_BIN:-$PWD/target/release/sentinella}
LOADGEN=$PWD/target/release/sentinella-loadgen
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
command -v bc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null

files=$(ulimit -n)
fit=$(( (files - 1000) / 2 ))
if [ "$SESSIONS" -gt "$fit" ]; then
  echo "# open files: the hard limit is $files (ulimit -Hn; raising it needs CAP_SYS_RESOURCE);"
  echo "# $SESSIONS sessions need $(( 2 * SESSIONS + 1000 )) for serve: running $fit instead"
  SESSIONS=$fit
fi
# Ports below the ephemeral range (32768-60999), where a client's source port can hold one.
listeners=$(( (SESSIONS + 24999) / 25000 ))
sources=$(( (SESSIONS + 3999) / 4000 ))

# One main-password hash (cheap argon2id cost, as scale.sh) for every mailbox.
mkdir -p "$W/hash"; config "$W/hash" 1
echo "$PW" | "$BIN" --config "$W/hash/config.toml" mailbox add seed@pec.example.it --password-stdin >/dev/null
HASH=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select password_hash from logins\").fetchone()[0])" "$W/hash/sentinella.db")

s=$W/s; mkdir -p "$s"
echo "$MASTER_PW" > "$s/master.pass"
{
  cat <<EOF
[store]
path = "sentinella.db"
[argon2]
memory_kib = 8192
iterations = 1
parallelism = 1
[limits]
max_connections = $(( SESSIONS + 1000 ))
max_connections_per_address = 10000
preauth_timeout = "120s"
shutdown_grace = "30s"
EOF
  for i in $(seq 0 $(( listeners - 1 ))); do
    cat <<EOF
[[listener]]
name = "imaps$i"
protocol = "imap"
bind = "127.0.0.1:$(( 27000 + i ))"
tls = "implicit"
upstream = "u$i"
[upstream.u$i]
host = "127.0.0.1"
port = $(( 27100 + i ))
tls = "none"
login = { mode = "master", user = "sentinella", password_file = "master.pass" }
EOF
  done
} > "$s/config.toml"
python3 - "$MAILBOXES" "$HASH" > "$s/users.passwd" <<'EOF'
import sys
n, h = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    print(f"user{i}@pec.example.it:{{ARGON2ID}}{h}:1000:1000::/var/mail/user{i}::")
EOF
"$BIN" --config "$s/config.toml" mailbox import "$s/users.passwd" > /dev/null

up_args=(); for i in $(seq 0 $(( listeners - 1 ))); do up_args+=(--listen "127.0.0.1:$(( 27100 + i ))"); done
"$LOADGEN" upstream "${up_args[@]}" --duration 3600 & PIDS+=($!)
RUST_LOG=warn "$BIN" --config "$s/config.toml" serve 2>"$s/serve.log" & SPID=$!
PIDS+=("$SPID")
wait_port 27000
CERT=$s/certs/sentinella.crt
also=(); for i in $(seq 1 $(( listeners - 1 ))); do also+=(--also "127.0.0.1:$(( 27000 + i ))"); done
lg() { "$LOADGEN" idle --addr 127.0.0.1:27000 "${also[@]}" --cafile "$CERT" --user 'user{i}@pec.example.it' \
        --password "$PW" --spread "$MAILBOXES" --sources "$sources" --imap-idle "$@"; }

# Every mailbox logs in once (its hash is verified once, then cached), so the figure is
# the sessions' own cost.
lg --sessions "$MAILBOXES" --hold 1 > "$W/warm.json"
sleep 1
rss0=$(awk '/VmRSS/ {print $2}' "/proc/$SPID/status")
tcp_pages0=$(awk '/^TCP:/ {print $NF}' /proc/net/sockstat)
slab() { awk '$1 == "TCP" || $1 == "tcp_bind_bucket" || $1 == "request_sock_TCP" {s += $2 * $4} END {print int(s / 1024)}' /proc/slabinfo; }
slab0=$(slab)

echo "# Sentinella idle sessions, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
HOLD=$(( IDLE_CPU_S + 40 ))
lg --sessions "$SESSIONS" --hold "$HOLD" --concurrency 128 > "$W/idle.json" & IDLE=$!
PIDS+=("$IDLE")
for _ in $(seq 3600); do [ -s "$W/idle.json" ] && break; sleep 0.5; done
opened=$(head -1 "$W/idle.json")
open=$(echo "$opened" | python3 -c 'import json,sys; print(json.load(sys.stdin)["open"])')
sleep 2
rss1=$(awk '/VmRSS/ {print $2}' "/proc/$SPID/status")
tcp_pages1=$(awk '/^TCP:/ {print $NF}' /proc/net/sockstat)
slab1=$(slab)
page_kib=$(( $(getconf PAGESIZE) / 1024 ))
echo "opened: $opened"
echo "proxy rss: before ${rss0} KiB, with $open sessions ${rss1} KiB, per session $(( (rss1 - rss0) / (open > 0 ? open : 1) )) KiB ($(( (rss1 - rss0) * 1024 / (open > 0 ? open : 1) )) bytes)"
echo "kernel, 4 TCP sockets per session (both ends of both connections): buffers $(( (tcp_pages1 - tcp_pages0) * page_kib )) KiB; socket structures (slab) $(( slab1 - slab0 )) KiB, $(( (slab1 - slab0) * 1024 / (open > 0 ? open : 1) )) bytes per session"

c0=$(cpu_s "$SPID"); sleep "$IDLE_CPU_S"; c1=$(cpu_s "$SPID")
echo "proxy CPU while idle: $(echo "$c1 - $c0" | bc) s over ${IDLE_CPU_S} s"

# A revocation: IMAP disabled for user7 from the CLI.
t0=$(date +%s%3N)
"$BIN" --config "$s/config.toml" mailbox protocols user7@pec.example.it --disable imap >/dev/null
t1=$(date +%s%3N)
sleep 3
# SIGTERM: the rest get the protocol's BYE at a quiet moment; serve stops.
t2=$(date +%s%3N)
kill -TERM "$SPID"
wait "$SPID" || true
t3=$(date +%s%3N)
echo "SIGTERM: serve stopped in $(( t3 - t2 )) ms (shutdown_grace 30 s); $(grep -c 'grace period over' "$s/serve.log" || true) grace-over warnings"
wait "$IDLE" || true
python3 - "$W/idle.json" "$t0" "$t1" "$t2" <<'EOF'
import json, sys
t0, t1, t2 = (int(x) for x in sys.argv[2:])
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
revoked = [e for e in d["ended"] if e["user"] == "user7@pec.example.it" and e["at_unix_ms"] < t2]
if revoked:
    last = max(e["at_unix_ms"] for e in revoked)
    print(f"revocation: {len(revoked)} sessions of user7 ended {last - t1} ms after the CLI returned "
          f"({last - t0} ms after it started); lines: {sorted(set(e['last'] for e in revoked))}")
else:
    print("revocation: no session of user7 ended")
stopped = [e for e in d["ended"] if e["at_unix_ms"] >= t2]
print(f"after SIGTERM: {d['ended_by_server']} sessions ended by the server in all, "
      f"{d['held_to_the_end']} still open at the end; last lines seen: "
      f"{sorted(set(e['last'] for e in stopped))}")
EOF
