# Shared by the benchmark scripts (scale.sh, fleet.sh): a work folder, the servers they
# start (stopped by PID on exit), a Dovecot whose master user logs in as any name, a
# proxy config, and /proc readings. Source it after `cd` to the project root, with
# W_PREFIX set.

W=$(mktemp -d "/tmp/${W_PREFIX:-sentinella-bench}.XXXX")
chmod 755 "$W"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${PG_DATA:-}" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
    pg_pid=$(head -1 "$PG_DATA/postmaster.pid")
    kill -INT "$pg_pid" 2>/dev/null || true
    for _ in $(seq 200); do [ -d "/proc/$pg_pid" ] || break; sleep 0.05; done
  fi
}
trap cleanup EXIT
trap "exit 143" INT TERM
ulimit -n "$(ulimit -Hn)"
PW=Scale-passw0rd
MASTER_PW=scale-master-pw
UP=${UP:-25143}

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

# --- Dovecot: the master user may log in as any name (a static passdb) ---------------
start_dovecot() {
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
  wait_port $UP
}

config() { # dir port [store lines]: a proxy with one IMAPS listener in front of that Dovecot (UP_HOST: its address or name, 127.0.0.1)
  local port=$2 store=${3:-}
  [ -n "$store" ] || store='path = "sentinella.db"'
  echo "$MASTER_PW" > "$1/master.pass"
  cat > "$1/config.toml" <<EOF
[store]
$store
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
bind = "127.0.0.1:$port"
tls = "implicit"
upstream = "imap"
[upstream.imap]
host = "${UP_HOST:-127.0.0.1}"
port = $UP
tls = "none"
login = { mode = "master", user = "sentinella", password_file = "master.pass" }
EOF
}

