#!/usr/bin/env bash
# Runs every test: starts what the tests need (PostgreSQL on 5432, a second PostgreSQL server on
# 5433 for multi-server placement, grpcurl, the fhir.resources Python package), builds the
# binaries the end-to-end tests drive, then runs the whole workspace's tests, and the OTLP
# export test with its cargo feature.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_cargo
ensure_postgres 5432 main
ensure_postgres 5433 second
ensure_bootstrap 5432
ensure_bootstrap 5433
ensure_grpcurl
ensure_fhir_resources

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export TEST_SECOND_DATABASE_URL="${TEST_SECOND_DATABASE_URL:-postgres://postgres@127.0.0.1:5433/postgres}"

log "building the service binaries (end-to-end tests run them)"
cargo build --workspace --bins
log "running the tests"
# Every package unless the arguments name one (-p/--package); doc-tests are skipped (there are
# none). --no-fail-fast runs every test binary even after one fails, so the last line, which
# adds up their results, covers the whole suite.
scope=(--workspace)
for arg in "$@"; do
    case "$arg" in -p | --package | -p?* | --package=*) scope=() ;; esac
done
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
status=0
cargo test "${scope[@]}" --no-fail-fast --lib --bins --tests "$@" 2>&1 | tee "$results" || status=$?
# The OTLP export test needs clinic-shared's `otlp` feature: its own run, counted in the summary
# (workspace-wide, so it shares the build above; skipped when the arguments name a package).
if [ "${#scope[@]}" -gt 0 ]; then
    log "running the OTLP export test (feature clinic-shared/otlp)"
    cargo test --workspace --features clinic-shared/otlp --no-fail-fast --test otlp "$@" 2>&1 \
        | tee -a "$results" || status=$?
fi
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\nsummary: %d passed, %d failed\n", p, f }' "$results"
exit "$status"
