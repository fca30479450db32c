#!/usr/bin/env bash
# `make bench`: every benchmark of the project, one after the other, on release
# builds. Each rewrites its own section of docs/benchmarks.md, so the file is one
# report whose every figure comes from the last run of its script:
#   scripts/bench.sh             Auth (logins vs the Argon2 bound, refresh, /users/me,
#                                RSS), Movies (film detail with Auth up and down,
#                                uncached search) and the cost of tracing;
#   scripts/bench-ratelimit.sh   latency the rate-limit layer adds;
#   scripts/soak.sh              both services under a mixed load (SOAK_DURATION, 10 min);
#   scripts/bench-partitions.sh  the partitioned schema at BENCH_USERS / BENCH_HISTORY
#                                (10 M / 50 M by default: about 45 min and 32 GB of disk).
# BENCH_ONLY="bench ratelimit soak partitions" picks some of them. About an hour in all (bench 6 min, ratelimit 2, soak 12, partitions 35).
set -euo pipefail
cd "$(dirname "$0")/.."

ONLY=${BENCH_ONLY:-bench ratelimit soak partitions}
status=0
for part in $ONLY; do
  case $part in
    bench) scripts/bench.sh || status=$? ;;
    ratelimit) scripts/bench-ratelimit.sh || status=$? ;;
    soak) scripts/soak.sh || status=$? ;;
    partitions) scripts/bench-partitions.sh || status=$? ;;
    *) echo "bench-all: unknown part $part (bench, ratelimit, soak, partitions)" >&2; status=2 ;;
  esac
done
exit "$status"
