#!/usr/bin/env bash
# The deployment checks of `make test`, without a Docker engine:
#   1. deploy/compose.yaml against the Compose Specification schema (dclint);
#   2. its structure and wiring, and the Dockerfiles (compose_test.py);
#   3. Debian's nginx with the stack's configuration in front of the real services
#      (nginx_test.py);
#   4. nginx 1.28, the image's, built from source (build_nginx.sh), resolving the
#      services' names while running (nginx_resolve_test.py).
# Installs what is missing: nginx, envsubst, a C compiler, make and the PCRE2 headers
# (Debian packages, as root; otherwise prints the one command that installs all of
# them, and stops), PyYAML and dnslib, Node.js 22.12+ (scripts/node.sh), dclint (npm).
# Expects PostgreSQL and Redis up (scripts/services.sh) and builds the debug binaries.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "deploy-tests: $*" >&2; }

# Everything missing is gathered before anything is installed: without root the whole
# command is printed once (printing only its first step, `apt-get update`, led to the
# same message again after running it, never to the install).
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v envsubst >/dev/null 2>&1 || need+=(gettext-base)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
[ -e /usr/include/pcre2.h ] || need+=(libpcre2-dev)
# PyYAML and dnslib from pip when it can, else Debian's packages.
python_module() {
  local module=$1 pip_name=$2 package=$3
  if command -v python3 >/dev/null 2>&1; then
    python3 -c "import $module" 2>/dev/null && return 0
    say "installing $pip_name"
    python3 -m pip install --quiet "$pip_name" 2>/dev/null && return 0
    python3 -m pip install --quiet --break-system-packages "$pip_name" 2>/dev/null && return 0
  fi
  need+=("$package")
}
command -v python3 >/dev/null 2>&1 || need+=(python3)
python_module yaml PyYAML python3-yaml
python_module dnslib dnslib python3-dnslib
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing packages; installing them needs root. Run, then run this again:"
    say "  sudo apt-get update && sudo apt-get install -y ${need[*]}"
    exit 1
  fi
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

# dclint needs Node.js 20.19 or later: the system's, or one installed under target/
# from PyPI (scripts/node.sh, which asks for 22.12, as Auth's tests do).
source scripts/node.sh
ensure_node
npm ci --prefix deploy/tests --no-audit --no-fund --loglevel=error
deploy/tests/node_modules/.bin/dclint deploy/compose.yaml --quiet \
  --disable-rule no-build-and-image no-unbound-port-interfaces
# no-build-and-image: the built images are named so the one-shot catalogue loader can
# run the movies image; no-unbound-port-interfaces: nginx is the public entry.
say "compose.yaml follows the Compose Specification"

python3 deploy/tests/compose_test.py
# On a line of its own: `set -e` does not stop on a failed substitution in an argument.
nginx_1_28=$(deploy/tests/build_nginx.sh)
python3 deploy/tests/nginx_resolve_test.py "$nginx_1_28"

cargo build --locked -q -p auth -p movies
python3 deploy/tests/nginx_test.py
