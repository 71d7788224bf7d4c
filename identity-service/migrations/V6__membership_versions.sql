-- The version clinic-service gives each membership change (monotonic per member, from the
-- tenant database, which is the truth): the newest applied per organization and subject
-- (`member:<user id>` or `invitation:<lower-cased email>`). It outlives removals, so a change
-- relayed late or twice that is older than one applied (a removal included) is ignored.
CREATE TABLE membership_version (
    organization_id uuid   NOT NULL REFERENCES organization (id) ON DELETE CASCADE,
    subject         text   NOT NULL,
    version         bigint NOT NULL CHECK (version > 0),
    PRIMARY KEY (organization_id, subject)
);
