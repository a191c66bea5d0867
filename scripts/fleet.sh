#!/usr/bin/env bash
# Fleet benchmarks (BENCHMARKS.md §8): two `serve` nodes on one PostgreSQL (Debian's,
# initdb/pg_ctl in a temporary folder as the `postgres` user, fsync on) against one node
# on SQLite, in front of one Dovecot, all on this machine's cores — so the figures are the
# cost of a shared store, not a scaling figure. Measured:
#   - IMAPS logins/s at c=8 over a warm working set (SQLite: one node; fleet: c=4 on each
#     node), and the CPU of the proxies and of PostgreSQL per 1,000 logins;
#   - the statements PostgreSQL ran per login (pg_stat_statements), by statement;
#   - change to refusal across nodes, 100 times: a CLI change (IMAP off) committed through
#     node A's config, and the time until node B ends a session held open on it (BYE);
#     and 100 more, until B refuses the next login (a new connection each try); p50 / p99.
# Loopback only; every server it starts is stopped by PID on exit.
#
#   ./scripts/fleet.sh                # about 3 minutes
#   DURATION=5 CHANGES=20 ./scripts/fleet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CHANGES=${CHANGES:-100}
MAILBOXES=${MAILBOXES:-10000}
SET=${SET:-2000}

command -v bc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null
cargo build --release --quiet
BIN=${SENTINELLA_BIN:-$PWD/target/release/sentinella}  # another build to measure: SENTINELLA_BIN
LOADGEN=$PWD/target/release/sentinella-loadgen
W_PREFIX=sentinella-fleet
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
start_dovecot

# --- PostgreSQL -------------------------------------------------------------------------
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=25432
PG_DATA=$W/pg/data
mkdir -p "$W/pg"; chown postgres:postgres "$W/pg"
echo "bench-pg-pw" > "$W/pg/pw"; chown postgres "$W/pg/pw"; cp "$W/pg/pw" "$W/pg.pass"
runuser -u postgres -- "$PGBIN/initdb" -D "$PG_DATA" -U sentinella -A scram-sha-256 \
  --pwfile="$W/pg/pw" -E UTF8 >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$W/pg/log" -w \
  -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $W/pg -c shared_preload_libraries=pg_stat_statements" \
  start >/dev/null
PGPASSWORD=bench-pg-pw "$PGBIN/createdb" -h 127.0.0.1 -p $PGPORT -U sentinella sentinella
psql_() { PGPASSWORD=bench-pg-pw "$PGBIN/psql" -h 127.0.0.1 -p $PGPORT -U sentinella -d sentinella -At -c "$1"; }
psql_ "CREATE EXTENSION pg_stat_statements" >/dev/null
PG_PID=$(head -1 "$PG_DATA/postmaster.pid")
pg_cpu_s() { # the postmaster and every backend it started
  local total=0 c
  for c in $PG_PID $(cat "/proc/$PG_PID/task/$PG_PID/children"); do
    [ -f "/proc/$c/stat" ] && total=$(echo "$total + $(cpu_s "$c")" | bc)
  done
  echo "$total"
}
PGSTORE="url = \"postgres://sentinella@127.0.0.1:$PGPORT/sentinella\"
password_file = \"$W/pg.pass\"
key_file = \"$W/shared.key\""

# --- Stores: the same mailboxes, imported into SQLite and into PostgreSQL --------------
mkdir -p "$W/hash"; config "$W/hash" 25990
echo "$PW" | "$BIN" --config "$W/hash/config.toml" mailbox add seed@pec.example.it --password-stdin >/dev/null
HASH=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select password_hash from logins\").fetchone()[0])" "$W/hash/sentinella.db")
python3 - "$MAILBOXES" "$HASH" > "$W/users.passwd" <<'EOF'
import sys
n, h = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    sys.stdout.write(f"user{i}@pec.example.it:{{ARGON2ID}}{h}:1000:1000::/var/mail/user{i}::\n")
EOF
mkdir -p "$W/lite" "$W/a" "$W/b"
config "$W/lite" 25991
config "$W/a" 25992 "$PGSTORE"
config "$W/b" 25993 "$PGSTORE"
"$BIN" --config "$W/lite/config.toml" mailbox import "$W/users.passwd" >/dev/null
"$BIN" --config "$W/a/config.toml" mailbox import "$W/users.passwd" >/dev/null
# Node B uses node A's certificate (one name behind a balancer).
start_node() { # dir port
  RUST_LOG=warn "$BIN" --config "$1/config.toml" serve 2>"$1/serve.log" & PIDS+=($!)
  wait_port "$2"
}
start_node "$W/lite" 25991; LITE=${PIDS[-1]}
start_node "$W/a" 25992; A=${PIDS[-1]}
mkdir -p "$W/b/certs"; cp "$W/a/certs/"* "$W/b/certs/"
start_node "$W/b" 25993; B=${PIDS[-1]}
CERT=$W/a/certs/sentinella.crt
lg() { # port concurrency duration
  local cert=$CERT
  [ "$1" = 25991 ] && cert=$W/lite/certs/sentinella.crt
  "$LOADGEN" run --addr "127.0.0.1:$1" --cafile "$cert" --user 'user{i}@pec.example.it' \
    --password "$PW" --protocol imap --spread "$SET" --concurrency "$2" --duration "$3"
}
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

echo "# Sentinella fleet benchmarks, $(date -u +%FT%TZ), $(nproc) cores, runs of ${DURATION}s, $MAILBOXES mailboxes, working set $SET"

# --- One node on SQLite ------------------------------------------------------------------
lg 25991 8 $(( SET / 70 + 5 )) >/dev/null
c0=$(cpu_s $LITE)
out=$(lg 25991 8 "$DURATION")
c1=$(cpu_s $LITE)
n=$(echo "$out" | field accepted); rate=$(echo "$out" | field logins_per_s)
printf 'sqlite, 1 node, c=8:       logins/s %7s  proxy CPU/1000 logins %ss\n' "$rate" \
  "$(echo "scale=3; ($c1 - $c0) * 1000 / $n" | bc)"
kill -TERM $LITE

# --- Two nodes on PostgreSQL -------------------------------------------------------------
lg 25992 4 $(( SET / 70 + 5 )) >/dev/null & w=$!; lg 25993 4 $(( SET / 70 + 5 )) >/dev/null; wait $w
psql_ "SELECT pg_stat_statements_reset()" >/dev/null
ca0=$(cpu_s $A); cb0=$(cpu_s $B); cp0=$(pg_cpu_s)
lg 25992 4 "$DURATION" > "$W/ra.json" & w=$!; lg 25993 4 "$DURATION" > "$W/rb.json"; wait $w
ca1=$(cpu_s $A); cb1=$(cpu_s $B); cp1=$(pg_cpu_s)
na=$(field accepted < "$W/ra.json"); nb=$(field accepted < "$W/rb.json")
ra=$(field logins_per_s < "$W/ra.json"); rb=$(field logins_per_s < "$W/rb.json")
n=$(( na + nb ))
printf 'postgres, 2 nodes, c=4+4: logins/s %7s (%s + %s)  proxies CPU/1000 logins %ss  PostgreSQL CPU/1000 logins %ss\n' \
  "$(echo "$ra + $rb" | bc)" "$ra" "$rb" \
  "$(echo "scale=3; ($ca1 - $ca0 + $cb1 - $cb0) * 1000 / $n" | bc)" \
  "$(echo "scale=3; ($cp1 - $cp0) * 1000 / $n" | bc)"
echo "statements PostgreSQL ran per login (warm cache, $n logins):"
psql_ "SELECT to_char(sum(calls)::numeric / $n, 'FM990.000') || '  total' FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'"
psql_ "SELECT to_char(calls::numeric / $n, 'FM990.000') || '  ' || left(regexp_replace(query, '\s+', ' ', 'g'), 90)
       FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC LIMIT 8" | sed 's/^/  /'

# --- Change to refusal across nodes ------------------------------------------------------
python3 - "$BIN" "$W/a/config.toml" 25993 "$CERT" "$PW" "$CHANGES" <<'EOF'
import imaplib, socket, ssl, subprocess, sys, time
bin_, cfg, port, cert, pw, changes = sys.argv[1:]
ctx = ssl.create_default_context(cafile=cert); ctx.check_hostname = False
def login(user):
    c = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx, timeout=10)
    try:
        c.login(user, pw); c.logout(); return True
    except imaplib.IMAP4.error:
        return False
def cli(*args):
    subprocess.run([bin_, "--config", cfg, *args], check=True, capture_output=True)
bye, refused = [], []
for i in range(int(changes)):
    # A session held open on B, ended by a change made through A.
    user = f"user{9000 + i}@pec.example.it"
    held = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx, timeout=10)
    held.login(user, pw)
    held.sock.settimeout(5)
    cli("mailbox", "protocols", user, "--disable", "imap")
    t = time.monotonic()
    try:
        line = held.readline()
    except (socket.timeout, OSError):
        line = b""
    if line.startswith(b"* BYE"):
        bye.append((time.monotonic() - t) * 1000)
    # A login on B (its name cached there), retried until a change made through A
    # refuses it.
    user = f"user{8000 + i}@pec.example.it"
    assert login(user)
    cli("mailbox", "protocols", user, "--disable", "imap")
    t = time.monotonic()
    while login(user):
        if time.monotonic() - t > 10:
            break
    refused.append((time.monotonic() - t) * 1000)
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
print(f"change on A -> session on B ended (BYE): n={len(bye)}/{changes}  p50 {pct(bye, 50):.1f} ms  p99 {pct(bye, 99):.1f} ms  max {max(bye):.1f} ms")
print(f"change on A -> next login on B refused: n={len(refused)}  p50 {pct(refused, 50):.1f} ms  p99 {pct(refused, 99):.1f} ms")
EOF
