#!/usr/bin/env bash
# Builds and runs the whole stack in development mode on the fixed default ports:
# identity-service on 127.0.0.1:50051 (public) and 127.0.0.1:50061 (internal), clinic-service on
# 127.0.0.1:50052, all plaintext on loopback, against the
# PostgreSQL on 127.0.0.1:5432 (a private one is started when none is reachable).
# Development mode: verification codes come back in Register responses (and land in
# .dev/outbox), a signing key is generated at start, the service credential is a fixed dev value.
# Ctrl-C stops both services gracefully.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_cargo
ensure_postgres 5432 main
ensure_bootstrap 5432

log "building"
cargo build --workspace --bins

export APP_MODE=development
export SERVICE_TOKEN="${SERVICE_TOKEN:-dev-service-token}"
export IDENTITY_ADDR="${IDENTITY_ADDR:-127.0.0.1:50051}"
export IDENTITY_INTERNAL_ADDR="${IDENTITY_INTERNAL_ADDR:-127.0.0.1:50061}"
export CLINIC_ADDR="${CLINIC_ADDR:-127.0.0.1:50052}"
export IDENTITY_URL="${IDENTITY_URL:-http://$IDENTITY_INTERNAL_ADDR}"
export MAIL_OUTBOX_DIR="${MAIL_OUTBOX_DIR:-$DEV_DIR/outbox}"
# Each clinic database is served through its own login role (see deploy/bootstrap.sql).
export TENANT_ROLE_SECRET="${TENANT_ROLE_SECRET:-dev-tenant-role-secret}"
export RUST_LOG="${RUST_LOG:-info}"
# Each service's /metrics listener (METRICS_ADDR), on loopback.
IDENTITY_METRICS_ADDR="${IDENTITY_METRICS_ADDR:-127.0.0.1:9101}"
CLINIC_METRICS_ADDR="${CLINIC_METRICS_ADDR:-127.0.0.1:9102}"
mkdir -p "$MAIL_OUTBOX_DIR"

pids=()
stop() {
    trap - INT TERM EXIT
    log "stopping"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait || true
}
trap stop INT TERM EXIT

wait_for_port() {
    local addr="$1" host port
    host="${addr%:*}" port="${addr##*:}"
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on $addr after 30 s" >&2
    return 1
}

METRICS_ADDR="$IDENTITY_METRICS_ADDR" target/debug/identity-service & pids+=($!)
wait_for_port "$IDENTITY_ADDR"
wait_for_port "$IDENTITY_INTERNAL_ADDR"
METRICS_ADDR="$CLINIC_METRICS_ADDR" target/debug/clinic-service & pids+=($!)
wait_for_port "$CLINIC_ADDR"

cat <<TXT

  identity-service  $IDENTITY_ADDR   (identity.v1.AuthService, reflection, health)
                    $IDENTITY_INTERNAL_ADDR   (internal: TokenService, DirectoryService)
  clinic-service    $CLINIC_ADDR   (clinic.v1.*, reflection, health)
  metrics           http://$IDENTITY_METRICS_ADDR/metrics, http://$CLINIC_METRICS_ADDR/metrics
  PostgreSQL        127.0.0.1:5432 (central database clinic_db, tenants clinic_<slug>)
  outbox            $MAIL_OUTBOX_DIR

  Try: grpcurl -plaintext $IDENTITY_ADDR list
  Ctrl-C stops the stack.

TXT
wait -n "${pids[@]}"
