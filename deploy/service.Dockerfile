# syntax=docker/dockerfile:1
#
# The images of Auth and the movies API, from the repository root as context:
#
#   docker build -f deploy/service.Dockerfile --target auth -t cinema/auth .
#   docker build -f deploy/service.Dockerfile --target movies -t cinema/movies .
#
# Dependencies are compiled in their own layer (cargo-chef), rebuilt only when a
# Cargo.toml or Cargo.lock changes, not on every source edit. Both binaries come out
# of one build stage, so building both images compiles the workspace once. The
# runtime images hold the binary (and, for movies, the demo catalogue) on Debian slim,
# run as an unprivileged user and need no network: TLS roots are compiled in, the
# docs pages are vendored, the demo dataset is in the image.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
# The sources' path is also where the movies binary looks for its bundled dataset
# (crates/movies/data, compiled in as an absolute path): the runtime image keeps it.
WORKDIR /usr/src/cinema

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /usr/src/cinema/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --package auth --package movies
COPY . .
RUN cargo build --release --locked --package auth --package movies --bin auth --bin movies

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# A fixed unprivileged id, the one compose's secrets must be readable by.
RUN groupadd --system --gid 65532 cinema \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin cinema
USER 65532:65532
WORKDIR /

FROM runtime AS auth
COPY --from=builder /usr/src/cinema/target/release/auth /usr/local/bin/auth
ENV AUTH_LISTEN=0.0.0.0:8000 \
    RUST_LOG=info
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/auth", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/auth"]
CMD ["serve"]

FROM runtime AS movies
COPY --from=builder /usr/src/cinema/target/release/movies /usr/local/bin/movies
# `movies load-demo` reads it from here by default (movies::demo::DEFAULT_DATASET).
COPY --from=builder /usr/src/cinema/crates/movies/data /usr/src/cinema/crates/movies/data
ENV MOVIES_LISTEN=0.0.0.0:8001 \
    RUST_LOG=info
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/movies", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/movies"]
CMD ["serve"]
