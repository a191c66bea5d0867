#!/usr/bin/env bash
# Runs every test of Sentinella: installs what the tests need if it is missing, checks
# formatting and lints, then runs the whole suite (unit, CLI end-to-end, integration).
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh cli        # extra arguments go to the test runner (a filter, …)
#
# CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive (real servers and clients). Installed with apt-get when
# missing; as root that just works, otherwise through sudo.
# PostgreSQL: the fleet tests run their own server (initdb/pg_ctl in a temporary folder).
DEBS=(dovecot-imapd dovecot-pop3d dovecot-submissiond swaks libnet-ssleay-perl curl python3 python3-pip ca-certificates openssl chromium haproxy postgresql zbar-tools)

missing=()
for pkg in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "==> installing test dependencies: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # PostgreSQL's package would create and start a cluster of its own on port 5432: the
  # tests need only its programs.
  $sudo mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/sentinella-tests.conf >/dev/null
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# From PyPI: the SMTP sink the tests deliver to (aiosmtpd), Playwright, which drives
# Debian's Chromium for the web page's tests (its own browser download is never used),
# and jsonschema, which checks the API's answers against its OpenAPI document.
for mod in aiosmtpd playwright jsonschema; do
  if ! python3 -c "import $mod" 2>/dev/null; then
    echo "==> installing $mod from PyPI"
    python3 -m pip install --quiet "$mod" 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages "$mod"
  fi
done

echo "==> cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings

# The fuzz targets' corpora are replayed by the suite itself (tests/it/fuzz_corpus.rs,
# the same properties as the fuzz targets); fuzzing under ASAN is ./scripts/fuzz.sh.

if cargo nextest --version >/dev/null 2>&1; then
  echo "==> cargo nextest run"
  cargo nextest run --all-targets --no-fail-fast "$@"
else
  echo "==> cargo test (cargo-nextest not installed)"
  cargo test --all-targets --no-fail-fast "$@"
fi
