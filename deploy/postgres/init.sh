#!/usr/bin/env bash
# Runs once, as the superuser, when the PostgreSQL container starts with an empty data
# directory (/docker-entrypoint-initdb.d). Makes one login role and one database per
# service, the role owning its database, so the services never connect as superuser.
#
# Their migrations create what they need themselves, except pg_partman: it is not a
# "trusted" extension, so it is created here, in Auth's database, and Auth's role is
# given the use of it (the grants pg_partman documents for a non-superuser role).
#
# deploy/tests/nginx_test.py runs this script against the local server (with other
# names) and migrates and serves both services through the roles it makes.
set -euo pipefail

# No short or placeholder passwords: a deployment must choose its own (deploy/.env.example).
for name in POSTGRES_PASSWORD AUTH_DB_PASSWORD MOVIES_DB_PASSWORD; do
  value=${!name-}
  if [ "$name" = POSTGRES_PASSWORD ] && [ -z "$value" ]; then continue; fi
  if [ "${#value}" -lt 16 ]; then
    echo "init: $name must be at least 16 characters (e.g. openssl rand -hex 24)" >&2
    exit 1
  fi
done
AUTH_DB_NAME=${AUTH_DB_NAME:-auth}
AUTH_DB_USER=${AUTH_DB_USER:-auth}
MOVIES_DB_NAME=${MOVIES_DB_NAME:-movies}
MOVIES_DB_USER=${MOVIES_DB_USER:-movies}

psql=(psql -v ON_ERROR_STOP=1 -X -q --username "${POSTGRES_USER:-postgres}")

"${psql[@]}" --dbname "${POSTGRES_DB:-postgres}" \
  -v auth_db="$AUTH_DB_NAME" -v auth_user="$AUTH_DB_USER" -v auth_password="$AUTH_DB_PASSWORD" \
  -v movies_db="$MOVIES_DB_NAME" -v movies_user="$MOVIES_DB_USER" -v movies_password="$MOVIES_DB_PASSWORD" <<'SQL'
CREATE ROLE :"auth_user" LOGIN PASSWORD :'auth_password';
CREATE DATABASE :"auth_db" OWNER :"auth_user";
CREATE ROLE :"movies_user" LOGIN PASSWORD :'movies_password';
CREATE DATABASE :"movies_db" OWNER :"movies_user";
SQL

"${psql[@]}" --dbname "$AUTH_DB_NAME" -v auth_user="$AUTH_DB_USER" <<'SQL'
CREATE SCHEMA partman;
CREATE EXTENSION pg_partman WITH SCHEMA partman;
GRANT ALL ON SCHEMA partman TO :"auth_user";
GRANT ALL ON ALL TABLES IN SCHEMA partman TO :"auth_user";
GRANT ALL ON ALL SEQUENCES IN SCHEMA partman TO :"auth_user";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA partman TO :"auth_user";
GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA partman TO :"auth_user";
SQL

echo "init: roles and databases for auth ($AUTH_DB_NAME) and movies ($MOVIES_DB_NAME) are ready"
