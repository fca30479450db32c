# PostgreSQL 15 with pg_partman, which Auth's login history partitioning needs
# (docs/partitioning.md), and the script that makes each service's role and database.
#
# pg_partman comes from Debian's own archive (4.7): Auth's migration calls
# create_parent(p_type := 'native'), which pg_partman 5 (the PostgreSQL project's
# archive, also configured in this image) no longer accepts. It is the version
# scripts/services.sh installs for the local run and the tests.

FROM postgres:15-bookworm
RUN printf 'Package: postgresql-15-partman\nPin: release o=Debian\nPin-Priority: 1001\n' > /etc/apt/preferences.d/cinema-partman \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15-partman \
 && rm -rf /var/lib/apt/lists/*
COPY postgres/init.sh /docker-entrypoint-initdb.d/10-cinema.sh
