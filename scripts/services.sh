#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis are installed and answering on 127.0.0.1.
# Installs Debian's packages when missing (as root; otherwise prints the one command
# that installs all of them, and stops), starts them when stopped.
set -euo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_PORT=6379

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else
    echo "services: this needs root; run it yourself, then run this command again:" >&2
    echo "  sudo $*" >&2
    exit 1
  fi
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; }
redis_ready() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 60); do
    if $check; then return 0; fi
    sleep 0.5
  done
  echo "services: $what did not become ready" >&2
  exit 1
}

# What is missing, all of it, before installing anything: without root the whole
# command is printed once, rather than its first step (which, run by hand, led to the
# same message again, never to the install).
need_install=()
installed_postgres=no
command -v pg_ctlcluster >/dev/null 2>&1 || { need_install+=(postgresql postgresql-contrib); installed_postgres=yes; }
command -v redis-server >/dev/null 2>&1 || need_install+=(redis-server)
# pg_partman makes and drops the login history's monthly partitions (docs/partitioning.md);
# its package is named after the PostgreSQL major version.
installed_pg_major() { ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1; }
partman_missing() {
  local major; major=$(installed_pg_major)
  [ -n "$major" ] && [ ! -f "/usr/share/postgresql/$major/extension/pg_partman.control" ]
}
if [ "$installed_postgres" = no ] && partman_missing; then
  need_install+=("postgresql-$(installed_pg_major)-partman")
fi

if [ ${#need_install[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    command="sudo apt-get update && sudo apt-get install -y ${need_install[*]}"
    if [ "$installed_postgres" = yes ]; then
      # The version the postgresql package brings, when apt knows it; else read once
      # it is installed.
      major=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n1 || true)
      if [ -n "$major" ]; then
        command="$command postgresql-$major-partman"
      else
        command="$command && sudo apt-get install -y \"postgresql-\$(ls /usr/lib/postgresql | sort -V | tail -n1)-partman\""
      fi
    fi
    echo "services: missing packages; installing them needs root. Run, then run this command again:" >&2
    echo "  $command" >&2
    exit 1
  fi
  echo "services: installing ${need_install[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_install[@]}" >/dev/null
  if partman_missing; then
    echo "services: installing postgresql-$(installed_pg_major)-partman"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$(installed_pg_major)-partman" >/dev/null
  fi
fi

if ! pg_ready; then
  cluster_version=$(ls /etc/postgresql | sort -V | tail -n1)
  echo "services: starting PostgreSQL $cluster_version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main start || true
  wait_for PostgreSQL pg_ready
fi
# Tests and the local run connect as postgres without a password over TCP. Debian's
# own cluster asks for one (scram): on a cluster this script just installed, it allows
# postgres from 127.0.0.1 alone, first in pg_hba.conf, and reloads; on any other it
# prints the line to add rather than edit a configuration it did not make.
pg_trusts() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; }
if ! pg_trusts; then
  cluster_version=$(ls /etc/postgresql | sort -V | tail -n1)
  hba=/etc/postgresql/$cluster_version/main/pg_hba.conf
  if [ "$installed_postgres" = yes ] && [ "$(id -u)" = 0 ] && [ -w "$hba" ]; then
    echo "services: allowing postgres from 127.0.0.1 without a password in $hba (local development)"
    sed -i '1i host all postgres 127.0.0.1/32 trust  # added by scripts/services.sh for local development' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main reload
    wait_for "PostgreSQL to accept postgres@$PG_HOST" pg_trusts
  else
    echo "services: PostgreSQL refuses postgres@$PG_HOST without a password." >&2
    echo "services: allow it in pg_hba.conf (host all postgres 127.0.0.1/32 trust) for local development." >&2
    exit 1
  fi
fi

if ! redis_ready; then
  echo "services: starting Redis"
  # Root uses the package's directories; anyone else a directory of their own (the
  # package's belong to the redis user, and redis-server stops when it cannot open
  # its log). Loopback IPv4 only: the optional-address form `-::1` is not understood by
  # older Redis releases (Ubuntu 22.04 ships 6.0).
  if [ "$(id -u)" = 0 ]; then
    redis_dir=/var/lib/redis redis_log=/var/log/redis/ci.log
  else
    redis_dir=${XDG_RUNTIME_DIR:-/tmp}/cinema-redis-$(id -u) redis_log=$redis_dir/redis.log
  fi
  mkdir -p "$redis_dir" "$(dirname "$redis_log")"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$redis_dir" --logfile "$redis_log"
  wait_for Redis redis_ready
fi
echo "services: PostgreSQL on $PG_HOST:$PG_PORT and Redis on 127.0.0.1:$REDIS_PORT are ready"
