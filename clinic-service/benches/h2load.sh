#!/usr/bin/env bash
# The hot path measured the way issue 9 measured it: an independent HTTP/2 load generator
# (h2load, Debian's nghttp2-client) sending gRPC frames to a release build of the stack running
# as its own processes, beside pgbench -M prepared running the statements the service runs for
# the same call, at the same concurrency, in the same run. Prints req/s, the ratio, and the
# grpc-status of one sample call per scenario (h2load itself only sees HTTP statuses).
#
#   clinic-service/benches/h2load.sh [CLIENTS=8] [SECS=10] [ROUNDS=1]
#
# With ROUNDS > 1 each scenario alternates h2load and pgbench ROUNDS times (SECS each), so that
# a slow spell of a shared host weighs on both sides alike; each round's ratio is printed and
# the scenario's line gives the medians of the rates and the median of the ratios.
#
# PostgreSQL as for the tests (127.0.0.1:5432, trust). The stack runs in development mode on
# ports 52051/52061/52052 with a central database of its own, dropped at the end with the clinic.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
CLIENTS="${1:-8}"
SECS="${2:-10}"
ROUNDS="${3:-1}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer" >&2; exit 2; }
PG="postgres://postgres@127.0.0.1:5432"

command -v h2load >/dev/null || apt_install nghttp2-client
command -v pgbench >/dev/null || apt_install postgresql-contrib
command -v curl >/dev/null || apt_install curl
ensure_bootstrap 5432

log "building (release)"
cargo build --release --bins -p identity-service -p clinic-service
cargo bench -p clinic-service --bench load --no-run

work="$(mktemp -d)"
central="h2load_central_$(date +%s)_$$"
pids=()
tenant=""
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "$tenant" ] && psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS \"$tenant\" WITH (FORCE)" || true
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS \"$central\" WITH (FORCE)" || true
    rm -rf "$work"
}
trap cleanup EXIT
psql -q "$PG/postgres" -c "CREATE DATABASE \"$central\""

# No spare databases: this measures reads, and spares would outlive the dropped central database.
export APP_MODE=development SERVICE_TOKEN=h2load-service-token RUST_LOG=warn SPARE_DATABASES=0
export IDENTITY_ADDR=127.0.0.1:52051 IDENTITY_INTERNAL_ADDR=127.0.0.1:52061
export CLINIC_ADDR=127.0.0.1:52052 IDENTITY_URL=http://127.0.0.1:52061
export IDENTITY_DATABASE_URL="$PG/$central" MAIL_OUTBOX_DIR="$work/outbox"
target/release/identity-service & pids+=($!)
sleep 1
target/release/clinic-service & pids+=($!)
for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/52052) 2>/dev/null && break
    sleep 0.2
done
for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a service did not start (ports 52051/52061/52052 taken?)" >&2; exit 1; }
done

log "seeding one clinic through the public API"
mkdir -p "$work/pgbench"
PGBENCH_DIR="$work/pgbench" cargo bench -q -p clinic-service --bench load -- \
    --seed-only --clinic http://127.0.0.1:52052 --identity http://127.0.0.1:52051 >"$work/seed"
# ORG_ID, TENANT_DATABASE, USER_ID, APPOINTMENT_ID, TOKEN
source <(grep -E '^[A-Z_]+=' "$work/seed")
tenant="$TENANT_DATABASE"

# A gRPC frame: no compression, 4-byte length, then the message: organization_id (field 1), then
# the member or appointment id (string field 2), or page_size (varint field 7 of
# ListAppointmentsRequest).
frame() {
    python3 - "$@" <<'PY'
import struct, sys
out, org, second, kind = sys.argv[1:5]
def field(n, data):
    return bytes([n << 3 | 2, len(data)]) + data
msg = field(1, org.encode())
if kind == "string":
    msg += field(2, second.encode())
else:
    msg += bytes([7 << 3, int(second)])
open(out, "wb").write(b"\0" + struct.pack(">I", len(msg)) + msg)
PY
}
frame "$work/GetMember.bin" "$ORG_ID" me string
frame "$work/GetAppointment.bin" "$ORG_ID" "$APPOINTMENT_ID" string
frame "$work/ListAppointments.bin" "$ORG_ID" 20 varint

declare -A path=(
    [GetMember]=/clinic.v1.MemberService/GetMember
    [GetAppointment]=/clinic.v1.AppointmentService/GetAppointment
    [ListAppointments]=/clinic.v1.AppointmentService/ListAppointments
)

rpc_rate() {
    h2load -c "$CLIENTS" -m 1 -D "$SECS" -d "$work/$1.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        -H "authorization: Bearer $TOKEN" "http://127.0.0.1:52052${path[$1]}" |
        awk '/^finished in/ {gsub(",", "", $4); print $4}'
}
sql_rate() {
    pgbench -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$SECS" \
        -D uid="$USER_ID" -D aid="$APPOINTMENT_ID" -f "$work/pgbench/$1.sql" \
        "$PG/$TENANT_DATABASE" 2>/dev/null | awk '/^tps/ {print int($3)}'
}
# CPU time so far, in clock ticks: clinic-service, every PostgreSQL process, the whole machine
# busy, the whole machine idle (from /proc). Backends that exit in between are not counted: the
# service's pooled connections and pgbench's live through a run.
cpu_ticks() {
    python3 - "${pids[1]}" <<'PY'
import os, sys
def ticks(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0
pg = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if open(f"/proc/{pid}/comm").read().strip() == "postgres":
            pg += ticks(pid)
    except OSError:
        pass
cpu = [int(x) for x in open("/proc/stat").readline().split()[1:]]
idle = cpu[3] + cpu[4]
print(ticks(sys.argv[1]), pg, sum(cpu[:8]) - idle, idle)
PY
}
# CPU per call in microseconds from two cpu_ticks snapshots and the calls made in between:
# clinic-service, PostgreSQL, the rest (the load generator, the kernel's loopback work), the
# whole machine; then the share of the machine left idle.
per_call() {
    python3 - "$1" "$2" "$3" <<'PY'
import os, sys
a, b = ([int(x) for x in s.split()] for s in sys.argv[1:3])
calls = float(sys.argv[3])
d = [y - x for x, y in zip(a, b)]
us = 1e6 / os.sysconf("SC_CLK_TCK") / max(calls, 1)
print(f"{d[0] * us:.0f} {d[1] * us:.0f} {(d[2] - d[0] - d[1]) * us:.0f} {d[2] * us:.0f} "
      f"{100 * d[3] / max(d[2] + d[3], 1):.0f}%")
PY
}
# Two cpu_ticks snapshots added field by field (to sum the rounds' intervals).
add_ticks() {
    python3 -c "import sys; print(*(int(x) + int(y) for x, y in zip(sys.argv[1].split(), sys.argv[2].split())))" "$1" "$2"
}
# One round of `$2` (rpc_rate or sql_rate) for scenario $1: its rate appended to rates[$2], its
# calls added to calls[$2], the CPU snapshots around it added to cpu_a[$2] and cpu_b[$2].
declare -A rates calls cpu_a cpu_b
round() {
    local before after rate
    before="$(cpu_ticks)"
    rate="$("$2" "$1")"
    after="$(cpu_ticks)"
    rates[$2]+=" $rate"
    calls[$2]="$(python3 -c "print(${calls[$2]} + $rate * $SECS)")"
    cpu_a[$2]="$(add_ticks "${cpu_a[$2]}" "$before")"
    cpu_b[$2]="$(add_ticks "${cpu_b[$2]}" "$after")"
}
# Medians of the rounds: rpc rate, sql rate, ratio; then every round's ratio.
summary() {
    python3 - "$@" <<'PY'
import statistics, sys
rpc = [float(x) for x in sys.argv[1].split()]
sql = [float(x) for x in sys.argv[2].split()]
ratios = [r / q for r, q in zip(rpc, sql)]
print(f"{statistics.median(rpc):.0f} {statistics.median(sql):.0f} "
      f"{statistics.median(ratios):.2f}x {' '.join(f'{x:.2f}' for x in ratios)}")
PY
}

printf '\n== h2load vs pgbench -M prepared: %s clients, %s s each, %s round(s), release build, this machine\n' \
    "$CLIENTS" "$SECS" "$ROUNDS"
printf '%-18s %12s %12s %8s  %-18s %s\n' scenario "rpc req/s" "sql tx/s" ratio "sample grpc-status" \
    "ratio per round"
cpu=""
for s in GetMember GetAppointment ListAppointments; do
    status="$(curl -s --http2-prior-knowledge -o /dev/null -D - -X POST \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        -H "authorization: Bearer $TOKEN" --data-binary "@$work/$s.bin" \
        "http://127.0.0.1:52052${path[$s]}" | tr -d '\r' | awk -F': ' '/^grpc-status/ {print $2}')"
    rates=([rpc_rate]="" [sql_rate]="") calls=([rpc_rate]=0 [sql_rate]=0)
    cpu_a=([rpc_rate]="0 0 0 0" [sql_rate]="0 0 0 0") cpu_b=([rpc_rate]="0 0 0 0" [sql_rate]="0 0 0 0")
    for _ in $(seq 1 "$ROUNDS"); do
        round "$s" rpc_rate
        round "$s" sql_rate
    done
    read -r rpc sql ratio rounds <<<"$(summary "${rates[rpc_rate]}" "${rates[sql_rate]}")"
    printf '%-18s %12s %12s %8s  %-18s %s\n' "$s" "$rpc" "$sql" "$ratio" "${status:-none}" "$rounds"
    cpu+="$(printf '%-18s %8s %8s %8s %8s %6s   %8s %6s' "$s" \
        $(per_call "${cpu_a[rpc_rate]}" "${cpu_b[rpc_rate]}" "${calls[rpc_rate]}") \
        $(per_call "${cpu_a[sql_rate]}" "${cpu_b[sql_rate]}" "${calls[sql_rate]}" | cut -d' ' -f4-))"$'\n'
done
printf '\nCPU per call in us over the rounds (/proc; "rest": the load generator and the kernel'"'"'s\n'
printf 'loopback work; idle: the share of the two cores left idle). pgbench'"'"'s backends exit before\n'
printf 'they can be read: its side gives the whole machine only.\n'
printf '%-18s %8s %8s %8s %8s %6s   %8s %6s\n' scenario clinic postgres rest all idle "sql all" idle
printf '%s' "$cpu"
