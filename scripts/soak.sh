#!/usr/bin/env bash
# The soak run: Auth and Movies (release builds) under a mixed, realistic load for
# SOAK_DURATION seconds (10 minutes by default), reporting throughput, p50/p99/p99.9
# per operation, errors (target: zero 5xx) and both services' resident set over time
# (target: no growth after the warm-up). Writes its section of docs/benchmarks.md,
# between the soak:start and soak:end markers, leaving the other sections alone.
#
# The load (crates/loadgen/src/soak.rs): open loop, Poisson arrivals; virtual users
# each with an account and a session browse the catalogue with their bearer token
# (lists, details, searches with real and misspelt title words, persons, streams),
# read their account, refresh their tokens (rotating), sign out and in again now and
# then, and one task signs in with a wrong password to a dedicated account.
#
# Tunables (environment): SOAK_DURATION (seconds, default 600), SOAK_WARMUP (seconds
# before the memory baseline, default 20 % of the duration), SOAK_SAMPLE (seconds
# between samples, default 10), SOAK_RATE (requests/s in total, default 400),
# SOAK_USERS (default 32), SOAK_AUTH_CONNECTIONS (default 8), SOAK_SIGN_IN_RATE
# (sign-ins/s, default 2), SOAK_WRONG_PASSWORD_RATE (default 0.2), SOAK_REFRESH_EVERY
# (requests of a user between refreshes, default 100), SOAK_LOADGEN_THREADS (default 1),
# SOAK_QUIET_WAIT (seconds to wait for other work on the machine to stop, default 45),
# SOAK_OUTPUT (default docs/benchmarks.md), SOAK_RATE_LIMITS: "raised" (default: Auth's
# limits run, set too high to reject the load, which comes from one address, except the
# per-account sign-in limits, kept at their defaults so the wrong passwords meet them)
# or "off" (AUTH_RATE_LIMIT_ENABLED=false; the wrong passwords then all get 401); Movies'
# limits, in builds that have them, are raised or turned off alike,
# SOAK_PG_SSLMODE (default disable, as in the deployment).
#
# Exit status: 0 when both targets are met, 1 when one is not (the report is written
# either way), 2 and up when the run could not be made.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DURATION=${SOAK_DURATION:-600}
WARMUP=${SOAK_WARMUP:-}
SAMPLE=${SOAK_SAMPLE:-10}
RATE=${SOAK_RATE:-400}
USERS=${SOAK_USERS:-32}
AUTH_CONNECTIONS=${SOAK_AUTH_CONNECTIONS:-8}
SIGN_IN_RATE=${SOAK_SIGN_IN_RATE:-2}
WRONG_PASSWORD_RATE=${SOAK_WRONG_PASSWORD_RATE:-0.2}
REFRESH_EVERY=${SOAK_REFRESH_EVERY:-100}
LOADGEN_THREADS=${SOAK_LOADGEN_THREADS:-1}
QUIET_WAIT=${SOAK_QUIET_WAIT:-45}
OUTPUT=${SOAK_OUTPUT:-docs/benchmarks.md}
RATE_LIMITS=${SOAK_RATE_LIMITS:-raised}
# The deployment's PostgreSQL (the official image) has no TLS, so the services talk to
# it in plain text; this machine's Debian cluster offers TLS, which sqlx would take.
PG_SSLMODE=${SOAK_PG_SSLMODE:-disable}
AUTH_DATABASE=auth_soak
MOVIES_DATABASE=movies_soak
# Fresh Redis keys each run: rate-limit and cache state of an earlier run would skew this one.
REDIS_PREFIX=soak-$(date +%s)-$$
PG_ADMIN=(psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atq)

say() { echo "soak: $*" >&2; }

scripts/services.sh

say "building auth, movies and loadgen (release)"
cargo build --release -q -p auth -p movies -p loadgen
AUTH=${CARGO_TARGET_DIR:-target}/release/auth
MOVIES=${CARGO_TARGET_DIR:-target}/release/movies
LOADGEN=${CARGO_TARGET_DIR:-target}/release/loadgen

WORK=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")
AUTH_PID=
MOVIES_PID=
cleanup() {
  local status=$?
  stop_pid "$MOVIES_PID" "$AUTH_PID"
  for database in "$AUTH_DATABASE" "$MOVIES_DATABASE"; do
    "${PG_ADMIN[@]}" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
  done
  delete_redis_keys "$REDIS_PREFIX*"
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ends the run when a service has died, with the end of its log.
check_alive() {
  local name=$1 pid=$2
  if ! kill -0 "$pid" 2>/dev/null; then
    say "$name died; the end of its log:"
    tail -n 40 "$WORK/$name.log" >&2
    exit 2
  fi
}

RATE_LIMIT_ENV=()
case $RATE_LIMITS in
  raised)
    # Not LOGIN_ACCOUNT_IP and LOGIN_ACCOUNT: the per-account rules stay as deployed.
    # Successful sign-ins give their attempt back, so only the wrong passwords meet them.
    for policy in API_ANONYMOUS API_USER SIGNUP REFRESH PASSWORD_CHANGE LOGIN_IP INTROSPECT; do
      RATE_LIMIT_ENV+=("AUTH_RATE_LIMIT_$policy=1000000/s burst 1000000")
    done
    RATE_LIMIT_NOTE="Auth's rate limits on, the per-address, per-user and per-client (introspection) ones raised to 1,000,000/s so that they never reject the load (which all comes from one address and one Movies client), the per-account sign-in limits at their defaults (\`5/15m\` per account and address, \`50/h\` per account), which only the wrong-password sign-ins meet" ;;
  off)
    RATE_LIMIT_ENV=(AUTH_RATE_LIMIT_ENABLED=false)
    RATE_LIMIT_NOTE="Auth's rate limits off (\`AUTH_RATE_LIMIT_ENABLED=false\`)" ;;
  *) say "SOAK_RATE_LIMITS must be raised or off"; exit 2 ;;
esac

for database in "$AUTH_DATABASE" "$MOVIES_DATABASE"; do
  PGOPTIONS='-c client_min_messages=warning' "${PG_ADMIN[@]}" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null
done
AUTH_ADDR=127.0.0.1:$(free_port)
# The movies API's credentials for Auth's introspection: a fresh secret per run.
INTROSPECTION_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
say "starting auth on $AUTH_ADDR"
env "${RATE_LIMIT_ENV[@]}" \
  AUTH_INTROSPECTION_CLIENTS="movies:$INTROSPECTION_SECRET" \
  AUTH_LISTEN="$AUTH_ADDR" \
  AUTH_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$AUTH_DATABASE?sslmode=$PG_SSLMODE" \
  REDIS_URL=redis://127.0.0.1:6379 \
  AUTH_REDIS_KEY_PREFIX="$REDIS_PREFIX-auth" \
  AUTH_JWT_DEV_KEY_FILE="$WORK/jwt-dev-key.pem" \
  RUST_LOG=warn \
  "$AUTH" serve >"$WORK/auth.log" 2>&1 &
AUTH_PID=$!
if ! "$LOADGEN" ready --addr "$AUTH_ADDR" --pid "$AUTH_PID" --timeout 60; then
  say "auth did not become ready; the end of its log:"
  tail -n 40 "$WORK/auth.log" >&2
  exit 2
fi

MOVIES_ADDR=127.0.0.1:$(free_port)
MOVIES_ENV=(
  MOVIES_LISTEN="$MOVIES_ADDR"
  MOVIES_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$MOVIES_DATABASE?sslmode=$PG_SSLMODE"
  REDIS_URL=redis://127.0.0.1:6379
  MOVIES_REDIS_KEY_PREFIX="$REDIS_PREFIX-movies"
  AUTH_URL="http://$AUTH_ADDR"
  MOVIES_AUTH_CLIENT_SECRET="$INTROSPECTION_SECRET"
  RUST_LOG=warn
)
# Movies' limits as Auth's per-address and per-user ones (builds without limits know none
# of these variables and would warn about them).
if grep -aq MOVIES_RATE_LIMIT_ENABLED "$MOVIES"; then
  case $RATE_LIMITS in
    raised) MOVIES_ENV+=("MOVIES_RATE_LIMIT_API_ANONYMOUS=1000000/s burst 1000000" "MOVIES_RATE_LIMIT_API_USER=1000000/s burst 1000000")
      RATE_LIMIT_NOTE="$RATE_LIMIT_NOTE; Movies' rate limits on, raised the same way" ;;
    off) MOVIES_ENV+=(MOVIES_RATE_LIMIT_ENABLED=false)
      RATE_LIMIT_NOTE="$RATE_LIMIT_NOTE; Movies' rate limits off (\`MOVIES_RATE_LIMIT_ENABLED=false\`)" ;;
  esac
else
  RATE_LIMIT_NOTE="$RATE_LIMIT_NOTE; Movies has no rate limits in this build"
fi
say "loading the demo catalogue into $MOVIES_DATABASE"
if ! env "${MOVIES_ENV[@]}" "$MOVIES" load-demo >"$WORK/load-demo.log" 2>&1; then
  say "movies load-demo failed:"
  tail -n 40 "$WORK/load-demo.log" >&2
  exit 2
fi
LOADED=$(grep -m1 '^loaded' "$WORK/load-demo.log" || echo "loaded the demo catalogue")
say "$LOADED"
say "starting movies on $MOVIES_ADDR"
env "${MOVIES_ENV[@]}" "$MOVIES" serve >"$WORK/movies.log" 2>&1 &
MOVIES_PID=$!
if ! "$LOADGEN" ready --addr "$MOVIES_ADDR" --pid "$MOVIES_PID" --timeout 60; then
  say "movies did not become ready; the end of its log:"
  tail -n 40 "$WORK/movies.log" >&2
  exit 2
fi

# Other work on the machine skews every figure. Wait a while for it to stop; what
# remains shows in the report's "machine CPU" column rather than being hidden.
wait_quiet "$QUIET_WAIT" "running anyway (the report's machine CPU column will show it)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
WARMUP_ARG=()
[ -n "$WARMUP" ] && WARMUP_ARG=(--warmup "$WARMUP")
RUN_ARGS=(--duration "$DURATION" "${WARMUP_ARG[@]}" --sample "$SAMPLE" --rate "$RATE" --users "$USERS"
  --auth-connections "$AUTH_CONNECTIONS" --sign-in-rate "$SIGN_IN_RATE" --wrong-password-rate "$WRONG_PASSWORD_RATE"
  --refresh-every "$REFRESH_EVERY" --threads "$LOADGEN_THREADS")
LOADGEN_ARGS=(--auth-addr "$AUTH_ADDR" --movies-addr "$MOVIES_ADDR" --auth-pid "$AUTH_PID" --movies-pid "$MOVIES_PID" "${RUN_ARGS[@]}")
say "soaking for ${DURATION}s at ${RATE} requests/s"
RESULT="$WORK/soak.json"
if ! "$LOADGEN" soak "${LOADGEN_ARGS[@]}" >"$RESULT"; then
  say "the load generator failed; the end of the services' logs:"
  tail -n 20 "$WORK/auth.log" "$WORK/movies.log" >&2
  exit 2
fi
check_alive auth "$AUTH_PID"
check_alive movies "$MOVIES_PID"

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# This report and Cargo.lock aside (cargo rewrites it when it lags the manifests).
if git status --porcelain 2>/dev/null | grep -qv -e ' docs/benchmarks\.md$' -e ' Cargo\.lock$'; then
  COMMIT="$COMMIT plus uncommitted changes in the working tree"
fi
CPU_MODEL=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MEMORY=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
PG_VERSION=$("${PG_ADMIN[@]}" -c 'SHOW server_version' | cut -d' ' -f1)
REDIS_VERSION=$(redis-cli -h 127.0.0.1 -p 6379 info server | tr -d '\r' | sed -n 's/^redis_version://p')

# Warnings and errors the services logged (JSON lines), by level and message.
log_summary() {
  grep -hE '"level":"(WARN|ERROR)"' "$@" |
    sed -n 's/.*"message":"\([^"]*\)".*"level":"\([A-Z]*\)".*/\2 \1/p' | sort | uniq -c | sort -rn | head -n 10 || true
}

# The command as run: the tunables that were set (where the report went aside).
SETTINGS=$(env | grep -E '^SOAK_[A-Z_]+=' | grep -v '^SOAK_OUTPUT=' | sort | tr '\n' ' ' || true)
if [ -n "$SETTINGS" ]; then COMMAND="${SETTINGS}scripts/soak.sh"; else COMMAND="make soak"; fi

mkdir -p "$(dirname "$OUTPUT")"
SECTION="$WORK/section.md"
{
  cat <<EOF
<!-- soak:start -->
## Soak

Auth and Movies under a mixed load.

Generated by \`scripts/soak.sh\` (\`make soak\`) between the \`soak:start\` and
\`soak:end\` markers; every figure in this section comes from one run of that script
and is overwritten by the next. Do not edit it by hand. Other sections of this file
belong to other benchmark scripts and are left as they are.

Targets: zero 5xx over the whole run, and no growth of either service's resident
set after the warm-up.

### Method

- **Command:** \`$COMMAND\`; the load generator ran as
  \`loadgen soak --auth-addr … --movies-addr … --auth-pid … --movies-pid … ${RUN_ARGS[*]}\`.
- **Machine:** $(nproc) cores ($CPU_MODEL), $MEMORY of memory, Linux $(uname -r).
- **Run:** $STARTED, commit $COMMIT, $(rustc --version | cut -d' ' -f1-2).
  Load average when the load started: $LOAD_BEFORE.
- **Services:** release builds (\`cargo build --release\`), \`target/release/auth serve\` and
  \`target/release/movies serve\` with \`RUST_LOG=warn\` and default settings otherwise
  (16 database connections each, access tokens of 15 minutes, Movies' Redis cache of
  60 s, its introspection cache of 2 s), $RATE_LIMIT_NOTE. Fresh databases (Movies'
  with the demo catalogue: $LOADED), fresh Redis key prefixes, PostgreSQL $PG_VERSION and
  Redis $REDIS_VERSION on the same machine, PostgreSQL connections with \`sslmode=$PG_SSLMODE\`.
- **Load generator:** \`crates/loadgen\` (\`loadgen soak\`, Rust, hyper 1 HTTP/1.1 keep-alive
  connections, one request in flight per connection), on the **same cores** as the
  services, PostgreSQL and Redis: every figure includes its cost, and the "machine CPU"
  column shows how busy the machine was.
- **Sampling:** every ${SAMPLE} s, \`VmRSS\` and CPU ticks of both service processes from
  \`/proc\`, and the interval's requests, errors and p99.

EOF
  "$LOADGEN" soak --render "$RESULT"
  echo
  echo "### Warnings and errors the services logged during the run"
  echo
  for name in auth movies; do
    SUMMARY=$(log_summary "$WORK/$name.log")
    if [ -z "$SUMMARY" ]; then
      echo "- ${name^}: none."
    else
      echo "- ${name^}:"
      echo
      echo "  | Count | Level and message |"
      echo "  |--:|---|"
      echo "$SUMMARY" | sed 's/^ *\([0-9]*\) \(.*\)$/  | \1 | \2 |/'
      echo
    fi
  done
  cat <<EOF

<details><summary>The load generator's JSON result of this run</summary>

\`\`\`json
$(cat "$RESULT")
\`\`\`

</details>
<!-- soak:end -->
EOF
} >"$SECTION"
# Replace this script's section in place; append it when absent; keep the rest.
write_section soak "$SECTION" "$OUTPUT"

say "wrote $OUTPUT"
VERDICT=$(sed -n '/^## Verdict/,/^## Throughput/p' "$SECTION" | sed '$d')
echo "$VERDICT" >&2
if grep -q 'NOT MET' <<<"$VERDICT"; then
  say "a target was not met"
  exit 1
fi
