#!/usr/bin/env bash
# Crash consistency: SIGKILLs `writer-sync run --once` at random points of
# its apply phase, on SQLite and on PostgreSQL, checks the store after every
# kill and that the next run converges to an uninterrupted run's dump.
#   scripts/crash.sh [kills-per-backend] [users]
# PostgreSQL: WRITER_SYNC_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-60}"; users="${2:-3000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
export WRITER_SYNC_TEST_DATABASE_URL="${WRITER_SYNC_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
cargo build --quiet --bin writer-sync --example reliability
for backend in sqlite postgres; do
  echo "== crash: $backend, $kills kills, $users users"
  "$CARGO_TARGET_DIR/debug/examples/reliability" crash --backend "$backend" --kills "$kills" --users "$users"
done
