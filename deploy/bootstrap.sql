-- One-time bootstrap of a PostgreSQL server for the clinic platform, run by an operator with a
-- superuser (scripts/dev.sh and scripts/test.sh run it for you). Idempotent: running it again
-- changes nothing but the passwords it is given.
--
--   psql -h HOST -U postgres -d postgres -v ON_ERROR_STOP=1 -f deploy/bootstrap.sql \
--        -v identity_password=... -v clinic_password=...
--
-- On the server holding the central database it creates:
--   clinic_identity  LOGIN, nothing else; owns the central database clinic_db (and nothing more)
--   clinic_service   LOGIN CREATEDB (CREATE DATABASE cannot run inside a function); owns the
--                    tenant databases it creates; NOT CREATEROLE (on PostgreSQL 15 a CREATEROLE
--                    role can grant itself superuser-equivalent roles)
--   clinic_bootstrap.create_tenant_role(name, password): owned by the superuser, SECURITY
--                    DEFINER, executable by clinic_service only; it can create (or reset the
--                    password of) a plain login role named clinic_tenant_<32 hex digits> and
--                    nothing else. clinic-service serves each tenant database through such a
--                    role, which may CONNECT to its own database only.
--   clinic_tenants   NOLOGIN: the table privileges every tenant login role shares (granted on
--                    the tables of the tenant databases by their owner, clinic_service). Each
--                    tenant login role is a member; what keeps a tenant inside its own database
--                    is CONNECT, which each database grants to its own login role alone.
-- Run it on every tenant server too (the central database is then simply unused there).

\set ON_ERROR_STOP on

SELECT format('CREATE ROLE clinic_identity LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L', :'identity_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'clinic_identity') \gexec
SELECT format('ALTER ROLE clinic_identity LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L', :'identity_password') \gexec

SELECT format('CREATE ROLE clinic_service LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L', :'clinic_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'clinic_service') \gexec
SELECT format('ALTER ROLE clinic_service LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L', :'clinic_password') \gexec

SELECT 'CREATE DATABASE clinic_db OWNER clinic_identity'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'clinic_db') \gexec
ALTER DATABASE clinic_db OWNER TO clinic_identity;
REVOKE ALL ON DATABASE clinic_db FROM PUBLIC;

SELECT 'CREATE ROLE clinic_tenants NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'clinic_tenants') \gexec
ALTER ROLE clinic_tenants NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;

CREATE SCHEMA IF NOT EXISTS clinic_bootstrap;
REVOKE ALL ON SCHEMA clinic_bootstrap FROM PUBLIC;
GRANT USAGE ON SCHEMA clinic_bootstrap TO clinic_service;

CREATE OR REPLACE FUNCTION clinic_bootstrap.create_tenant_role(role_name text, role_password text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF role_name IS NULL OR role_name !~ '^clinic_tenant_[0-9a-f]{32}$' THEN
        RAISE EXCEPTION 'not a tenant role name: %', role_name USING ERRCODE = '42939';
    END IF;
    IF role_password IS NULL OR length(role_password) < 32 THEN
        RAISE EXCEPTION 'tenant role passwords are at least 32 characters' USING ERRCODE = '28P01';
    END IF;
    BEGIN
        EXECUTE format('CREATE ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT '
                       'NOREPLICATION NOBYPASSRLS PASSWORD %L IN ROLE clinic_tenants',
                       role_name, role_password);
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        -- It exists (or a concurrent retry created it first): make sure of its attributes.
        EXECUTE format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT '
                       'NOREPLICATION NOBYPASSRLS PASSWORD %L', role_name, role_password);
        IF NOT pg_has_role(role_name, 'clinic_tenants', 'MEMBER') THEN
            EXECUTE format('GRANT clinic_tenants TO %I', role_name);
        END IF;
    END;
END
$$;
REVOKE ALL ON FUNCTION clinic_bootstrap.create_tenant_role(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION clinic_bootstrap.create_tenant_role(text, text) TO clinic_service;
