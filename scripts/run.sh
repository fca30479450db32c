#!/usr/bin/env bash
# Runs the system locally: PostgreSQL and Redis (installed and started when needed),
# then the services on a release build. Ctrl-C stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh

# Settings come from .env when present (see .env.example), else the defaults.
if [ -f .env ]; then set -a; . ./.env; set +a; fi
export RUST_LOG=${RUST_LOG:-info}
# The movies API authenticates to Auth's token introspection with a client id and
# secret (docs/auth.md, "Introspection"). Unless .env sets both sides, a random secret
# for this run only, given to both services.
if [ -z "${MOVIES_AUTH_CLIENT_SECRET:-}" ] && [ -z "${AUTH_INTROSPECTION_CLIENTS:-}" ]; then
  MOVIES_AUTH_CLIENT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
  AUTH_INTROSPECTION_CLIENTS="${MOVIES_AUTH_CLIENT_ID:-movies}:$MOVIES_AUTH_CLIENT_SECRET"
elif [ -z "${MOVIES_AUTH_CLIENT_SECRET:-}" ] || [ -z "${AUTH_INTROSPECTION_CLIENTS:-}" ]; then
  echo "run: .env sets only one of MOVIES_AUTH_CLIENT_SECRET and AUTH_INTROSPECTION_CLIENTS; set both, or neither" >&2
  exit 1
fi
export MOVIES_AUTH_CLIENT_SECRET AUTH_INTROSPECTION_CLIENTS
AUTH_LISTEN=${AUTH_LISTEN:-127.0.0.1:8000}
MOVIES_LISTEN=${MOVIES_LISTEN:-127.0.0.1:8001}

echo "run: building (release)"
cargo build --release --locked -p auth -p movies

mkdir -p .run
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

wait_ready() {
  local name=$1 url=$2 pid=$3
  for _ in $(seq 1 120); do
    if curl -fsS "$url" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run: $name exited; last log lines:" >&2; tail -n 20 ".run/$name.log" >&2; exit 1
    fi
    sleep 0.5
  done
  echo "run: $name did not become ready; see .run/$name.log" >&2; exit 1
}

target/release/auth migrate
target/release/auth serve >.run/auth.log 2>&1 &
pids+=($!)
wait_ready auth "http://$AUTH_LISTEN/health/ready" "${pids[-1]}"

target/release/movies migrate
# Load the demo catalogue on first run.
if [ "$(psql "${MOVIES_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/movies}" -Atc 'select count(*) from films')" = 0 ]; then
  target/release/movies load-demo
fi
target/release/movies serve >.run/movies.log 2>&1 &
pids+=($!)
wait_ready movies "http://$MOVIES_LISTEN/health/ready" "${pids[-1]}"

cat <<MSG

  Auth API      http://$AUTH_LISTEN/api/v1
  Auth docs     http://$AUTH_LISTEN/api/docs/
  JWKS          http://$AUTH_LISTEN/.well-known/jwks.json
  Movies API    http://$MOVIES_LISTEN/api/v1/films
  Movies docs   http://$MOVIES_LISTEN/api/docs/
  Logs          .run/*.log

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}"
