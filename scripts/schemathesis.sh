#!/usr/bin/env bash
# Schema-based fuzzing of Auth and Movies with schemathesis (docs/fuzzing.md).
#
# Each service is fuzzed from its OWN committed contract (contracts/*.openapi.json):
# every operation, positive and negative examples (--mode all), every check
# (--checks all: no 5xx, response schema, status codes, content types, headers, ...),
# anonymous and with a bearer token. The services run as processes on free ports,
# on fresh databases and a fresh Redis key prefix, with rate limits raised so that
# 429s (still a documented answer) do not hide everything.
#
# Tunables (environment):
#   SCHEMATHESIS_MAX_EXAMPLES  examples per operation and phase (default 25; `make fuzz-schema` uses 500)
#   SCHEMATHESIS_SEED          Hypothesis seed (default 1, so CI is repeatable; "random" for a new one)
#   SCHEMATHESIS_WORKERS       concurrent workers of each run (default 1: CPython before 3.11.8
#                              can fail with "AST constructor recursion depth mismatch" when
#                              Hypothesis parses sources in several threads at once)
#   SCHEMATHESIS_PHASES        schemathesis phases (default examples,coverage,fuzzing,stateful)
#   SCHEMATHESIS_REPORT_DIR    JUnit reports and service logs (default target/schemathesis-report)
# Needs python3 with venv; installs schemathesis into target/schemathesis-venv from
# scripts/schemathesis/requirements.txt. Expects PostgreSQL and Redis (scripts/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROOT=$PWD

MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-25}
SEED=${SCHEMATHESIS_SEED:-1}
WORKERS=${SCHEMATHESIS_WORKERS:-1}
PHASES=${SCHEMATHESIS_PHASES:-examples,coverage,fuzzing,stateful}
REPORT_DIR=${SCHEMATHESIS_REPORT_DIR:-$ROOT/target/schemathesis-report}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$ROOT/target/schemathesis-venv
REQUIREMENTS=$ROOT/scripts/schemathesis/requirements.txt
PG_BASE=postgres://postgres@127.0.0.1:5432
PG_ADMIN=(psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atq)
RUN_ID=$(date +%s)_$$
AUTH_DB=auth_fuzz_$RUN_ID
MOVIES_DB=movies_fuzz_$RUN_ID
REDIS_PREFIX=fuzz-$RUN_ID
STARTED=$SECONDS

say() { echo "schemathesis: $*" >&2; }

# --- schemathesis, pinned --------------------------------------------------
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  else
    say "needs python3 with venv (Debian: apt-get install python3-venv)"
    exit 1
  fi
fi
STAMP=$VENV/.requirements
if [ ! -x "$VENV/bin/st" ] || ! cmp -s "$REQUIREMENTS" "$STAMP"; then
  say "installing schemathesis into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$STAMP"
fi
ST=$VENV/bin/st

# --- the services ----------------------------------------------------------
scripts/services.sh
say "building auth and movies (debug)"
cargo build --locked -q -p auth -p movies
AUTH=$TARGET_DIR/debug/auth
MOVIES=$TARGET_DIR/debug/movies

rm -rf "$REPORT_DIR"
mkdir -p "$REPORT_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/schemathesis.XXXXXX")
AUTH_PID=
MOVIES_PID=
cleanup() {
  local status=$?
  stop_pid "$MOVIES_PID" "$AUTH_PID"
  for db in "$AUTH_DB" "$MOVIES_DB"; do
    "${PG_ADMIN[@]}" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  delete_redis_keys "$REDIS_PREFIX*"
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ready() {
  local name=$1 url=$2 pid=$3
  for _ in $(seq 1 240); do
    if curl -fsS "$url" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      say "$name exited; the end of its log:"
      tail -n 30 "$REPORT_DIR/$name.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  say "$name did not become ready; see $REPORT_DIR/$name.log"
  exit 1
}

AUTH_ADDR=127.0.0.1:$(free_port)
AUTH_URL=http://$AUTH_ADDR
# An address where nothing listens: the social sign-in provider below is enabled (so
# its routes do real work) but every call to it fails fast, which the contract
# documents as 502.
DEAD=http://127.0.0.1:$(free_port)
# The movies API's credentials for Auth's introspection: a fresh secret per run.
INTROSPECTION_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
AUTH_ENV=(
  AUTH_INTROSPECTION_CLIENTS="movies:$INTROSPECTION_SECRET"
  AUTH_LISTEN="$AUTH_ADDR"
  AUTH_DATABASE_URL="$PG_BASE/$AUTH_DB"
  AUTH_DATABASE_MAX_CONNECTIONS=8
  REDIS_URL=redis://127.0.0.1:6379
  AUTH_REDIS_KEY_PREFIX="$REDIS_PREFIX-auth"
  AUTH_JWT_DEV_KEY_FILE="$WORK/auth-ed25519.pem"
  AUTH_PUBLIC_URL="$AUTH_URL"
  AUTH_RATE_LIMIT_REDIS_TIMEOUT_MS=2000
  OAUTH_YANDEX_CLIENT_ID=fuzz-client
  OAUTH_YANDEX_CLIENT_SECRET=fuzz-secret
  OAUTH_YANDEX_AUTH_URL="$DEAD/authorize"
  OAUTH_YANDEX_TOKEN_URL="$DEAD/token"
  OAUTH_YANDEX_USERINFO_URL="$DEAD/info"
  OAUTH_FRONTEND_REDIRECT_URIS=http://127.0.0.1:3000/signed-in
  RUST_LOG=${RUST_LOG:-warn}
)
# Raised, not off: the limiter and its headers stay in the path under test.
for policy in API_ANONYMOUS API_USER SIGNUP REFRESH PASSWORD_CHANGE LOGIN_IP LOGIN_ACCOUNT_IP LOGIN_ACCOUNT INTROSPECT OAUTH_AUTHORIZE OAUTH_EXCHANGE; do
  AUTH_ENV+=("AUTH_RATE_LIMIT_$policy=100000/s burst 100000")
done

say "starting auth on $AUTH_ADDR (database $AUTH_DB)"
env "${AUTH_ENV[@]}" "$AUTH" serve >"$REPORT_DIR/auth.log" 2>&1 &
AUTH_PID=$!
wait_ready auth "$AUTH_URL/health/ready" "$AUTH_PID"

MOVIES_ADDR=127.0.0.1:$(free_port)
MOVIES_URL=http://$MOVIES_ADDR
MOVIES_ENV=(
  MOVIES_LISTEN="$MOVIES_ADDR"
  MOVIES_DATABASE_URL="$PG_BASE/$MOVIES_DB"
  MOVIES_DATABASE_MAX_CONNECTIONS=8
  REDIS_URL=redis://127.0.0.1:6379
  MOVIES_REDIS_KEY_PREFIX="$REDIS_PREFIX-movies"
  AUTH_URL="$AUTH_URL"
  MOVIES_AUTH_CLIENT_SECRET="$INTROSPECTION_SECRET"
  MOVIES_RATE_LIMIT_REDIS_TIMEOUT_MS=2000
  "MOVIES_RATE_LIMIT_API_ANONYMOUS=100000/s burst 100000"
  "MOVIES_RATE_LIMIT_API_USER=100000/s burst 100000"
  RUST_LOG=${RUST_LOG:-warn}
)
say "loading the test catalogue into $MOVIES_DB"
env "${MOVIES_ENV[@]}" "$MOVIES" load-demo --file crates/movies/tests/fixtures/movies-small.json >"$REPORT_DIR/movies-load.log" 2>&1 ||
  { say "load-demo failed:"; cat "$REPORT_DIR/movies-load.log" >&2; exit 1; }
say "starting movies on $MOVIES_ADDR"
env "${MOVIES_ENV[@]}" "$MOVIES" serve >"$REPORT_DIR/movies.log" 2>&1 &
MOVIES_PID=$!
wait_ready movies "$MOVIES_URL/health/ready" "$MOVIES_PID"

# --- accounts and tokens ---------------------------------------------------
PASSWORD="fuzz-$RUN_ID-not-in-any-example"
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
signup() {
  curl -fsS "$AUTH_URL/api/v1/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$PASSWORD\",\"birth_date\":\"1990-01-01\"}" >/dev/null
}
# signed_in VAR EMAIL: signs the account in (a new session) and stores its access
# token in VAR. Stops the run when that fails: a run meant to be signed in must not
# go on as an anonymous one.
signed_in() {
  local answer
  if ! answer=$(curl -fsS "$AUTH_URL/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$2\",\"password\":\"$PASSWORD\"}" | json_field access_token) || [ -z "$answer" ]; then
    say "signing in as $2 failed; see $REPORT_DIR/auth.log"
    exit 1
  fi
  printf -v "$1" '%s' "$answer"
}
ADMIN=admin-$RUN_ID@fuzz.example
VIEWER=viewer-$RUN_ID@fuzz.example
signup "$VIEWER"
printf '%s\n' "$PASSWORD" | env "${AUTH_ENV[@]}" "$AUTH" create-superuser --email "$ADMIN" >/dev/null

# --- the runs --------------------------------------------------------------
# The movies API's introspection credentials, for `auth.toml`: token introspection is
# fuzzed as a registered client, beyond the 401 a caller without credentials gets.
export SCHEMATHESIS_INTROSPECTION_CLIENT_ID=movies SCHEMATHESIS_INTROSPECTION_SECRET=$INTROSPECTION_SECRET
SEED_ARGS=()
if [ "$SEED" != random ]; then SEED_ARGS=(--seed "$SEED"); fi
failures=()
runs=0
# fuzz NAME SERVICE URL TOKEN [extra st arguments...]: the service's own committed
# contract, its settings in scripts/schemathesis/SERVICE.toml; TOKEN may be empty.
fuzz() {
  local name=$1 service=$2 url=$3 token=$4
  shift 4
  local auth=()
  if [ -n "$token" ]; then auth=(-H "Authorization: Bearer $token"); fi
  runs=$((runs + 1))
  say "run $name: contracts/$service.openapi.json against $url${token:+ with a bearer token}"
  # From the report folder: schemathesis keeps its caches in the working directory.
  if ! (cd "$REPORT_DIR" && "$ST" --no-color --config-file "$ROOT/scripts/schemathesis/$service.toml" \
    run "$ROOT/contracts/$service.openapi.json" --url "$url" \
    --checks all --mode all --phases "$PHASES" \
    --max-examples "$MAX_EXAMPLES" "${SEED_ARGS[@]}" --workers "$WORKERS" \
    --request-timeout 30 \
    --generation-database none \
    --report junit --report-junit-path "$REPORT_DIR/$name.junit.xml" \
    "${auth[@]}" "$@"); then
    failures+=("$name")
  fi
}

# Operations that end the caller's own sessions, or would once the fuzzer guesses
# right; in the signed-in runs each gets an account and token of its own, so that it
# cannot sign the others out halfway through.
SESSION_ENDING=(logout logout_all end_session change_password)
exclude_session_ending=()
for op in "${SESSION_ENDING[@]}"; do exclude_session_ending+=(--exclude-operation-id "$op"); done

# Movies first: the signed-in Auth run below is an admin's and may change any account
# (the admin's own email, its roles; docs/fuzzing.md), after which these could not sign
# in as the viewer and the admin they are meant to be.
fuzz movies-anonymous movies "$MOVIES_URL" ""
signed_in token "$VIEWER"
fuzz movies-viewer movies "$MOVIES_URL" "$token"
signed_in token "$ADMIN"
fuzz movies-admin movies "$MOVIES_URL" "$token"

fuzz auth-anonymous auth "$AUTH_URL" ""
signed_in token "$ADMIN"
fuzz auth-admin auth "$AUTH_URL" "$token" "${exclude_session_ending[@]}"
for op in "${SESSION_ENDING[@]}"; do
  account=$op-$RUN_ID@fuzz.example
  signup "$account"
  signed_in token "$account"
  fuzz "auth-$op" auth "$AUTH_URL" "$token" --include-operation-id "$op"
done

for name in auth movies; do
  if grep -q '"level":"ERROR"\|panicked' "$REPORT_DIR/$name.log"; then
    say "$name logged errors during the run; see $REPORT_DIR/$name.log"
    grep '"level":"ERROR"\|panicked' "$REPORT_DIR/$name.log" | head -n 5 | cut -c1-400 >&2
    failures+=("$name-log")
  fi
done

elapsed=$((SECONDS - STARTED))
if [ ${#failures[@]} -gt 0 ]; then
  say "FAILED: ${failures[*]} ($runs runs, $MAX_EXAMPLES examples per operation, seed $SEED, ${elapsed}s); reports in $REPORT_DIR"
  exit 1
fi
say "$runs runs passed ($MAX_EXAMPLES examples per operation, seed $SEED, ${elapsed}s)"
