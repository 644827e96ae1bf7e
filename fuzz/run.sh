#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) with
# cargo-fuzz (libFuzzer, nightly). Crashes are kept under fuzz/artifacts/;
# copy each into fuzz/regressions/<target>/ so `cargo test` replays it
# (tests/fuzz_regressions.rs).
#   fuzz/run.sh [seconds-per-target] [target...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(wire link_header config)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || { echo "cargo-fuzz needs a nightly toolchain (rustup toolchain install nightly)"; exit 2; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
mkdir -p corpus
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  # Seed corpora: the recorded fixtures and the regression inputs.
  case "$t" in
    wire) cp ../tests/fixtures/okta/spec-examples/*.json "corpus/$t/" 2>/dev/null || true ;;
    config) cp ../config.example.toml "corpus/$t/example.toml" ;;
    link_header) printf '<https://acme.okta.com/api/v1/users?after=00u1&limit=200>; rel="next"' > "corpus/$t/okta" ;;
  esac
  cp regressions/"$t"/* "corpus/$t/" 2>/dev/null || true
  echo "== $t: ${secs}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 2>&1 \
    | tee "/tmp/fuzz-$t.log" | grep -E '^#[0-9]+.*DONE|Done [0-9]+ runs|SUMMARY|ERROR|panicked' || true
done
