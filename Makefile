# The two set-up commands of the README: `make run` and `make test`.
# Both work from a clean clone on Debian or Ubuntu with Rust installed.

.PHONY: run test lint bench soak services contracts fuzz-schema fuzz

## Installs (when missing) and starts PostgreSQL and Redis, builds and starts the services.
run:
	@scripts/run.sh

## Runs the whole test suite against the real PostgreSQL and Redis.
test:
	@scripts/test.sh

## rustfmt's check (rustfmt.toml) and clippy over every crate and test, warnings as
## errors (not part of `make test`, which it would lengthen by a second full build);
## and that the fuzz targets, a workspace of their own, still compile against the crates.
lint:
	@cargo fmt --all --check
	@cd fuzz && cargo fmt --check
	@cd fuzz && cargo check --locked --bins --quiet
	@cargo clippy --workspace --all-targets --locked -- -D warnings

## Every benchmark, on release builds (about an hour): each rewrites its section of
## docs/benchmarks.md. BENCH_ONLY="bench ratelimit soak partitions" picks some.
bench:
	@scripts/bench-all.sh

## Only the soak run: both services under a mixed load for 10 minutes (SOAK_DURATION);
## rewrites its section of docs/benchmarks.md.
soak:
	@scripts/soak.sh

## Schema fuzzing of Auth and Movies, the longer run: 500 examples per operation, a new
## seed each time (docs/fuzzing.md). `make test` runs a bounded one.
fuzz-schema:
	@SCHEMATHESIS_MAX_EXAMPLES=$${SCHEMATHESIS_MAX_EXAMPLES:-500} SCHEMATHESIS_SEED=$${SCHEMATHESIS_SEED:-random} scripts/schemathesis.sh

## Coverage-guided fuzzing of the parsers of untrusted input (fuzz/README.md):
## every target for FUZZ_SECONDS (default 60) each; installs cargo-fuzz when missing.
fuzz:
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-60} fuzz/run.sh

## Only makes sure PostgreSQL and Redis are installed and running.
services:
	@scripts/services.sh

## Rewrites the committed OpenAPI contracts from the code. Each is written to a
## temporary file and moved in place only when the command succeeded: a failed build
## must not leave an empty contract behind.
contracts:
	@cargo run -q -p auth -- openapi > contracts/auth.openapi.json.tmp && mv contracts/auth.openapi.json.tmp contracts/auth.openapi.json || { rm -f contracts/auth.openapi.json.tmp; exit 1; }
	@cargo run -q -p movies -- openapi > contracts/movies.openapi.json.tmp && mv contracts/movies.openapi.json.tmp contracts/movies.openapi.json || { rm -f contracts/movies.openapi.json.tmp; exit 1; }
