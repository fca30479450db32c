#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against the real
# PostgreSQL and Redis, which this script installs and starts when needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export RUST_LOG=${RUST_LOG:-warn}
cargo test --workspace --locked --no-fail-fast
