#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against the real
# PostgreSQL and Redis, which this script installs and starts when needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export RUST_LOG=${RUST_LOG:-warn}
status=0
# The independent OpenID provider of Auth's Google sign-in test (oauth2-mock-server),
# which needs Node.js 22.12 or later: the system's, or one installed under target/ from
# PyPI when that is missing or older (scripts/node.sh; Debian 12 has 18).
source scripts/node.sh
if ensure_node; then
  npm ci --prefix crates/auth/tests/oidc --no-audit --no-fund --loglevel=error || status=$?
else
  echo "test: no Node.js 22.12 or later; Auth's Google test against a real OpenID provider will fail." >&2
  status=1
fi
# That the fallback works where there is no node, or Debian 12's.
scripts/node_test.sh || status=$?
cargo test --workspace --locked --no-fail-fast || status=$?
# The deployment without Docker: compose.yaml and the Dockerfiles checked, Debian's nginx
# with the stack's configuration run in front of the services (deploy/tests/run.sh).
deploy/tests/run.sh || status=$?
# Schema fuzzing of both services from their own contracts, a bounded number of examples
# per operation (docs/fuzzing.md; `make fuzz-schema` runs the longer one).
scripts/schemathesis.sh || status=$?
exit "$status"
