#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for FUZZ_SECONDS each (default 60), starting
# from the committed seeds (fuzz/corpus_seeds) and the growing local corpus (fuzz/corpus,
# not committed). A crash stops the run with the input saved under fuzz/artifacts/.
#
#   ./scripts/fuzz.sh                          # 60 s per target
#   FUZZ_SECONDS=3600 ./scripts/fuzz.sh        # an hour each
#   FUZZ_SECONDS=0 TARGETS=imap ./scripts/fuzz.sh   # one target until stopped (Ctrl-C)
#
# cargo-fuzz needs nightly compiler flags (sanitizers); RUSTC_BOOTSTRAP=1 enables them on
# the stable toolchain, for this build only.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=${TARGETS:-imap pop3 smtp sasl config proxy_header}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for t in $TARGETS; do
  mkdir -p "corpus/$t"
  echo "==> fuzz $t for ${SECONDS_EACH}s"
  log=$(mktemp)
  status=0
  cargo fuzz run "$t" "corpus/$t" "corpus_seeds/$t" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=1024 -max_len=16384 -timeout=10 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  # libFuzzer's progress lines are long; show the summary and anything about a finding.
  grep -E "^(#[0-9]+\s+(DONE|INITED)|==[0-9]+==|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|Test unit written|thread '.*' panicked|.*assertion|error)" "$log" || true
  rm -f "$log"
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $t FAILED (status $status): the input is under fuzz/artifacts/$t"
    exit 1
  fi
done
echo "fuzz: all targets ran ${SECONDS_EACH}s without a finding"
