# The two set-up commands of the README: `make run` and `make test`.
# Both work from a clean clone on Debian or Ubuntu with Rust installed.

.PHONY: run test bench services contracts

## Installs (when missing) and starts PostgreSQL and Redis, builds and starts the services.
run:
	@scripts/run.sh

## Runs the whole test suite against the real PostgreSQL and Redis.
test:
	@scripts/test.sh

## Benchmarks on a release build; writes docs/benchmarks.md.
bench:
	@scripts/bench.sh

## Only makes sure PostgreSQL and Redis are installed and running.
services:
	@scripts/services.sh

## Rewrites the committed OpenAPI contracts from the code.
contracts:
	@cargo run -q -p auth -- openapi > contracts/auth.openapi.json
	@cargo run -q -p movies -- openapi > contracts/movies.openapi.json
