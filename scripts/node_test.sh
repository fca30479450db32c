#!/usr/bin/env bash
# Checks scripts/node.sh as a fresh Debian 12 would meet it: with no node on PATH, and
# with Debian's too old one (18), `ensure_node` must give a Node.js that installs the
# OpenID provider of Auth's Google test (`npm ci` of crates/auth/tests/oidc, in a copy)
# and runs it until it prints its issuer. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A PATH with everything of the real one but node, npm and npx.
mkdir "$work/bin"
IFS=: read -ra dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
  [ -d "$dir" ] || continue
  for tool in "$dir"/*; do
    name=${tool##*/}
    case $name in node|nodejs|npm|npx|corepack) continue ;; esac
    [ -x "$tool" ] && [ ! -e "$work/bin/$name" ] && ln -s "$tool" "$work/bin/$name"
  done
done
# Debian 12's node and npm, as far as a version check can tell.
mkdir "$work/old"
printf '#!/bin/sh\necho v18.19.0\n' >"$work/old/node"
printf '#!/bin/sh\necho 9.2.0\n' >"$work/old/npm"
chmod +x "$work/old/node" "$work/old/npm"

status=0
for case in "none:$work/bin" "18:$work/old:$work/bin"; do
  what=${case%%:*}
  path=${case#*:}
  provider="$work/oidc-$what"
  mkdir "$provider"
  cp crates/auth/tests/oidc/package.json crates/auth/tests/oidc/package-lock.json crates/auth/tests/oidc/provider.mjs "$provider"
  if ! PATH=$path bash -c '
      set -euo pipefail
      cd "$1"
      source scripts/node.sh
      ensure_node
      npm ci --prefix "$2" --no-audit --no-fund --loglevel=error >&2
      test -d "$2/node_modules/oauth2-mock-server"
      # The provider prints its issuer once it listens; wait for that line, with a deadline.
      cd "$2"
      coproc provider { exec node provider.mjs </dev/null; }
      if read -r -t 30 line <&"${provider[0]}" && [[ $line == *\"issuer\":\"http://127.0.0.1:* ]]; then
        kill "$provider_PID"; echo "$(node --version)"
      else
        kill "$provider_PID" 2>/dev/null; echo "the OpenID provider did not print its issuer within 30 s" >&2; exit 1
      fi' _ "$root" "$provider" >"$work/out-$what" 2>"$work/err-$what"; then
    echo "node_test: FAILED with $what node on PATH:" >&2
    cat "$work/err-$what" >&2
    status=1
  else
    echo "node_test: with $what node on PATH, ensure_node gives Node.js $(cat "$work/out-$what"), which installs and runs the OpenID provider"
  fi
done
exit "$status"
