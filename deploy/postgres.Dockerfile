# PostgreSQL 15 with pg_partman, which Auth's login history partitioning needs
# (docs/partitioning.md), and the script that makes each service's role and database.
#
# pg_partman comes from Debian's own archive (4.7), not the PostgreSQL project's (5.x,
# also configured in this image): 4.7 is what scripts/services.sh installs for the
# local run and `make test` runs against, so the deployment runs the version tested.
# Auth's migration supports both (it picks create_parent's arguments by the
# extension's version); 5.x was run by hand once, not by the tests
# (docs/partitioning.md, "Versions").

FROM postgres:15-bookworm
RUN printf 'Package: postgresql-15-partman\nPin: release o=Debian\nPin-Priority: 1001\n' > /etc/apt/preferences.d/cinema-partman \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15-partman \
 && rm -rf /var/lib/apt/lists/*
COPY postgres/init.sh /docker-entrypoint-initdb.d/10-cinema.sh
