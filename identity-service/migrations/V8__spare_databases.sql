-- Spare tenant databases: created and migrated ahead of demand on each tenant server, so that a
-- new clinic renames one into place instead of waiting for CREATE DATABASE. Registered here
-- before they are created (state 'creating'), so none is ever an orphan; 'ready' once created
-- and migrated; 'claimed' by the organization being provisioned that renames it (at most one
-- organization per spare), until that organization is activated and the row is deleted.
-- Their names lie outside the clinics' `clinic_` namespace, so no clinic's name can take one.
CREATE TABLE spare_database (
    database_name   text        PRIMARY KEY
                                CHECK (database_name ~ '^[a-z][a-z0-9_]{0,62}$'
                                       AND database_name NOT LIKE 'clinic\_%'),
    -- Key of the tenant server (clinic-service configuration) holding it.
    server          text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('creating', 'ready', 'claimed')),
    organization_id uuid        UNIQUE REFERENCES organization (id),
    created_at      timestamptz NOT NULL,
    CHECK ((state = 'claimed') = (organization_id IS NOT NULL))
);
CREATE INDEX spare_database_ready_idx ON spare_database (server, created_at)
    WHERE state = 'ready';
