#!/usr/bin/env bash
# Runs once, when the postgres container initialises its data directory: the clinic platform's
# one-time bootstrap (deploy/bootstrap.sql) as the superuser, with the services' passwords.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v identity_password="$IDENTITY_DB_PASSWORD" -v clinic_password="$CLINIC_DB_PASSWORD" \
    -f /clinic/bootstrap.sql
