#!/usr/bin/env bash
# Fault soak and large input, through the real binary against the simulator:
#   faults: random mixes of 5xx, 429, concurrency 429, resets, slow
#           responses, truncated bodies, foreign next links and repeated
#           cursors; each run must succeed with the clean-run state or fail
#           with the store unchanged.
#   large:  one pushed group with N members, odd profiles mixed in.
#   scripts/soak.sh [fault-runs] [group-members]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-100}"; members="${2:-100000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
export WRITER_SYNC_TEST_DATABASE_URL="${WRITER_SYNC_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
cargo build --quiet --bin writer-sync --example reliability
bin="$CARGO_TARGET_DIR/debug/examples/reliability"
for backend in sqlite postgres; do
  echo "== faults: $backend, $runs runs"
  "$bin" faults --backend "$backend" --runs "$runs" --users 1500
done
echo "== large: a group of $members members (sqlite)"
"$bin" large --backend sqlite --members "$members"
