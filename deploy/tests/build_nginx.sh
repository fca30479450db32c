#!/usr/bin/env bash
# Builds the nginx that nginx_resolve_test.py runs, once, and prints its path: the
# stable line of the nginx:1.28 image, from the source in the nginx-src crate (fetched
# by cargo, pinned by deploy/tests/nginx-src/Cargo.lock), because Debian 12's nginx is
# 1.22, without `resolve` in upstreams. Only the modules the template uses; kept in
# target/deploy-nginx/<version>/ and reused while the pinned version stays.
# Needs a C compiler, make and the PCRE2 headers (run.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."

manifest=deploy/tests/nginx-src/Cargo.toml
cargo fetch --locked --quiet --manifest-path "$manifest" >&2
src=$(cargo metadata --format-version 1 --locked --offline --manifest-path "$manifest" \
  | python3 -c 'import json, os, sys; print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] if p["name"] == "nginx-src"))')
version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"$/\1/p' "$src/nginx/src/core/nginx.h")
out="${CARGO_TARGET_DIR:-$PWD/target}/deploy-nginx/$version"
if [ ! -x "$out/sbin/nginx" ]; then
  echo "deploy-tests: building nginx $version for nginx_resolve_test.py (once)" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp -r "$src/nginx/." "$work"
  mkdir -p "$(dirname "$out")"
  if ! (cd "$work" && ./auto/configure --prefix="$out" --with-http_sub_module --with-http_secure_link_module \
          --without-http_gzip_module && make -j"$(nproc)" && make install) >"$out.build.log" 2>&1; then
    tail -30 "$out.build.log" >&2
    echo "deploy-tests: building nginx $version failed (log: $out.build.log)" >&2
    exit 1
  fi
fi
echo "$out/sbin/nginx"
