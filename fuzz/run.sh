#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that face untrusted input (fuzz/README.md).
#
#   fuzz/run.sh                  every target, FUZZ_SECONDS each (default 60)
#   fuzz/run.sh bearer_jwt ...   only these
#
# One target at a time, one libFuzzer process. The live corpus grows in
# fuzz/corpus/<target> (git-ignored) from the committed seeds in fuzz/seeds/<target>;
# a crash is written to fuzz/artifacts/<target>/ and makes the script exit non-zero
# after the other targets have run.
set -euo pipefail
cd "$(dirname "$0")"

# cargo-fuzz builds with nightly-only flags (-Zsanitizer=address, the sancov passes,
# the coverage instrumentation). Only the stable toolchain is installed; RUSTC_BOOTSTRAP=1
# lets it accept them. Nothing else in the project is built this way.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from the Rust crate registry" >&2
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

seconds=${FUZZ_SECONDS:-60}
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

# Build once, in the open: a compile error is not a fuzzing result.
cargo fuzz build
mkdir -p logs
failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "fuzz: $target for ${seconds}s" >&2
  log="logs/$target.log"
  status=0
  cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    grep -E "panicked at|^SUMMARY|Test unit written to" "$log" >&2 || tail -20 "$log" >&2
  fi
  summary+=("$(printf '%-16s %-6s execs=%-10s %s' "$target" "$([ "$status" -eq 0 ] && echo ok || echo FAILED)" "${execs:-?}" "${cov:-}")")
done
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/logs/)" >&2
  exit 1
fi
