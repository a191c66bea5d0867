#!/usr/bin/env bash
# End-to-end benchmarks (BENCHMARKS.md): Dovecot direct with an argon2id passdb (a),
# Dovecot direct with no hashing (b), and Sentinella in front of (b) with argon2id app
# passwords and a warm cache (c); IMAPS, POP3S and SMTPS at 8 and 64 clients; then the
# attack, relay and memory scenarios. Loopback only; every run bounded; every server it
# starts is stopped by PID on exit. Needs root (Dovecot) and the test packages
# (./scripts/test.sh installs them).
#
#   ./scripts/bench.sh                 # everything (about 10 minutes)
#   DURATION=5 ./scripts/bench.sh      # shorter runs
#   ONLY=logins|attack|relay|memory|nginx ./scripts/bench.sh
#
# ONLY=nginx (not part of "all"): the proxy CPU per login of Sentinella and of nginx's
# mail proxy (Debian's nginx + libnginx-mod-mail, installed if missing) in front of the
# same Dovecot (b), same certificate, TLS 1.3, c=8, each against its own TLS floor
# (handshake + greeting only). nginx's auth_http is a location on the same nginx that
# answers Auth-Status OK (its cost is in nginx's figure, as it would be in production).
# s-paced is Sentinella's floor measured again at the pace its logins ran (loadgen
# --rate): a login at ~150/s wakes idle threads at each event, a floor at full speed
# batches them; p-ratio compares a login with the floor at the same pace.
# NGINX_SMTP_AUTH=on|off (default on): nginx logs in to the submission upstream with
# AUTH PLAIN as Sentinella does (`proxy_smtp_auth`); off, it only says EHLO upstream and
# relies on the upstream trusting its address — one round trip less than Sentinella.
#
# HISTORY_SYNC=normal|full|journal sets Sentinella's [store] history_sync (default normal);
# RUNTIME_SESSIONS=per-core|shared its [runtime] sessions (default per-core).
# SERVE_ENV="NAME=value …" adds environment to Sentinella's serve (e.g. RUST_LOG=info
# to price the log lines, TOKIO_WORKER_THREADS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ONLY=${ONLY:-all}
SESSIONS=${SESSIONS:-5000}
HISTORY_SYNC=${HISTORY_SYNC:-normal}
RUNTIME_SESSIONS=${RUNTIME_SESSIONS:-per-core}
NGINX_SMTP_AUTH=${NGINX_SMTP_AUTH:-on}

cargo build --release --quiet
BIN=${SENTINELLA_BIN:-$PWD/target/release/sentinella}  # another build to measure: SENTINELLA_BIN
LOADGEN=$PWD/target/release/sentinella-loadgen
W=$(mktemp -d /tmp/sentinella-bench.XXXX)
chmod 755 "$W"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

USER_ADDR=mario.rossi@pec.example.it
PW=Bench-passw0rd
MASTER_PW=bench-master-pw

# Ports: a = 21xxx, b = 31xxx, sentinella = 24xxx — all below the ephemeral range
# (32768-60999), where a client's source port left in TIME-WAIT can hold one.
A_IMAPS=21993; A_POP3S=21995; A_SMTPS=21465
B_IMAPS=31993; B_POP3S=31995; B_SMTPS=31465; B_IMAP=31143; B_POP3=31110; B_SUB=31587
S_IMAPS=24993; S_POP3S=24995; S_SMTPS=24465
SINK=32025

# --- Sentinella first: its first run writes the certificate everyone uses. -----------
mkdir -p "$W/s"
echo "$MASTER_PW" > "$W/s/master.pass"
cat > "$W/s/config.toml" <<EOF
[store]
path = "sentinella.db"
history_sync = "$HISTORY_SYNC"
[runtime]
sessions = "$RUNTIME_SESSIONS"
[limits]
max_connections = 20000
preauth_timeout = "120s"
[[listener]]
name = "imaps"
protocol = "imap"
bind = "127.0.0.1:$S_IMAPS"
tls = "implicit"
upstream = "imap"
[[listener]]
name = "pop3s"
protocol = "pop3"
bind = "127.0.0.1:$S_POP3S"
tls = "implicit"
upstream = "pop3"
[[listener]]
name = "submissions"
protocol = "smtp"
bind = "127.0.0.1:$S_SMTPS"
tls = "implicit"
upstream = "smtp"
[upstream.imap]
host = "127.0.0.1"
port = $B_IMAP
tls = "none"
login = { mode = "master", user = "sentinella", password_file = "master.pass" }
[upstream.pop3]
host = "127.0.0.1"
port = $B_POP3
tls = "none"
login = { mode = "master", user = "sentinella", password_file = "master.pass" }
[upstream.smtp]
host = "127.0.0.1"
port = $B_SUB
tls = "none"
login = { mode = "master", user = "sentinella", password_file = "master.pass" }
EOF
env RUST_LOG=warn ${SERVE_ENV:-} "$BIN" --config "$W/s/config.toml" serve 2>"$W/s/serve.log" & SPID=$!
PIDS+=("$SPID")
for _ in $(seq 100); do [ -f "$W/s/certs/sentinella.crt" ] && break; sleep 0.1; done
CERT=$W/s/certs/sentinella.crt
KEY=$W/s/certs/sentinella.key

# --- the SMTP sink Dovecot's submission relays to --------------------------------------
mkdir -p "$W/sink"
python3 tests/clients/smtp_sink.py --port $SINK --dir "$W/sink" & PIDS+=($!)

# --- Dovecot (a): argon2id passdb, same cost as Sentinella (m=19456 KiB, t=2, p=1) ------
dovecot_conf() { # name passwd-line imaps pop3s smtps extra-listeners
  local d=$W/$1
  mkdir -p "$d/run" "$d/mail"; chown dovecot:dovecot "$d/mail"
  echo "$2" > "$d/users"
  echo "sentinella:{PLAIN}$MASTER_PW::::::" > "$d/masters"
  cat > "$d/dovecot.conf" <<EOF
base_dir = $d/run
state_dir = $d/run
log_path = $d/dovecot.log
protocols = imap pop3 submission
listen = 127.0.0.1
ssl = yes
ssl_cert = <$CERT
ssl_key = <$KEY
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
hostname = dovecot.bench
submission_relay_host = 127.0.0.1
submission_relay_port = $SINK
submission_relay_trusted = yes
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
  driver = passwd-file
  args = $d/users
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=$d/mail/%u
}
protocol imap {
  mail_max_userip_connections = 20000
}
service imap {
  process_limit = 6000
}
service imap-login {
  inet_listener imap {
    port = ${6:-0}
  }
  inet_listener imaps {
    port = $3
  }
}
service pop3-login {
  inet_listener pop3 {
    port = ${7:-0}
  }
  inet_listener pop3s {
    port = $4
  }
}
service submission-login {
  inet_listener submission {
    port = ${8:-0}
  }
  inet_listener submissions {
    port = $5
    ssl = yes
  }
}
service anvil {
  chroot =
}
EOF
  dovecot -F -c "$d/dovecot.conf" 2>"$d/stderr.log" & PIDS+=($!)
}
ARGON=$(echo "$PW" | "$LOADGEN" hash)
dovecot_conf a "$USER_ADDR:{ARGON2ID}$ARGON::::::" $A_IMAPS $A_POP3S $A_SMTPS
dovecot_conf b "$USER_ADDR:{PLAIN}$PW::::::" $B_IMAPS $B_POP3S $B_SMTPS $B_IMAP $B_POP3 $B_SUB
for port in $A_IMAPS $B_IMAPS $B_IMAP $S_IMAPS; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

# --- the mailbox in Sentinella: 2FA on, an app password --------------------------------
S() { "$BIN" --config "$W/s/config.toml" "$@"; }
echo "$PW" | S mailbox add "$USER_ADDR" --password-stdin >/dev/null
URI=$(S --json 2fa enable "$USER_ADDR" | python3 -c 'import json,sys; print(json.load(sys.stdin)["otpauth_uri"])')
CODE=$(python3 - "$URI" <<'EOF'
import base64, hashlib, hmac, re, struct, sys, time
s = re.search(r"secret=([A-Z2-7]+)", sys.argv[1]).group(1)
key = base64.b32decode(s + "=" * (-len(s) % 8))
h = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
o = h[-1] & 15
print("%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % 1000000))
EOF
)
S 2fa confirm "$USER_ADDR" "$CODE" >/dev/null
APP=$(S --json app-password generate "$USER_ADDR" | python3 -c 'import json,sys; print(json.load(sys.stdin)["password"])')

lg() { "$LOADGEN" "$@"; }
run() { # label protocol port password concurrency [extra]
  local out
  out=$(lg run --addr "127.0.0.1:$3" --cafile "$CERT" --user "$USER_ADDR" --password "$4" \
        --protocol "$2" --concurrency "$5" --duration "$DURATION" "${@:6}")
  printf '%-34s %s\n' "$1" "$out"
}

echo "# Sentinella benchmarks, $(date -u +%FT%TZ), $(nproc) cores, duration ${DURATION}s"
if [ "$ONLY" = all ] || [ "$ONLY" = logins ]; then
  # Warm Sentinella's verification cache (one login per protocol).
  for p in "imap $S_IMAPS" "pop3 $S_POP3S" "smtp $S_SMTPS"; do
    set -- $p; lg run --addr 127.0.0.1:$2 --cafile "$CERT" --user "$USER_ADDR" --password "$APP" --protocol $1 --concurrency 1 --duration 1 >/dev/null
  done
  for proto in imap pop3 smtp; do
    case $proto in imap) pa=$A_IMAPS pb=$B_IMAPS ps=$S_IMAPS;; pop3) pa=$A_POP3S pb=$B_POP3S ps=$S_POP3S;; smtp) pa=$A_SMTPS pb=$B_SMTPS ps=$S_SMTPS;; esac
    for c in 8 64; do
      run "(a) dovecot argon2id $proto c=$c" $proto $pa "$PW" $c
      run "(b) dovecot plain    $proto c=$c" $proto $pb "$PW" $c
      run "(c) sentinella       $proto c=$c" $proto $ps "$APP" $c
    done
  done
fi

if [ "$ONLY" = all ] || [ "$ONLY" = attack ]; then
  run "(c) unloaded imap c=8" imap $S_IMAPS "$APP" 8
  lg run --addr 127.0.0.1:$S_IMAPS --cafile "$CERT" --user "$USER_ADDR" --password x --protocol imap \
     --concurrency 64 --duration $((DURATION + 4)) --sources 64 --wrong > "$W/attack.json" & ATTACK=$!
  sleep 2
  run "(c) under attack imap c=8" imap $S_IMAPS "$APP" 8
  wait $ATTACK
  printf '%-34s %s\n' "    the attackers (64, wrong pw)" "$(cat "$W/attack.json")"
fi

if [ "$ONLY" = all ] || [ "$ONLY" = relay ]; then
  python3 - "$W/big.eml" <<'EOF'
import sys
body = b"".join(b"%08d Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n" % i for i in range(112000))
open(sys.argv[1], "wb").write(b"From: a@b.it\r\nTo: c@d.it\r\nSubject: 10 MB\r\n\r\n" + body)
EOF
  python3 - "$W/big.eml" $B_IMAP "$USER_ADDR" "$MASTER_PW" <<'EOF'
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[2]), timeout=60)
m.authenticate("PLAIN", lambda _: f"{sys.argv[3]}\0sentinella\0{sys.argv[4]}".encode())
m.append("INBOX", None, None, open(sys.argv[1], "rb").read())
m.logout()
EOF
  printf '%-34s %s\n' "relay direct dovecot (TLS)" "$(lg fetch --addr 127.0.0.1:$B_IMAPS --cafile "$CERT" --user "$USER_ADDR" --password "$PW" --repeat 10)"
  printf '%-34s %s\n' "relay via sentinella (TLS)" "$(lg fetch --addr 127.0.0.1:$S_IMAPS --cafile "$CERT" --user "$USER_ADDR" --password "$APP" --repeat 10)"
fi

if [ "$ONLY" = all ] || [ "$ONLY" = memory ]; then
  rss() { awk '/VmRSS/ {print $2}' /proc/$SPID/status; }
  # A few sessions first, so one-time allocations (TLS, argon2 arenas, caches) are in
  # the baseline and the figure is the cost of each further session. Sessions come from
  # 64 source addresses (limits.max_connections_per_address is 100 by default), not the
  # attack scenario's (it got those blocked).
  lg idle --addr 127.0.0.1:$S_IMAPS --cafile "$CERT" --user "$USER_ADDR" --password "$APP" --sessions 64 --hold 1 >/dev/null
  before=$(rss)
  lg idle --addr 127.0.0.1:$S_IMAPS --cafile "$CERT" --user "$USER_ADDR" --password "$APP" --sessions "$SESSIONS" --sources 64 --first-source 1000 --hold 15 > "$W/idle.json" & IDLE=$!
  peak=$before
  while kill -0 $IDLE 2>/dev/null; do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.5; done
  wait $IDLE || true
  open=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["open"])' "$W/idle.json")
  [ "$open" -lt "$SESSIONS" ] && echo "memory: only $open of $SESSIONS sessions opened" >&2
  echo "memory: rss before ${before} KiB, with $open idle sessions ${peak} KiB, per session $(( (peak - before) / (open > 0 ? open : 1) )) KiB"
fi

if [ "$ONLY" = nginx ]; then
  command -v bc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null
  if ! [ -f /usr/lib/nginx/modules/ngx_mail_module.so ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-mail >/dev/null
  fi
  # Below the ephemeral range (32768-60999), where a client's source port can hold one.
  N_IMAPS=26993; N_POP3S=26995; N_SMTPS=26465; N_AUTH=26080
  mkdir -p "$W/nginx/logs"
  cat > "$W/nginx/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_mail_module.so;
worker_processes $(nproc);
pid $W/nginx/nginx.pid;
error_log $W/nginx/logs/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $W/nginx/body;
  proxy_temp_path $W/nginx/proxy;
  fastcgi_temp_path $W/nginx/fastcgi;
  uwsgi_temp_path $W/nginx/uwsgi;
  scgi_temp_path $W/nginx/scgi;
  map \$http_auth_protocol \$backend_port {
    imap $B_IMAP;
    pop3 $B_POP3;
    smtp $B_SUB;
  }
  server {
    listen 127.0.0.1:$N_AUTH;
    location = /auth {
      add_header Auth-Status OK;
      add_header Auth-Server 127.0.0.1;
      add_header Auth-Port \$backend_port;
      return 204;
    }
  }
}
mail {
  server_name nginx.bench;
  auth_http 127.0.0.1:$N_AUTH/auth;
  ssl_certificate $CERT;
  ssl_certificate_key $KEY;
  ssl_protocols TLSv1.3;
  xclient off;
  proxy_smtp_auth $NGINX_SMTP_AUTH;
  smtp_auth plain login;
  pop3_auth plain;
  server { listen 127.0.0.1:$N_IMAPS ssl; protocol imap; }
  server { listen 127.0.0.1:$N_POP3S ssl; protocol pop3; }
  server { listen 127.0.0.1:$N_SMTPS ssl; protocol smtp; }
}
NGINX
  nginx -c "$W/nginx/nginx.conf" -p "$W/nginx" -g 'daemon off;' 2>"$W/nginx/stderr.log" & NPID=$!
  PIDS+=("$NPID")
  for port in $N_IMAPS $N_POP3S $N_SMTPS; do
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  done
  # CPU seconds of a process and its children (nginx: the master and its workers).
  tree_cpu() {
    local total=0 pid
    for pid in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
      total=$(awk -v t="$total" '{printf "%.2f", t + ($14 + $15) / 100}' "/proc/$pid/stat")
    done
    echo "$total"
  }
  per_login() { # pid protocol port password [extra]: proxy CPU ms per accepted connection
    local c0 c1 out n
    c0=$(tree_cpu "$1")
    out=$(lg run --addr "127.0.0.1:$3" --cafile "$CERT" --user "$USER_ADDR" --password "$4" \
          --protocol "$2" --concurrency 8 --duration "$DURATION" "${@:5}")
    c1=$(tree_cpu "$1")
    n=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accepted"])')
    echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["logins_per_s"])' >"$W/rate"
    if [ "$n" -gt 0 ]; then echo "scale=3; ($c1 - $c0) * 1000 / $n" | bc; else echo "0"; fi
  }
  ratio() { if [ "$(echo "$2 > 0" | bc)" = 1 ]; then echo "scale=2; $1 / $2" | bc; else echo "-"; fi; }
  # Warm Sentinella's verification cache.
  for p in "imap $S_IMAPS" "pop3 $S_POP3S" "smtp $S_SMTPS"; do
    set -- $p; lg run --addr 127.0.0.1:$2 --cafile "$CERT" --user "$USER_ADDR" --password "$APP" --protocol $1 --concurrency 1 --duration 1 >/dev/null
  done
  echo "# proxy CPU per connection (ms), c=8, ${DURATION}s each, history_sync = $HISTORY_SYNC, nginx proxy_smtp_auth $NGINX_SMTP_AUTH, load $(cut -d' ' -f1-3 /proc/loadavg)"
  # s-paced: Sentinella's floor again, its handshakes started at the pace its logins just
  # ran (logins/s) — the same wake-ups per connection as a login, none of its work.
  printf '%-6s %9s %9s %7s %9s %7s %9s %9s %7s %9s\n' proto s-floor s-login s-ratio s-paced p-ratio \
    n-floor n-login n-ratio s/n
  for proto in imap pop3 smtp; do
    case $proto in imap) ps=$S_IMAPS pn=$N_IMAPS;; pop3) ps=$S_POP3S pn=$N_POP3S;; smtp) ps=$S_SMTPS pn=$N_SMTPS;; esac
    sf=$(per_login "$SPID" $proto $ps "$APP" --greeting-only)
    sl=$(per_login "$SPID" $proto $ps "$APP")
    sp=$(per_login "$SPID" $proto $ps "$APP" --greeting-only --rate "$(cat "$W/rate")")
    nf=$(per_login "$NPID" $proto $pn "$PW" --greeting-only)
    nl=$(per_login "$NPID" $proto $pn "$PW")
    printf '%-6s %9s %9s %7s %9s %7s %9s %9s %7s %9s\n' $proto "$sf" "$sl" "$(ratio "$sl" "$sf")" \
      "$sp" "$(ratio "$sl" "$sp")" "$nf" "$nl" "$(ratio "$nl" "$nf")" "$(ratio "$sl" "$nl")"
  done
fi
