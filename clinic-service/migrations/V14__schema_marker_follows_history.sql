-- The database comment `clinic-schema <version> <fingerprint>` (written by the migration runner
-- after a successful run) lets `clinic-service migrate` skip databases that are up to date
-- without opening them. Any change to the migration history withdraws it, so a history edited
-- or broken by hand is opened, checked and reported by the next run instead of being trusted.
-- Only the database's owner (or a superuser) may change the comment, and only they may write
-- the history table: whoever can do the one can do the other.
CREATE FUNCTION withdraw_schema_marker() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('COMMENT ON DATABASE %I IS NULL', current_database());
    RETURN NULL;
END
$$;

CREATE TRIGGER refinery_schema_history_withdraws_marker
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON refinery_schema_history
FOR EACH STATEMENT EXECUTE FUNCTION withdraw_schema_marker();
