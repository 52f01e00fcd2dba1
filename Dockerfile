# syntax=docker/dockerfile:1
# The data-backup service image, made for Cloud Run (docs/deploy.md).
#
#   docker build -t data-backup .
#   docker run --rm -p 8080:8080 -e DATA_BACKUP_AUTH__BEARER_TOKEN=… data-backup            # serve on $PORT
#   docker run --rm data-backup lifecycle --format terraform                              # any other command
#
# Stages: chef (cargo-chef) → planner (the dependency recipe) → builder (dependencies cooked in a layer
# of their own, so a source change rebuilds only the crate) → runtime (Debian slim with the database
# clients the exporter and restore call, the servers a restore drill starts for itself, a non-root
# user, tini as PID 1).
# scripts/deploy-checks.sh lints this file and checks that the runtime stage installs every client
# binary src/ calls.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin data-backup
COPY . .
RUN cargo build --release --locked --bin data-backup \
    && install -D -m 0755 target/release/data-backup /out/data-backup

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG DEBIAN_RELEASE
# pg_dump refuses servers newer than itself and dumps every older one (down to 9.2): take the newest
# major from the PostgreSQL project's repository (PGDG), not Debian's.
ARG PG_MAJOR=18
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian's package versions are not pinned: its security updates replace them in the archive, and a
# pinned version would stop the build from resolving once that happens.
# The servers (postgresql-N: initdb, postgres, pg_ctl; mariadb-server-core: mariadbd,
# mariadb-install-db) are for restore drills on a throwaway server of their own (ADR 0014): no
# cluster is created at install time and nothing runs them but a drill.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && install -d -m 0755 /usr/share/postgresql-common/pgdg \
    && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
        https://www.postgresql.org/media/keys/ACCC4CF8.asc \
    && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${DEBIAN_RELEASE}-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list \
    && apt-get update \
    && install -d -m 0755 /etc/postgresql-common/createcluster.d \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main-cluster.conf \
    && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" "postgresql-${PG_MAJOR}" \
        mariadb-client mariadb-server-core util-linux tini \
    && apt-get purge -y --auto-remove curl \
    && rm -rf /var/lib/apt/lists/*
# Every client and server binary the exporter, restore and drills call must answer here, or the build fails
# (scripts/deploy-checks.sh compares this list with the names in src/).
RUN "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump" --version \
    && pg_dump --version \
    && pg_restore --version \
    && psql --version \
    && mariadb-dump --version \
    && mariadb --version \
    && "/usr/lib/postgresql/${PG_MAJOR}/bin/initdb" --version \
    && "/usr/lib/postgresql/${PG_MAJOR}/bin/postgres" --version \
    && "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_ctl" --version \
    && mariadbd --version \
    && setpriv --version
RUN groupadd --system --gid 10001 data-backup \
    && useradd --system --uid 10001 --gid data-backup --home-dir /var/lib/data-backup --shell /usr/sbin/nologin data-backup \
    && install -d -o data-backup -g data-backup -m 0750 /var/lib/data-backup
COPY --from=builder /out/data-backup /usr/local/bin/data-backup
USER 10001:10001
WORKDIR /var/lib/data-backup
# Cloud Run sets PORT; `serve` listens on 0.0.0.0:$PORT unless DATA_BACKUP_BIND says otherwise (a
# non-loopback address needs [auth]: the service refuses to start without it). Logs are JSON in
# Cloud Logging's shape.
ENV PORT=8080 \
    DATA_BACKUP_LOG_FORMAT=json
EXPOSE 8080
# Not used by Cloud Run (its probes are in terraform/), but `docker run` shows the state.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8080} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# tini (PID 1) forwards SIGTERM to the service, which stops taking work and lets running exports
# finish within queue.shutdown_grace_secs (8 s, inside Cloud Run's 10 s), and reaps the dump tools.
# The shell only derives the bind address from PORT for `serve`, then execs the binary.
ENTRYPOINT ["/usr/bin/tini", "--", "/bin/sh", "-c", "if [ \"${1:-}\" = serve ] && [ -z \"${DATA_BACKUP_BIND:-}\" ]; then DATA_BACKUP_BIND=\"0.0.0.0:${PORT:-8080}\"; export DATA_BACKUP_BIND; fi; exec /usr/local/bin/data-backup \"$@\"", "data-backup"]
CMD ["serve"]
